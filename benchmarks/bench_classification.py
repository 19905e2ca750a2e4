"""MetaClassifier against the issue's targets (ratios and differences measured in one run).

Prints
1. accuracy on 5-way ``digits`` episodes whose meta-test digits (5-9) were never seen in
   meta-training (0-4), at 1 and 5 shots: every head, per-episode LogisticRegression and the
   nearest class mean (target: the logistic head >= 3 points above both);
2. calibration on the shared-label ``logistic`` family at 10 shots: ECE of every head (target
   <= 0.05) and log loss against the oracle that knows each task's weights (target within 5%);
3. adapt speed: ``adapt_predict`` for one 5-way 5-shot episode with m = 256 basis functions and 75
   query points, against scikit-learn LogisticRegression fit + predict on the same design matrix
   (target >= 50x);
4. meta-training throughput: episodes per second of one Laplace-EM pass (E-step kernel + M-step
   product), 5-way 5-shot, m = 64, on the support rows (25 per episode) and on all labelled rows
   (support + 15 queries per class: 100 per episode) (target >= 20,000 episodes/s); and tasks per
   second of the E-step on many-row tasks (shared-label, 400 rows, 2 and 5 classes) in the dual,
   in the primal and with the per-task choice ("auto").

Run: python benchmarks/bench_classification.py [--quick] [--threads 2]
Timings on a shared machine are noisy: the best of several runs is reported.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_of, import_metafast  # noqa: E402
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import_metafast()

import metafast as mf
from metafast.bench.baselines import OracleClassifier, PerEpisodeLogistic, PerTaskCentroid
from metafast.learners.classify._logistic import LogisticEM, laplace

HEADS = ("logistic", "ridge", "prototype")


def digits_accuracy(n_train: int, n_test: int, threads: int) -> None:
    print("\n1. digits 5-way, meta-train digits 0-4, meta-test digits 5-9 (accuracy, 95% CI over episodes)")
    print(f"{'shots':>5}  {'learner':<32} {'accuracy':>16} {'log loss':>9} {'ECE':>6}")
    basis = mf.basis.make("polynomial", n_basis=65)
    for k in (1, 5):
        kw = dict(n_way=5, k_shot=k, n_query=15, train_classes=range(5))
        train = mf.tasks.load("digits", n_tasks=n_train, seed=0, **kw)
        test = mf.tasks.load("digits", n_tasks=n_test, seed=1, split="test", **kw)
        rows = []
        for head in HEADS:
            clf = mf.MetaClassifier(basis=basis, head=head, max_iter=20, n_jobs=threads).fit(train)
            rows.append((f"MetaClassifier ({head})", clf.evaluate(test)))
        rows.append(("per-episode LogisticRegression", PerEpisodeLogistic().fit(train).evaluate(test)))
        rows.append(("nearest class mean", PerTaskCentroid().fit(train).evaluate(test)))
        for name, s in rows:
            print(
                f"{k:>5}  {name:<32} {s['accuracy']:.3f} +- {s['accuracy_ci95']:.3f}   "
                f"{s.get('nll', float('nan')):>7.3f} {s.get('ece', float('nan')):>6.3f}"
            )
        best_base = max(rows[-1][1]["accuracy"], rows[-2][1]["accuracy"])
        print(f"       logistic head - best baseline: {100 * (rows[0][1]['accuracy'] - best_base):+.1f} points")


def calibration(n_train: int, n_test: int, threads: int) -> None:
    print("\n2. shared-label 'logistic' family (3 classes, 10 shots = 30 points a task)")
    kw = dict(k_shot=10, n_query=20)
    train = mf.tasks.load("logistic", n_tasks=n_train, seed=0, **kw)
    test = mf.tasks.load("logistic", n_tasks=n_test, seed=1, **kw)
    oracle = OracleClassifier().fit(train).evaluate(test)
    print(f"   {'learner':<28} {'accuracy':>8} {'log loss':>9} {'/ oracle':>9} {'ECE':>6}")
    for head in HEADS:
        s = (
            mf.MetaClassifier(basis=mf.basis.make("polynomial", n_basis=3), head=head, max_iter=50, n_jobs=threads)
            .fit(train)
            .evaluate(test)
        )
        print(
            f"   {'MetaClassifier (' + head + ')':<28} {s['accuracy']:>8.3f} {s['nll']:>9.3f} "
            f"{s['nll'] / oracle['nll']:>9.3f} {s['ece']:>6.3f}"
        )
    s = PerEpisodeLogistic().fit(train).evaluate(test)
    print(
        f"   {'per-episode LogisticRegr.':<28} {s['accuracy']:>8.3f} {s['nll']:>9.3f} {s['nll'] / oracle['nll']:>9.3f} "
        f"{s['ece']:>6.3f}"
    )
    print(
        f"   {'oracle (true weights)':<28} {oracle['accuracy']:>8.3f} {oracle['nll']:>9.3f} {1.0:>9.3f} "
        f"{oracle['ece']:>6.3f}"
    )
    s = bayes_predictive_true_prior(test)
    print(
        f"   {'Bayes predictive, true prior':<28} {s['accuracy']:>8.3f} {s['nll']:>9.3f} {s['nll'] / oracle['nll']:>9.3f} "
        f"{s['ece']:>6.3f}   (the best any learner can do from the support points)"
    )


def bayes_predictive_true_prior(tasks, n_samples: int = 4000, seed: int = 0) -> dict:
    """Posterior predictive of every task under the family's true prior, by self-normalised
    importance sampling from the prior (w ~ N(mu, I), weights = support likelihood)."""
    from scipy.special import logsumexp

    from metafast.learners.classify.estimator import classification_metrics
    from metafast.tasks.classes import logistic_features, logistic_prior

    mu, cov = logistic_prior()
    rng = np.random.default_rng(seed)
    W = mu[None] + rng.standard_normal((n_samples, *mu.shape)) * np.sqrt(cov[0, 0])  # (S, C, p)
    Z_out = []
    for t in tasks:
        Zs = np.einsum("np,scp->snc", logistic_features(t.X_support), W)
        loglik = (Zs[:, np.arange(t.n_support), t.y_support] - logsumexp(Zs, axis=2)).sum(axis=1)
        wts = np.exp(loglik - loglik.max())
        wts /= wts.sum()
        Zq = np.einsum("np,scp->snc", logistic_features(t.X_query), W)
        Pq = np.exp(Zq - logsumexp(Zq, axis=2, keepdims=True))
        Z_out.append(np.log(np.einsum("s,snc->nc", wts, Pq)))
    ncls = np.full(len(tasks), mu.shape[0], dtype=np.int64)
    return classification_metrics(np.concatenate(Z_out), tasks.y_query, tasks.query_offsets, ncls)


def adapt_speed(repeat: int) -> None:
    print("\n3. adapt_predict, one 5-way 5-shot episode, m = 256, 75 query points")
    kw = dict(n_way=5, k_shot=5, n_query=15, train_classes=range(5))
    train = mf.tasks.load("digits", n_tasks=100, seed=0, **kw)
    task = mf.tasks.load("digits", n_tasks=1, seed=1, split="test", **kw)[0]
    basis = mf.basis.make("rbf", n_basis=255, centers="kmeans", random_state=0)  # + constant = 256
    print(f"   {'what':<40} {'microseconds':>12} {'speed-up':>9}")
    Phi_s = np.hstack([basis.fit_tasks(train).design(task.X_support), np.ones((25, 1))])
    Phi_q = np.hstack([basis.design(task.X_query), np.ones((75, 1))])

    def sklearn_fit_predict():
        LogisticRegression(max_iter=1000).fit(Phi_s, task.y_support).predict(Phi_q)

    t_ref = best_of(sklearn_fit_predict, repeat)
    print(f"   {'sklearn LogisticRegression fit+predict':<40} {1e6 * t_ref:>12.0f} {1.0:>9.1f}")
    for head in HEADS:
        clf = mf.MetaClassifier(basis=basis, head=head, max_iter=5, n_jobs=1).fit(train)
        t = best_of(lambda: clf.adapt_predict(task.X_support, task.y_support, task.X_query), repeat)
        print(f"   {'MetaClassifier(' + head + ').adapt_predict':<40} {1e6 * t:>12.0f} {t_ref / t:>9.1f}")


def em_throughput(n_tasks: int, threads: int, repeat: int) -> None:
    print(f"\n4. one Laplace-EM pass (E-step kernel + M-step product), 5-way 5-shot, m = 64, {n_tasks} episodes")
    rng = np.random.default_rng(0)
    m, C = 64, 5
    prior = LogisticEM(None, 1, 0.0, 1.0, threads).initial_prior(rng.normal(size=(10, m)))
    for per_class, what in ((5, "support rows (25 an episode)"), (20, "all rows (100 an episode)")):
        n = C * per_class
        Phi = rng.normal(size=(n_tasks * n, m)) / np.sqrt(m)
        codes = np.tile(np.repeat(np.arange(C), per_class), n_tasks).astype(np.int64)
        off = np.arange(n_tasks + 1, dtype=np.int64) * n
        ncls = np.full(n_tasks, C, dtype=np.int64)
        warm = laplace(Phi, codes, off, ncls, prior, n_threads=threads).A

        def one_pass():
            laplace(Phi, codes, off, ncls, prior, n_threads=threads, want_stats=True, warm=warm).second_moment()

        def cold_pass():
            laplace(Phi, codes, off, ncls, prior, n_threads=threads, want_stats=True).second_moment()

        t_warm, t_cold = best_of(one_pass, repeat), best_of(cold_pass, repeat)
        print(f"   {what:<30} warm start {n_tasks / t_warm:>9.0f} episodes/s   cold start {n_tasks / t_cold:>9.0f}")
    n, T = 400, max(n_tasks // 20, 20)
    print(f"   many-row tasks ({n} rows, m = {m}, {T} tasks, cold E-step + M-step): tasks/s")
    for C in (2, 5):
        Phi = rng.normal(size=(T * n, m)) / np.sqrt(m)
        codes = rng.integers(0, C, T * n).astype(np.int64)
        off = np.arange(T + 1, dtype=np.int64) * n
        ncls = np.full(T, C, dtype=np.int64)
        rates = {
            path: T
            / best_of(
                lambda: laplace(
                    Phi, codes, off, ncls, prior, n_threads=threads, want_stats=True, path=path
                ).second_moment(),
                repeat,
            )
            for path in ("dual", "primal", "auto")
        }
        print(
            f"   {C} classes: dual {rates['dual']:>7.0f}   primal {rates['primal']:>7.0f}   auto {rates['auto']:>7.0f}"
            f"   (auto / dual {rates['auto'] / rates['dual']:.1f}x)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tasks (a smoke run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n_train, n_test = (100, 100) if args.quick else (300, 300)
    with threadpool_limits(limits=1, user_api="blas"):
        digits_accuracy(n_train, n_test, args.threads)
        calibration(4 * n_train, n_test, args.threads)
        adapt_speed(args.repeat)
        em_throughput(500 if args.quick else 2000, args.threads, max(2, args.repeat // 2))


if __name__ == "__main__":
    main()
