"""Speed of the basis kernels: ns per (sample x basis function) and the ratio to numpy.

Cases, each with 1 and 2 kernel threads, best of several repeats:
  (a) fused RBF weighted sum, n=100,000, m=256, d=4, float64 and float32, against the numpy
      reference np.exp(-0.5 * sqdist(X, C) / l**2) @ w (sqdist by GEMM, clipped at 0);
  (b) the 1-D Fourier family weighted sum, m=64, against numpy sin/cos of the same size
      (skipped with a message while "fourier" is not registered);
  (c) the design matrix of every registered family (mf.basis.available()).

    python benchmarks/bench_kernels.py [--quick] [--markdown FILE] [--repeats R]

Timings: best wall-clock (the speed-up column) and best process CPU time of all threads ("cpu
ns", which on a busy machine approximates the idle-machine speed of single-threaded code).
Compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
from _common import import_metafast  # noqa: E402

import_metafast()  # the installed metafast, else this checkout (built in place)

import metafast as mf  # noqa: E402
from metafast.parallel import effective_n_threads  # noqa: E402

THREADS = (1, 2)


class Timing(float):
    """Best wall-clock seconds, carrying the best process CPU seconds (all threads) as ``cpu``.

    On a busy machine the wall time of a call includes waiting for a core; the CPU time does
    not, so for single-threaded code it shows the speed the code would have on an idle machine.
    """

    cpu: float


def best_time(fn, repeats: int) -> Timing:
    """Best of ``repeats`` calls (after one warm-up call)."""
    fn()
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    out = Timing(best)
    out.cpu = best_cpu
    return out


def sqdist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """|x|^2 + |c|^2 - 2 X C^T by GEMM, clipped at 0 (the usual numpy way)."""
    D = np.sum(X * X, axis=1)[:, None] + np.sum(C * C, axis=1)[None, :] - 2.0 * (X @ C.T)
    return np.maximum(D, 0.0, out=D)


def row(case, dtype, threads, seconds, n, m, ref_seconds=None, note=""):
    ns = seconds / (n * m) * 1e9
    ref_ns = None if ref_seconds is None else ref_seconds / (n * m) * 1e9
    ratio = None if ref_seconds is None else ref_seconds / seconds
    cpu_ns = getattr(seconds, "cpu", None)
    cpu_ns = None if cpu_ns is None else cpu_ns / (n * m) * 1e9
    ref_cpu = getattr(ref_seconds, "cpu", None)
    ref_cpu = None if ref_cpu is None else ref_cpu / (n * m) * 1e9
    return dict(
        case=case,
        dtype=np.dtype(dtype).name,
        threads=threads,
        n=n,
        m=m,
        ns=ns,
        ref_ns=ref_ns,
        ratio=ratio,
        cpu_ns=cpu_ns,
        ref_cpu_ns=ref_cpu,
        note=note,
    )


def bench_rbf_sum(n: int, repeats: int) -> list[dict]:
    m, d, length = 256, 4, 0.5
    rng = np.random.default_rng(0)
    out = []
    for dtype in (np.float64, np.float32):
        X = rng.uniform(-1, 1, (n, d)).astype(dtype)
        C = rng.uniform(-1, 1, (m, d)).astype(dtype)
        w = rng.normal(size=m).astype(dtype)

        def reference():
            return np.exp(-0.5 * sqdist(X, C) / dtype(length) ** 2) @ w

        t_ref = best_time(reference, repeats)
        for threads in THREADS:
            B = mf.basis.make("rbf", n_basis=m, centers=C.astype(np.float64), length_scale=length, n_jobs=threads).fit(
                X
            )
            got = B.weighted_sum(X, w)
            err = float(np.max(np.abs(got - reference())))
            t = best_time(lambda: B.weighted_sum(X, w), repeats)
            out.append(row("(a) rbf weighted_sum d=4", dtype, threads, t, n, m, t_ref, note=f"max abs diff {err:.1e}"))
    return out


def bench_fourier_sum(n: int, repeats: int) -> list[dict]:
    if "fourier" not in mf.basis.available():
        print("(b) skipped: basis family 'fourier' is not registered in this build", file=sys.stderr)
        return [
            dict(
                case="(b) fourier weighted_sum d=1",
                dtype="-",
                threads="-",
                n=n,
                m=64,
                ns=None,
                ref_ns=None,
                ratio=None,
                note="skipped: 'fourier' not registered",
            )
        ]
    m = 64
    rng = np.random.default_rng(1)
    X = rng.uniform(-5, 5, (n, 1))
    w = rng.normal(size=m)
    k = np.arange(1, m // 2 + 1) * (np.pi / 5.0)

    def reference():  # the same amount of numpy sin/cos work: m columns of trig functions
        T = X[:, :1] * k[None, :]
        return np.concatenate([np.cos(T), np.sin(T)], axis=1)[:, :m] @ w

    t_ref = best_time(reference, repeats)
    out = []
    for threads in THREADS:
        params = {"n_basis": m}
        B = mf.basis.make("fourier", **params)
        if "n_jobs" in B.get_params():
            B.set_params(n_jobs=threads)
        elif threads != 1:
            continue
        B.fit(X)
        t = best_time(lambda: B.weighted_sum(X, w), repeats)
        out.append(row("(b) fourier weighted_sum d=1", np.float64, threads, t, n, m, t_ref))
    return out


def bench_designs(n: int, repeats: int) -> list[dict]:
    out = []
    m = 64
    rng = np.random.default_rng(2)
    for name in mf.basis.available():
        for d in (4, 1):  # families limited to one input dimension get d=1
            X = rng.uniform(-1, 1, (n, d))
            try:
                B = mf.basis.make(name, n_basis=m)
                B.fit(X)
                break
            except (ValueError, TypeError) as exc:
                err = exc
        else:
            out.append(
                dict(
                    case=f"(c) design {name}",
                    dtype="float64",
                    threads="-",
                    n=n,
                    m=m,
                    ns=None,
                    ref_ns=None,
                    ratio=None,
                    note=f"skipped: {err}",
                )
            )
            continue
        has_jobs = "n_jobs" in B.get_params()
        for threads in THREADS:
            if not has_jobs and threads != 1:
                continue
            if has_jobs:
                B.set_params(n_jobs=threads)
            t = best_time(lambda: B.design(X), repeats)
            out.append(row(f"(c) design {name} d={d}", np.float64, threads if has_jobs else "-", t, n, B.n_basis))
    return out


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = "| case | dtype | threads | n | m | ns/(sample*basis) | numpy ns | speed-up | cpu ns | numpy cpu ns | note |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['threads']} | {r['n']} | {r['m']} | "
            f"{fmt(r['ns'], '.2f')} | {fmt(r['ref_ns'], '.2f')} | "
            f"{'-' if r['ratio'] is None else format(r['ratio'], '.1f') + 'x'} | "
            f"{fmt(r.get('cpu_ns'), '.2f')} | {fmt(r.get('ref_cpu_ns'), '.2f')} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)
    n_sum = 5_000 if args.quick else 100_000
    n_design = 2_000 if args.quick else 20_000

    rows = bench_rbf_sum(n_sum, repeats) + bench_fourier_sum(n_sum, repeats)
    rows += bench_designs(n_design, repeats)
    header = (
        f"metafast {mf.__version__} kernels, {platform.machine()}, numpy {np.__version__}, "
        f"{os.cpu_count()} cpus, threads available {effective_n_threads(None)}, "
        f"best of {repeats}{' (quick)' if args.quick else ''}"
    )
    text = header + "\n\n" + table(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
