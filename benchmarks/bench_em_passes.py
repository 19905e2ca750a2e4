"""Passes over the data MetaBayes's EM needs: plain EM against over-relaxation and SQUAREM.

Run from the repository root after building the kernels:

    python benchmarks/bench_em_passes.py [--tasks 1000] [--quick]

For each task family (sinusoid, harmonic, multimodal; 10 support + 10 query points a task, all
used for meta-training; 40 RBFs, full covariance), plain EM runs ``--iters`` (200) iterations and
its final objective is the target.  Each accelerated scheme then runs (tol=0) until it reaches that
target; the table gives the E-steps (passes over the data, extrapolated points included) each
needed and the ratio to plain EM (target: >= 3x fewer passes), and checks that every history is
monotone.  Wall-clock times are in the same run, for reference only.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import import_metafast

mf = import_metafast()

FAMILIES = ("sinusoid", "harmonic", "multimodal")
SCHEMES = ("overrelax", "squarem")


def passes_to_reach(model, target: float) -> int | None:
    """E-steps done when the objective first reached ``target`` (None if it never did)."""
    obj = np.asarray(model.objective_)
    hit = np.flatnonzero(obj >= target - 1e-9 * abs(target))
    return int(model._passes_at[hit[0]]) if hit.size else None


def fit(tasks, acceleration: str, max_iter: int):
    model = mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=40), acceleration=acceleration, max_iter=max_iter, tol=0.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(tasks)
    return model, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 tasks, 40 iterations")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.iters = min(args.tasks, 200), min(args.iters, 40)
    print(
        f"Passes to reach plain EM's objective after {args.iters} iterations "
        f"({args.tasks} tasks x 20 points, 40 RBFs, full covariance)"
    )
    print(f"{'family':11s} {'scheme':10s} {'passes':>7s} {'x fewer':>8s} {'monotone':>9s} {'time':>8s}")
    worst = np.inf
    for family in FAMILIES:
        tasks = mf.tasks.load(family, n_tasks=args.tasks, n_support=10, n_query=10, seed=0)
        plain, t_plain = fit(tasks, "none", args.iters)
        target = plain.objective_[-1]
        print(f"{family:11s} {'none':10s} {plain.n_passes_:7d} {1.0:8.2f} {'':>9s} {t_plain:7.2f}s")
        for scheme in SCHEMES:
            model, t = fit(tasks, scheme, args.iters)
            n = passes_to_reach(model, target)
            obj = np.asarray(model.objective_)
            monotone = bool(np.all(np.diff(obj) >= -1e-9 * np.abs(obj).max()))
            ratio = plain.n_passes_ / n if n else 0.0
            if scheme == "squarem":
                worst = min(worst, ratio)
            shown = f"{n:7d}" if n else "  never"
            print(f"{'':11s} {scheme:10s} {shown} {ratio:8.2f} {str(monotone):>9s} {t:7.2f}s")
    print(f"\nSQUAREM: at least {worst:.2f}x fewer passes than plain EM (target >= 3x)")


if __name__ == "__main__":
    main()
