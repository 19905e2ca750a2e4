"""MetaBayes E-step throughput in GFLOP/s against a large DGEMM measured in the same run.

Run from the repository root after building the kernels:

    python benchmarks/bench_estep_flops.py [--tasks 100000] [--support 10] [--basis 40]

The E-step of a pass over an in-memory TaskSet (designs already cached, as from the second EM
pass on) is timed at 1 thread and at every core, and its useful floating-point work is counted
from the algorithm (per task with n rows and m basis functions, dual form n < m):

    whitened design Phi U          2 n m^2      residual y - Phi mu        2 n m
    Gram Phi_w Phi_w^T             n^2 m        Cholesky + inverse         n^3
    V^T = Phi_w^T L^-T             n^2 m        two triangular solves      2 n^2, v = V^T z: 2 n m
    sum V^T V (block syrk)         n m^2        sum v v^T, means V U^T     3 m^2

The reference is numpy's DGEMM on two 2000 x 2000 matrices with BLAS limited to the same thread
count (the machine's attainable peak for dense work).  The ratio E-step / DGEMM is the figure to
watch; absolute rates depend on the machine and its load (reported with the load average).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import best_of, import_metafast
from threadpoolctl import threadpool_limits

mf = import_metafast()

from metafast.learners.bayes._blocks import DesignCache, chunk_stats  # noqa: E402
from metafast.learners.bayes._em import GaussianPrior  # noqa: E402


def estep_flops(n: np.ndarray, m: int) -> float:
    """Useful flops of one E-step over tasks of n rows (see the module docstring)."""
    n = n.astype(np.float64)
    dual = n < m
    per = (
        2 * n * m * m
        + 2 * n * m
        + 3 * m * m
        + np.where(dual, 2 * n * n * m + n**3 + 2 * n * n + 2 * n * m + n * m * m, n * m * m + m**3 + 2 * n * m)
    )  # primal: syrk + chol/inverse + gemv
    return float(per.sum())


def dgemm_gflops(n_threads: int, size: int = 2000, repeat: int = 3) -> float:
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    with threadpool_limits(limits=n_threads, user_api="blas"):
        A @ B
        t = best_of(lambda: A @ B, repeat)
    return 2 * size**3 / t / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--support", type=int, default=10)
    ap.add_argument("--basis", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    tasks = mf.tasks.load("sinusoid", n_tasks=args.tasks, n_support=args.support, n_query=1, seed=0)
    basis = mf.basis.make("rbf", n_basis=args.basis).fit(tasks.X_support)  # the support rows only
    m = basis.n_basis
    rng = np.random.default_rng(1)
    A = rng.standard_normal((m, m)) / np.sqrt(m)
    prior = GaussianPrior(rng.standard_normal(m) * 0.1, A @ A.T + 0.1 * np.eye(m), 0.05, "full")
    cache = DesignCache(budget=2**40)
    chunk_stats(basis, tasks, 1.0, prior, 1, cache, 0)  # fills the design cache
    flops = estep_flops(np.diff(tasks.support_offsets), m)
    cores = mf.parallel.available_cores()
    print(
        f"E-step of {args.tasks} tasks x {args.support} rows, m = {m} (full covariance, designs cached): "
        f"{flops / args.tasks / 1e3:.1f} kflop a task; load average {os.getloadavg()[0]:.1f} on {cores} cores"
    )
    print(f"{'threads':>7s} {'E-step s':>9s} {'E-step GFLOP/s':>15s} {'DGEMM GFLOP/s':>14s} {'ratio':>6s}")
    for n_threads in sorted({1, cores}):
        with threadpool_limits(limits=1, user_api="blas"):
            t = best_of(lambda: chunk_stats(basis, tasks, 1.0, prior, n_threads, cache, 0), args.repeat)
        rate, peak = flops / t / 1e9, dgemm_gflops(n_threads)
        print(f"{n_threads:7d} {t:9.3f} {rate:15.2f} {peak:14.2f} {rate / peak:6.2f}")


if __name__ == "__main__":
    main()
