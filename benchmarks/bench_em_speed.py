"""Speed of one MetaBayes EM iteration: the Cython E-step against batched numpy, and throughput.

Run from the repository root after building the kernels:

    python benchmarks/bench_em_speed.py [--repeat 5] [--tasks 4000]

Prints, in one run:
1. one EM iteration (E-step + M-step), 4,000 tasks x 20 points, m = 40, full covariance:
   MetaBayes's kernel against two batched numpy implementations of the same update
   (a) "numpy-einsum": Phi_t^T Phi_t formed by einsum each iteration, np.linalg.inv per task
       (the reference DESIGN.md names);
   (b) "numpy-cached": the per-task Gram matrices Phi_t^T Phi_t and Phi_t^T y_t computed once
       and reused, so an iteration is one batched inverse plus einsums (the strongest numpy
       version we could write; memory T m^2);
2. tasks per second per pass (one EM iteration), 10 points a task, m = 40, full and diag,
   float64 and float32;
with 1 and 2 threads.  Design matrices are computed once outside the timings for every method.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import import_metafast  # noqa: E402
from threadpoolctl import threadpool_limits

import_metafast()  # the installed metafast, else this checkout (built in place)

from metafast.learners.bayes._em import GaussianPrior, estep, mstep  # noqa: E402


def problem(T: int, n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Phi = rng.normal(size=(T, n, m)) / np.sqrt(m)
    W = rng.normal(size=(T, m))
    y = np.einsum("tnm,tm->tn", Phi, W) + 0.1 * rng.normal(size=(T, n))
    prior = GaussianPrior(np.zeros(m), np.eye(m), 0.5, "full")
    return Phi, y, prior


def numpy_em_iteration(Phi, y, prior, G=None, b=None):
    """One EM iteration in batched numpy (primal form); returns (new prior, summed log evidence)."""
    T, n, m = Phi.shape
    mu, Sigma, s2 = prior.mean, prior.cov, prior.noise_var
    if G is None:
        G = np.einsum("tni,tnj->tij", Phi, Phi)
        b = np.einsum("tni,tn->ti", Phi, y)
    Sinv = np.linalg.inv(Sigma)
    A = Sinv[None] + G / s2
    S = np.linalg.inv(A)  # (T, m, m) posterior covariances
    mt = np.einsum("tij,tj->ti", S, (Sinv @ mu)[None] + b / s2)
    resid = y - np.einsum("tni,ti->tn", Phi, mt)
    rss = np.einsum("tn,tn->t", resid, resid)
    d = mt - mu
    quad = np.einsum("ti,ij,tj->t", d, Sinv, d)
    logdet_A = np.linalg.slogdet(A)[1]
    logdet_S = np.linalg.slogdet(Sigma)[1]
    ll = -0.5 * np.sum(rss / s2 + quad + logdet_A + logdet_S + n * np.log(2 * np.pi * s2))
    new_mu = mt.mean(0)
    dm = mt - new_mu
    new_Sigma = (S.sum(0) + dm.T @ dm) / T
    noise = (rss.sum() + np.einsum("tij,tij->", S, G)) / (T * n)
    return GaussianPrior(new_mu, new_Sigma, noise, "full"), ll


def metabayes_em_iteration(Phi2, y1, off, prior, n_threads):
    stats, _ = estep(Phi2, y1, off, prior, n_threads)
    return mstep(stats, prior, 0.0, 1.0, 1e-12), stats.log_evidence


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=4000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 500 tasks, 2 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.repeat = min(args.tasks, 500), min(args.repeat, 2)

    T, n, m = args.tasks, 20, 40
    Phi, y, prior = problem(T, n, m)
    Phi2, y1 = np.ascontiguousarray(Phi.reshape(T * n, m)), y.ravel().copy()
    off = np.arange(T + 1, dtype=np.int64) * n
    G = np.einsum("tni,tnj->tij", Phi, Phi)
    b = np.einsum("tni,tn->ti", Phi, y)

    # the two implementations agree
    p_np, ll_np = numpy_em_iteration(Phi, y, prior)
    with threadpool_limits(1, "blas"):
        p_mb, ll_mb = metabayes_em_iteration(Phi2, y1, off, prior, 1)
    assert np.allclose(p_np.cov, p_mb.cov, rtol=1e-6, atol=1e-9) and np.isclose(ll_np, ll_mb, rtol=1e-8)

    print(f"One EM iteration, {T} tasks x {n} points, m = {m}, full covariance, float64 (best of {args.repeat})")
    for threads in (1, 2):
        with threadpool_limits(threads, "blas"):
            t_einsum = best_time(lambda: numpy_em_iteration(Phi, y, prior), args.repeat)
            t_cached = best_time(lambda: numpy_em_iteration(Phi, y, prior, G, b), args.repeat)
        with threadpool_limits(1, "blas"):
            t_mb = best_time(lambda: metabayes_em_iteration(Phi2, y1, off, prior, threads), args.repeat)
        print(
            f"  threads={threads}: MetaBayes {t_mb * 1e3:8.1f} ms | numpy-einsum {t_einsum * 1e3:8.1f} ms "
            f"(x{t_einsum / t_mb:5.1f}) | numpy-cached {t_cached * 1e3:8.1f} ms (x{t_cached / t_mb:5.1f})"
        )

    T2, n2 = max(args.tasks * 5, 20000), 10
    Phi_b, y_b, prior_b = problem(T2, n2, m, seed=1)
    Phi_b2, y_b1 = np.ascontiguousarray(Phi_b.reshape(T2 * n2, m)), y_b.ravel().copy()
    off_b = np.arange(T2 + 1, dtype=np.int64) * n2
    print(f"\nThroughput: tasks per second per EM pass, {T2} tasks x {n2} points, m = {m} (target >= 200,000)")
    for dtype in (np.float64, np.float32):
        P, yy = Phi_b2.astype(dtype), y_b1.astype(dtype)
        for kind in ("full", "diag"):
            pr = GaussianPrior(prior_b.mean, prior_b.cov, prior_b.noise_var, kind)
            for threads in (1, 2):
                with threadpool_limits(1, "blas"):
                    t = best_time(lambda: metabayes_em_iteration(P, yy, off_b, pr, threads), args.repeat)
                print(
                    f"  {np.dtype(dtype).name} covariance={kind:4s} threads={threads}: "
                    f"{T2 / t:12,.0f} tasks/s ({t * 1e3:.1f} ms)"
                )


if __name__ == "__main__":
    main()
