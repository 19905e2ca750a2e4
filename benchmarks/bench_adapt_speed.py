"""MetaRidge (and MetaBayes when present) speed: meta-training throughput and one-task adapt+predict.

Prints
- fit throughput: tasks per second for one pass over the tasks (10 points a task, m = 40), for
  the whole `MetaRidge.fit` with one alpha (basis design + statistics + solve for h) and for the
  statistics kernel alone (design precomputed), with 1 and 2 threads;
- adapt + predict one task (10 support, 100 query points, m = 40): microseconds per call for
  `model.adapt(X, y).predict(Xq)` and `model.adapt_predict(X, y, Xq)` (MetaRidge; MetaBayes with
  and without the predictive std), against the scikit-learn
  equivalent (an RBF FunctionTransformer with the same centres + Ridge in a Pipeline, fit then
  predict), and the ratios.  Targets (DESIGN.md): >= 200,000 tasks/s per pass; >= 20x.

Run: python benchmarks/bench_adapt_speed.py [--tasks 20000] [--repeat 5]
Timings on a shared machine are noisy: the best of `repeat` runs is reported.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import import_metafast  # noqa: E402
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import_metafast()  # the installed metafast, else this checkout (built in place)

import metafast as mf
from metafast._kernels import _ridge


def best_of(fn, repeat: int, number: int = 1, clock=time.perf_counter) -> float:
    """Best time of `repeat` runs of `number` calls, per call (seconds)."""
    best = np.inf
    for _ in range(repeat):
        t0 = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - t0) / number)
    return best


def bench_fit(n_tasks: int, repeat: int) -> None:
    m = 40
    tasks = mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=10, n_query=1, seed=0)
    basis = mf.basis.make("rbf", n_basis=m).fit(np.concatenate([tasks.X_support, tasks.X_query]))
    Phi = np.ascontiguousarray(basis.design(tasks.X_support), dtype=np.float64)
    y = tasks.y_support
    off = tasks.support_offsets
    s = np.ones(m)
    out = [np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)]
    print(f"fit: {n_tasks} tasks x 10 points, m = {m}, one alpha (one pass over the tasks)")
    from threadpoolctl import threadpool_limits

    for n_jobs in (1, 2):
        model = mf.MetaRidge(basis=basis, alphas=1.0, n_jobs=n_jobs)
        t_fit = best_of(lambda: model.fit(tasks), repeat)
        with threadpool_limits(1, "blas"):
            t_kernel = best_of(lambda: _ridge.meta_stats(Phi, y, off, s, 1.0, *out, n_jobs, False), repeat)
            t_loo = best_of(lambda: _ridge.meta_stats(Phi, y, off, s, 1.0, *out, n_jobs, True), repeat)
        if n_jobs == 1:  # CPU time: robust to other processes sharing the cores
            with threadpool_limits(1, "blas"):
                t_cpu = best_of(
                    lambda: _ridge.meta_stats(Phi, y, off, s, 1.0, *out, 1, False), repeat, clock=time.process_time
                )
            print(f"  n_jobs=1: statistics kernel alone, per CPU second {n_tasks / t_cpu:12,.0f} tasks/s")
        print(
            f"  n_jobs={n_jobs}: MetaRidge.fit {n_tasks / t_fit:12,.0f} tasks/s   "
            f"statistics kernel alone {n_tasks / t_kernel:12,.0f} tasks/s (target >= 200,000); "
            f"with the LOO quadratic for alpha selection {n_tasks / t_loo:12,.0f} tasks/s per alpha"
        )


def bench_adapt(repeat: int) -> None:
    m, n, n_q = 40, 10, 100
    train = mf.tasks.load("sinusoid", n_tasks=500, n_support=n, n_query=10, seed=0)
    task = mf.tasks.load("sinusoid", n_tasks=1, n_support=n, n_query=n_q, seed=1)[0]
    X, y, Xq = task.X_support, task.y_support, task.X_query
    basis = mf.basis.make("rbf", n_basis=m).fit(np.concatenate([train.X_support, train.X_query]))
    model = mf.MetaRidge(basis=basis).fit(train)
    centers, ls = basis.centers_, basis.length_scale_

    def rbf_features(Z):
        return np.exp(-0.5 * ((Z[:, None, :] - centers[None]) ** 2).sum(-1) / ls**2)

    sk = make_pipeline(FunctionTransformer(rbf_features), Ridge(alpha=model.alpha_))
    np.testing.assert_allclose(model.adapt(X, y).predict(Xq), model.adapt_predict(X, y, Xq), rtol=1e-10)
    number = 200
    t_sk = best_of(lambda: sk.fit(X, y).predict(Xq), repeat, number)
    t_ap = best_of(lambda: model.adapt(X, y).predict(Xq), repeat, number)
    t_one = best_of(lambda: model.adapt_predict(X, y, Xq), repeat, number)
    print(f"adapt + predict one task ({n} support, {n_q} query, m = {m}):")
    print(f"  scikit-learn Pipeline(RBF transformer, Ridge) fit+predict {t_sk * 1e6:9.1f} us")
    print(
        f"  MetaRidge.adapt(X, y).predict(Xq)                         {t_ap * 1e6:9.1f} us   ratio {t_sk / t_ap:5.1f}x"
    )
    print(
        f"  MetaRidge.adapt_predict(X, y, Xq)  (one kernel call)      {t_one * 1e6:9.1f} us   "
        f"ratio {t_sk / t_one:5.1f}x   (target >= 20x)"
    )
    if hasattr(mf, "MetaBayes"):
        bayes = mf.MetaBayes(basis=basis).fit(train)
        t_b = best_of(lambda: bayes.adapt(X, y).predict(Xq, return_std=True), repeat, number)
        print(
            f"  MetaBayes.adapt(X, y).predict(Xq, return_std=True)        {t_b * 1e6:9.1f} us   "
            f"ratio {t_sk / t_b:5.1f}x"
        )
        if hasattr(bayes, "adapt_predict"):
            t_bo = best_of(lambda: bayes.adapt_predict(X, y, Xq, return_std=True), repeat, number)
            t_bm = best_of(lambda: bayes.adapt_predict(X, y, Xq), repeat, number)
            print(
                f"  MetaBayes.adapt_predict(X, y, Xq, return_std=True)        {t_bo * 1e6:9.1f} us   "
                f"ratio {t_sk / t_bo:5.1f}x   (target >= 20x)"
            )
            print(
                f"  MetaBayes.adapt_predict(X, y, Xq)  (mean only)            {t_bm * 1e6:9.1f} us   "
                f"ratio {t_sk / t_bm:5.1f}x"
            )
    else:
        print("  (mf.MetaBayes not available in this build: skipped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 tasks, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.repeat = min(args.tasks, 2000), min(args.repeat, 2)
    bench_fit(args.tasks, args.repeat)
    bench_adapt(args.repeat)


if __name__ == "__main__":
    main()
