"""Before/after speed of a kernel refactor, measured in one run, interleaved, as ratios.

Loads a saved copy of the compiled kernels from before the change (``--before DIR``: the
``metafast/_kernels/*.so`` files, e.g. copied from main) next to the current build, and times,
alternating the two on the same inputs (best of ``--repeat`` rounds, one thread):

- every templated family's ``design``, ``weighted_sum`` and ``weighted_sum_tasks`` through the
  public BasisFamily methods (the family's kernel module swapped for the old one; the old rbf /
  projection per-task sums get the row segments their signature takes, cut as the old Python
  code cut them);
- the MetaBayes whitened E-step (numpy's Phi U then the old ``_bayes.em_stats``, against the
  kernel that whitens each block itself), MetaRidge's statistics and per-task
  solves (``_ridge.meta_stats``, ``_ridge.solve_tasks``) and the mixture E-step
  (``_mixture.em_step`` through MetaBayes(n_components=2)), on dual (n < m) and primal (n >= m)
  tasks; the one-task ``_bayes.adapt_predict`` and the mixture's ``evaluate`` (its posterior and
  predictive kernels).

Prints one line per case: seconds before, after, and the ratio after / before (1.00 = same
speed; below 1 is faster).  Usage:

    OMP_NUM_THREADS=1 python benchmarks/bench_kernel_refactor.py --before /tmp/kernels_before
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
from _common import best_of, import_metafast

mf = import_metafast()


def load_before(directory: Path, name: str) -> types.ModuleType:
    """The compiled module ``name`` (e.g. "_rbf") from the saved build in ``directory``."""
    (path,) = directory.glob(f"{name}.cpython-*.so")
    loader = importlib.machinery.ExtensionFileLoader(f"metafast_before.{name}", str(path))
    spec = importlib.util.spec_from_file_location(f"metafast_before.{name}", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def old_segments(offsets: np.ndarray, block: int):
    """Row segments (start, task, stop) of at most ``block`` rows inside one task: the old
    rbf / projection per-task kernels took these instead of the offsets."""
    sizes = np.diff(offsets)
    n_seg = (sizes + block - 1) // block
    task = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), n_seg)
    within = np.arange(task.shape[0], dtype=np.int64) - np.repeat(np.cumsum(n_seg) - n_seg, n_seg)
    start = offsets[task] + within * block
    stop = np.minimum(start + block, offsets[task + 1])
    return start.astype(np.int64), task, stop.astype(np.int64)


def old_family_module(old: types.ModuleType, prefix: str) -> types.SimpleNamespace:
    """``old`` with the new per-task signature (offsets after the parameters) for rbf / proj."""
    ns = types.SimpleNamespace(**{k: getattr(old, k) for k in dir(old) if not k.startswith("__")})
    if prefix in ("rbf", "proj"):
        n_params = 2 if prefix == "rbf" else 4
        fn = getattr(old, f"{prefix}_weighted_sum_tasks")

        def tasks(X, *args):
            params, (off, W, out, n_threads) = args[:n_params], args[n_params:]
            fn(X, *old_segments(np.asarray(off), old.SUM_BLOCK), *params, W, out, n_threads)

        setattr(ns, f"{prefix}_weighted_sum_tasks", tasks)
    return ns


@contextlib.contextmanager
def swapped(module, attr, replacement):
    saved = getattr(module, attr)
    setattr(module, attr, replacement)
    try:
        yield
    finally:
        setattr(module, attr, saved)


def compare(label: str, run_before, run_after, repeat: int, rows: list) -> None:
    """Interleave before/after rounds, alternating which goes first; keep the best of each."""
    best_b = best_a = float("inf")
    run_before(), run_after()  # warm up both
    for i in range(repeat):
        if i % 2:
            best_a = min(best_a, best_of(run_after, 1))
            best_b = min(best_b, best_of(run_before, 1))
        else:
            best_b = min(best_b, best_of(run_before, 1))
            best_a = min(best_a, best_of(run_after, 1))
    rows.append((label, best_b, best_a))
    print(f"{label:<44} {best_b * 1e3:9.3f} ms {best_a * 1e3:9.3f} ms   {best_a / best_b:5.2f}", flush=True)


FAMILIES = [  # (family, make kwargs, basis module, module attribute, kernel module, prefix)
    ("fourier", dict(n_basis=41), "metafast.basis.fourier", "_fourier", "_fourier", "fourier"),
    (
        "fourier",
        dict(n_basis=41, multivariate="lattice"),
        "metafast.basis.fourier",
        "_fourier_lattice",
        "_fourier_lattice",
        "lattice",
    ),
    ("polynomial", dict(n_basis=15), "metafast.basis.polynomial", "_polynomial", "_polynomial", "polynomial"),
    ("rbf", dict(n_basis=40), "metafast.basis.rbf", "_rbf", "_rbf", "rbf"),
    ("rff", dict(n_basis=40), "metafast.basis.random_features", "_rf", "_random_features", "proj"),
]


def bench_families(before: Path, repeat: int, rows: list, rng) -> None:
    n, d = 20_000, 2
    sizes = rng.integers(5, 25, size=1500)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    for name, kwargs, mod_name, attr, kernel, prefix in FAMILIES:
        d_fam = 1 if name == "fourier" and "multivariate" not in kwargs else d
        X = rng.uniform(-1, 1, size=(n, d_fam))
        Xt = rng.uniform(-1, 1, size=(int(off[-1]), d_fam))
        try:
            B = mf.basis.make(name, n_jobs=1, **kwargs).fit(X)
        except TypeError:  # a family without that option
            continue
        m = B.n_basis
        w, W = rng.normal(size=m), rng.normal(size=(m, 3))
        Wt = rng.normal(size=(len(sizes), m))
        module = importlib.import_module(mod_name)
        old = old_family_module(load_before(before, kernel), prefix)
        new = getattr(module, attr)
        for what, call in [
            ("design", lambda: B.design(X)),
            ("weighted_sum (m,)", lambda: B.weighted_sum(X, w)),
            ("weighted_sum (m, 3)", lambda: B.weighted_sum(X, W)),
            ("weighted_sum_tasks", lambda: B.weighted_sum_tasks(Xt, off, Wt)),
        ]:

            def run_before(call=call):
                with swapped(module, attr, old):
                    call()

            def run_after(call=call):
                with swapped(module, attr, new):
                    call()

            compare(f"{prefix} {what} (m={m})", run_before, run_after, repeat, rows)


def packed(rng, n_tasks, n, m):
    sizes = rng.integers(max(1, n - 3), n + 4, size=n_tasks)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    Phi = rng.normal(size=(int(off[-1]), m))
    y = Phi @ rng.normal(size=m) + 0.3 * rng.normal(size=int(off[-1]))
    return Phi, y, off


def bench_solvers(before: Path, repeat: int, rows: list, rng) -> None:
    bayes_old, ridge_old = load_before(before, "_bayes"), load_before(before, "_ridge")
    from metafast._kernels import _bayes, _ridge

    for label, n, m in [("dual n~10 m=24", 10, 24), ("primal n~40 m=12", 40, 12)]:
        T = 2000
        Phi, y, off = packed(rng, T, n, m)
        block = max(1, -(-T // 64))
        nb = -(-T // block)

        U = np.linalg.cholesky(np.cov(rng.normal(size=(m, 4 * m))) + np.eye(m))

        def estep(kern):
            V = np.empty((T, m))
            logp = np.empty(T)
            st = np.empty(T, dtype=np.intc)
            aD = np.empty((nb, m, m))
            am = np.empty((nb, m))
            as_ = np.empty((nb, 4))
            fused = lambda: kern.em_stats(
                Phi,
                U,
                False,
                y,
                off,
                0.25,
                False,
                block,
                1,
                V,
                logp,
                st,  # noqa: E731
                aD,
                am,
                as_,
            )
            try:  # a build that whitens each block itself (Phi U fused into the kernel)
                fused()
                return fused
            except TypeError:  # an older build: numpy's Phi U first
                pass
            return lambda: kern.em_stats(
                np.ascontiguousarray(Phi @ U), y, off, 0.25, False, block, 1, V, logp, st, aD, am, as_
            )

        compare(f"MetaBayes E-step (Phi U + em_stats) {label}", estep(bayes_old), estep(_bayes), repeat, rows)
        s, h = np.abs(rng.normal(size=m)) + 0.5, rng.normal(size=m)

        def stats(kern):
            M = np.empty((m, m))
            b = np.empty(m)
            Q = np.empty((m, m))
            q = np.empty(m)
            sq = np.empty(1)
            return lambda: kern.meta_stats(Phi, y, off, s, 0.5, M, b, Q, q, sq, 1, True)

        compare(f"MetaRidge meta_stats {label}", stats(ridge_old), stats(_ridge), repeat, rows)

        def solve(kern):
            W = np.empty((T, m))
            loo = np.empty(Phi.shape[0])
            return lambda: kern.solve_tasks(Phi, y, off, h, s, 0.5, W, loo, 1)

        compare(f"MetaRidge solve_tasks {label}", solve(ridge_old), solve(_ridge), repeat, rows)
    # one task through the one-task Bayesian kernel (10 support, 100 query points, m = 40)
    m, n, nq = 40, 10, 100
    A = rng.normal(size=(m, m))
    Sigma = A @ A.T / m + np.eye(m)
    mu = rng.normal(size=m)
    Sinv = np.linalg.inv(Sigma)
    Phi, Phiq, y = rng.normal(size=(n, m)), rng.normal(size=(nq, m)), rng.normal(size=n)

    def adapt(kern):
        prior = kern.OneTaskPrior(mu, Sigma, Sinv, Sinv @ mu, 0.25, False, 1.7)
        coef, pm, ps = np.empty(m), np.empty(nq), np.empty(nq)
        return lambda: [kern.adapt_predict(prior, Phi, y, Phiq, True, coef, pm, ps) for _ in range(200)]

    compare("MetaBayes adapt_predict x200 (n=10 m=40)", adapt(bayes_old), adapt(_bayes), repeat, rows)


def bench_mixture(before: Path, repeat: int, rows: list, rng) -> None:
    import metafast.learners.bayes.mixture.prior as mixture_module

    mixture_old = load_before(before, "_mixture")
    tasks = mf.tasks.load("sinusoid", n_tasks=400, n_support=10, n_query=10, seed=0)
    basis = mf.basis.make("fourier", n_basis=21)
    attr = "_k"
    new = getattr(mixture_module, attr)

    def fit(kern):
        def run():
            # 5 passes on purpose: the non-convergence and collapse warnings are expected
            with swapped(mixture_module, attr, kern), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mf.MetaBayes(basis=basis, n_components=2, max_iter=5, tol=0, n_jobs=1).fit(tasks)

        return run

    compare("MetaBayes(n_components=2) fit, 5 EM passes", fit(mixture_old), fit(new), repeat, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mf.MetaBayes(basis=basis, n_components=2, max_iter=5, tol=0, n_jobs=1).fit(tasks)

    import metafast.learners.bayes.mixture._em as mixture_em

    Phi_s = np.ascontiguousarray(model.basis_.design(tasks.X_support))

    def evaluate(kern):  # the mixture's posterior and predictive kernels, per task
        def run():
            with swapped(mixture_module, attr, kern), swapped(mixture_em, attr, kern):
                model.evaluate(tasks)
                model.mixture_.score_tasks(Phi_s, tasks.y_support, tasks.support_offsets)

        return run

    compare("MetaBayes(n_components=2) evaluate", evaluate(mixture_old), evaluate(new), repeat, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before", type=Path, required=True, help="folder with the compiled metafast/_kernels/*.so from before"
    )
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds (best of)")
    parser.add_argument("--only", choices=["families", "solvers", "mixture"], default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows: list = []
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'case':<44} {'before':>12} {'after':>12}   after/before")
    if args.only in (None, "families"):
        bench_families(args.before, args.repeat, rows, rng)
    if args.only in (None, "solvers"):
        bench_solvers(args.before, args.repeat, rows, rng)
    if args.only in (None, "mixture"):
        bench_mixture(args.before, args.repeat, rows, rng)
    ratios = np.array([a / b for _, b, a in rows])
    print(
        f"geometric mean after/before over {len(rows)} cases: "
        f"{np.exp(np.log(ratios).mean()):.3f} (min {ratios.min():.2f}, max {ratios.max():.2f})"
    )
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
