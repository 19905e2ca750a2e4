"""MetaRidge: the closed-form mean, alpha selection, metric, adapt/evaluate, streams, API contract,
bad input and numerically hard input."""

import pickle

import numpy as np
import pytest
from ridge_helpers import Identity, LearnableRBF, linear_hierarchy
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast.learners.ridge.estimator import BiasedRidgeRegressor, gls_mean


@pytest.fixture(scope="module")
def hier():
    return linear_hierarchy(n_tasks=300, n_support=6, n_query=10, d=3, tau=0.3, noise=0.1, seed=1, sizes=[1, 2, 6, 9])


def envelope_objective(h, tasks, basis, lam, d=None):
    """sum_t (y_t - Phi_t h)^T (Phi_t D Phi_t^T + lam I)^{-1} (y_t - Phi_t h), by numpy."""
    total = 0.0
    for t in range(len(tasks)):
        task = tasks[t]
        P = basis.design(task.X_support)
        D = np.eye(P.shape[1]) if d is None else np.diag(d)
        r = task.y_support - P @ h
        total += r @ np.linalg.solve(P @ D @ P.T + lam * np.eye(len(r)), r)
    return total


def test_closed_form_mean_minimises_envelope(hier):
    tasks, _ = hier
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support), alphas=0.5).fit(tasks)
    # the default fit uses every labelled row: support and query rows together
    f = lambda h: envelope_objective(h, tasks.all_rows(), model.basis_, 0.5)
    res = minimize(f, np.zeros(3), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(model.prior_mean_, res.x, atol=1e-5)
    assert f(model.prior_mean_) <= res.fun + 1e-9


def test_recovers_known_mean():
    tasks, h = linear_hierarchy(n_tasks=2000, n_support=5, d=3, tau=0.3, noise=0.1, seed=2)
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support)).fit(tasks)
    np.testing.assert_allclose(model.prior_mean_, h, atol=0.05)


def test_alpha_chosen_by_explicit_leave_one_out(hier):
    tasks, _ = hier
    basis = Identity(3).fit(tasks.X_support)
    alphas = [0.01, 0.3, 3.0, 30.0]
    model = mf.MetaRidge(basis=basis, alphas=alphas).fit(tasks)
    ref = []
    for a in alphas:
        h = mf.MetaRidge(basis=basis, alphas=a).fit(tasks).prior_mean_
        per_task = []
        merged = tasks.all_rows()  # LOO runs over every labelled row (train_rows="all")
        for t in range(len(merged)):
            P, y = merged[t].X_support, merged[t].y_support
            e = [
                y[i]
                - P[i]
                @ np.linalg.solve(
                    P[np.arange(len(y)) != i].T @ P[np.arange(len(y)) != i] + a * np.eye(3),
                    P[np.arange(len(y)) != i].T @ y[np.arange(len(y)) != i] + a * h,
                )
                for i in range(len(y))
            ]
            per_task.append(np.mean(np.square(e)))
        ref.append(np.mean(per_task))
    np.testing.assert_allclose(model.cv_scores_, ref, rtol=1e-8)
    assert model.alpha_ == alphas[int(np.argmin(ref))]


def test_cv_query_scores_match_evaluate(hier):
    tasks, _ = hier
    basis = Identity(3).fit(tasks.X_support)
    model = mf.MetaRidge(basis=basis, alphas=[0.1, 1.0, 10.0], cv="query").fit(tasks)
    i = list(model.alphas_).index(model.alpha_)
    assert model.cv_scores_[i] == pytest.approx(model.evaluate(tasks)["mse"], rel=1e-10)


def test_adapt_returns_sklearn_regressor(hier):
    tasks, _ = hier
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support), alphas=0.7).fit(tasks)
    t = tasks[5]
    reg = model.adapt(t.X_support, t.y_support)
    assert isinstance(reg, BiasedRidgeRegressor)
    P = t.X_support
    w = np.linalg.solve(P.T @ P + 0.7 * np.eye(3), P.T @ t.y_support + 0.7 * model.prior_mean_)
    np.testing.assert_allclose(reg.coef_, w, rtol=1e-10)
    np.testing.assert_allclose(reg.predict(t.X_query), t.X_query @ w, rtol=1e-10)
    np.testing.assert_allclose(model.adapt_predict(t.X_support, t.y_support, t.X_query), t.X_query @ w, rtol=1e-10)
    assert reg.score(t.X_query, t.y_query) > 0.5
    with pytest.raises(ValueError, match="return_std"):
        reg.predict(t.X_query, return_std=True)
    refit = BiasedRidgeRegressor(**reg.get_params(deep=False)).fit(t.X_support, t.y_support)
    np.testing.assert_allclose(refit.coef_, w, rtol=1e-10)
    cloned = clone(reg).fit(t.X_support, t.y_support)  # unfitted basis: fitted on X, like a Pipeline
    assert np.isfinite(cloned.predict(t.X_query)).all()


def test_evaluate_matches_per_task_loop(hier):
    tasks, _ = hier
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support)).fit(tasks)
    res = model.evaluate(tasks)
    per_task = [
        np.mean((model.adapt(tasks[t].X_support, tasks[t].y_support).predict(tasks[t].X_query) - tasks[t].y_query) ** 2)
        for t in range(len(tasks))
    ]
    assert res["n_tasks"] == len(tasks)
    assert res["mse"] == pytest.approx(np.mean(per_task), rel=1e-10)
    assert res["mse_ci95"] == pytest.approx(1.96 * np.std(per_task, ddof=1) / np.sqrt(len(tasks)), rel=1e-8)
    assert set(res) == {"mse", "mse_ci95", "n_tasks"}


def test_meta_learning_beats_plain_ridge():
    tasks, _ = linear_hierarchy(n_tasks=500, n_support=2, d=3, tau=0.2, seed=3)
    basis = Identity(3).fit(tasks.X_support)
    model = mf.MetaRidge(basis=basis).fit(tasks)
    mse = model.evaluate(tasks)["mse"]  # query points are held out from every adaptation
    plain = BiasedRidgeRegressor(basis=basis, alpha=1.0)
    plain_mse = np.mean(
        [
            np.mean(
                (plain.fit(tasks[t].X_support, tasks[t].y_support).predict(tasks[t].X_query) - tasks[t].y_query) ** 2
            )
            for t in range(len(tasks))
        ]
    )
    assert mse < 0.5 * plain_mse


def test_stream_fit_equals_taskset_fit(hier):
    tasks, _ = hier
    basis = Identity(3).fit(tasks.X_support)
    whole = mf.MetaRidge(basis=basis).fit(tasks)
    chunks = [tasks[i : i + 70] for i in range(0, len(tasks), 70)]
    streamed = mf.MetaRidge(basis=basis).fit(iter(chunks))
    np.testing.assert_allclose(streamed.prior_mean_, whole.prior_mean_, rtol=1e-10)
    assert streamed.alpha_ == whole.alpha_
    listed = mf.MetaRidge(basis=basis, metric="diag", max_iter=3, n_jobs=1).fit(chunks)
    assert np.all(np.isfinite(listed.metric_))
    with pytest.raises(ValueError, match="one-shot iterator"):
        mf.MetaRidge(basis=basis, metric="diag").fit(iter(chunks))


def test_diag_metric_lowers_envelope_and_finds_irrelevant_features():
    rng = np.random.default_rng(5)
    tasks = []
    for _ in range(400):  # weights vary along feature 0 only; features 1, 2 are fixed at 1
        w = np.array([rng.normal() * 2, 1.0, 1.0])
        X = rng.normal(size=(4, 3))
        Xq = rng.normal(size=(5, 3))
        tasks.append(mf.tasks.Task(X, X @ w + 0.05 * rng.normal(size=4), Xq, Xq @ w))
    tasks = mf.tasks.TaskSet.from_list(tasks)
    basis = Identity(3).fit(tasks.X_support)
    plain = mf.MetaRidge(basis=basis, alphas=0.3).fit(tasks)
    diag = mf.MetaRidge(basis=basis, alphas=0.3, metric="diag").fit(tasks)
    assert diag.metric_.mean() == pytest.approx(1.0)
    assert diag.metric_[0] > 10 * max(diag.metric_[1], diag.metric_[2])
    assert envelope_objective(diag.prior_mean_, tasks, basis, 0.3, diag.metric_) < envelope_objective(
        plain.prior_mean_, tasks, basis, 0.3
    )
    assert diag.evaluate(tasks)["mse"] < plain.evaluate(tasks)["mse"]


def test_default_basis_and_sinusoid_end_to_end():
    tasks = mf.tasks.load("sinusoid", n_tasks=200, n_support=10, n_query=10, seed=0)
    model = mf.MetaRidge().fit(tasks)
    assert model.basis is None and model.basis_.n_basis == 40
    res = model.evaluate(mf.tasks.load("sinusoid", n_tasks=100, n_support=10, n_query=10, seed=1))
    assert np.isfinite(res["mse"]) and res["mse"] < 2.0  # predicting 0 scores about 4.4


def test_params_clone_pickle_and_basis_untouched(hier, tmp_path):
    tasks, _ = hier
    basis = LearnableRBF(5)
    model = mf.MetaRidge(basis=basis, alphas=[0.1, 1.0], n_jobs=1, random_state=0)
    assert clone(model).get_params()["alphas"] == [0.1, 1.0]
    model.fit(tasks)
    assert not basis.__sklearn_is_fitted__()  # the parameter is never fitted in place
    blob = pickle.dumps(model)
    again = pickle.loads(blob)
    t = tasks[0]
    np.testing.assert_array_equal(
        again.adapt(t.X_support, t.y_support).coef_, model.adapt(t.X_support, t.y_support).coef_
    )
    state = model.__getstate__()
    state["_metafast_version"] = "0.0.1" if mf.__version__[:3] != "0.0" else "9.9.0"
    with pytest.raises(ValueError, match="not compatible"):
        mf.MetaRidge().__setstate__(state)


def test_thread_count_invariant_fit():
    tasks, _ = linear_hierarchy(n_tasks=900, n_support=6, n_query=4, d=3, seed=9, sizes=[1, 2, 6, 9])
    assert tasks.support_offsets[-1] >= 2048  # large enough for the kernels to use threads
    basis = Identity(3).fit(tasks.X_support)
    a = mf.MetaRidge(basis=basis, n_jobs=1, metric="diag", max_iter=5).fit(tasks)
    b = mf.MetaRidge(basis=basis, n_jobs=2, metric="diag", max_iter=5).fit(tasks)
    np.testing.assert_array_equal(a.prior_mean_, b.prior_mean_)
    np.testing.assert_array_equal(a.metric_, b.metric_)
    np.testing.assert_array_equal(a.adapt_tasks(tasks), b.adapt_tasks(tasks))


def test_bad_input_errors(hier):
    tasks, _ = hier
    with pytest.raises(NotFittedError):
        mf.MetaRidge().adapt(np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="alphas"):
        mf.MetaRidge(alphas=[1.0, -1.0]).fit(tasks)
    with pytest.raises(TypeError, match="alphas"):
        mf.MetaRidge(alphas="many").fit(tasks)
    with pytest.raises(ValueError, match="n_jobs"):
        mf.MetaRidge(n_jobs=0).fit(tasks)
    with pytest.raises(ValueError, match="cv"):
        mf.MetaRidge(cv="kfold").fit(tasks)
    with pytest.raises(ValueError, match="metric"):
        mf.MetaRidge(metric="full").fit(tasks)
    with pytest.raises(TypeError, match="TaskSet"):
        mf.MetaRidge().fit(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="chunk 1"):
        mf.MetaRidge().fit([tasks, "not tasks"])
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support)).fit(tasks)
    with pytest.raises(ValueError, match="NaN"):
        model.adapt(np.array([[np.nan, 0, 0]]), [1.0])
    with pytest.raises(ValueError, match="features"):
        model.adapt(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="rows"):
        model.adapt(np.zeros((2, 3)), np.zeros(3))
    labels = mf.tasks.TaskSet(
        tasks.X_support,
        np.zeros(len(tasks.y_support), dtype=np.int64),
        tasks.support_offsets,
        tasks.X_query,
        np.zeros(len(tasks.y_query), dtype=np.int64),
        tasks.query_offsets,
    )
    with pytest.raises(TypeError, match="class labels"):
        mf.MetaRidge().fit(labels)


def test_numerically_hard_input_is_finite_and_correct():
    rng = np.random.default_rng(7)
    X = rng.uniform(-5, 5, size=(1, 1))
    dup = mf.tasks.Task(np.repeat(X, 6, 0), np.full(6, 2.0), X, np.array([2.0]))  # duplicates, constant y
    one = mf.tasks.Task(X, np.array([1.0]), X, np.array([1.0]))  # n = 1
    tasks = mf.tasks.load("sinusoid", n_tasks=50, n_support=5, n_query=5, seed=3)
    hard = mf.tasks.TaskSet.from_list([dup, one] + [tasks[i] for i in range(len(tasks))])
    model = mf.MetaRidge().fit(hard)  # 40 RBFs, n = 1..6 < m
    assert np.all(np.isfinite(model.prior_mean_))
    pred = model.adapt(np.repeat(X, 6, 0), np.full(6, 2.0)).predict(X)
    assert np.isfinite(pred).all() and abs(pred[0] - 2.0) < 0.5
    assert np.isfinite(model.evaluate(hard)["mse"])
    # features scaled by 1e6 and targets by 1e6: the RBF basis follows the data, so predictions scale
    scaled = mf.tasks.TaskSet(
        hard.X_support * 1e6,
        hard.y_support * 1e6,
        hard.support_offsets,
        hard.X_query * 1e6,
        hard.y_query * 1e6,
        hard.query_offsets,
    )
    big = mf.MetaRidge().fit(scaled)
    assert big.alpha_ == model.alpha_
    np.testing.assert_allclose(big.prior_mean_, model.prior_mean_ * 1e6, rtol=1e-5, atol=1e-3)


def test_gls_mean_singular_statistics():
    M = np.diag([2.0, 0.0])
    b = np.array([4.0, 0.0])
    np.testing.assert_allclose(gls_mean(M, b), [2.0, 0.0])
    np.testing.assert_array_equal(gls_mean(np.zeros((2, 2)), np.zeros(2)), [0.0, 0.0])


def test_adapt_accepts_any_layout_and_float32(hier):
    tasks, _ = hier
    model = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support), verbose=1, n_jobs=-1).fit(tasks)
    t = tasks[7]
    ref = model.adapt(t.X_support, t.y_support).predict(t.X_query)
    wide = np.zeros((t.X_support.shape[0], 6))
    wide[:, ::2] = t.X_support
    for X, y in (
        (np.asfortranarray(t.X_support), list(t.y_support)),
        (wide[:, ::2], t.y_support[:, None]),
        (t.X_support.astype(np.int64).astype(np.float64) * 0 + t.X_support, t.y_support),
    ):
        np.testing.assert_allclose(model.adapt(X, y).predict(np.asfortranarray(t.X_query)), ref, rtol=1e-12)
    p32 = model.adapt(t.X_support.astype(np.float32), t.y_support.astype(np.float32)).predict(
        t.X_query.astype(np.float32)
    )
    assert p32.dtype == np.float64 and np.all(np.isfinite(p32))
    np.testing.assert_allclose(p32, ref, rtol=1e-3, atol=1e-3)
    ts32 = mf.tasks.TaskSet(
        tasks.X_support.astype(np.float32),
        tasks.y_support.astype(np.float32),
        tasks.support_offsets,
        tasks.X_query.astype(np.float32),
        tasks.y_query.astype(np.float32),
        tasks.query_offsets,
    )
    r32, r64 = model.evaluate(ts32), model.evaluate(tasks)
    assert r32["mse"] == pytest.approx(r64["mse"], rel=1e-3)
    m32 = mf.MetaRidge(basis=Identity(3).fit(tasks.X_support)).fit(ts32)
    np.testing.assert_allclose(m32.prior_mean_, model.prior_mean_, rtol=1e-4)


def test_split_mean_minimises_transfer_risk(hier):
    tasks, h_true = hier
    basis = Identity(3).fit(tasks.X_support)
    model = mf.MetaRidge(basis=basis, alphas=0.8, mean="split").fit(tasks)

    def risk(h):
        total = 0.0
        for t in range(len(tasks)):
            P, y = tasks[t].X_support, tasks[t].y_support
            w = np.linalg.solve(P.T @ P + 0.8 * np.eye(3), P.T @ y + 0.8 * h)
            total += np.mean((tasks[t].X_query @ w - tasks[t].y_query) ** 2)
        return total

    res = minimize(risk, np.zeros(3), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(model.prior_mean_, res.x, atol=1e-5)
    np.testing.assert_allclose(model.prior_mean_, h_true, atol=0.1)
    # alpha chosen by LOO with the split mean; the kernel's split stats agree with the query scores
    chosen = mf.MetaRidge(basis=basis, alphas=[0.1, 1.0, 10.0], mean="split", cv="query").fit(tasks)
    i = list(chosen.alphas_).index(chosen.alpha_)
    assert chosen.cv_scores_[i] == pytest.approx(chosen.evaluate(tasks)["mse"], rel=1e-10)
    with pytest.raises(ValueError, match="mean"):
        mf.MetaRidge(mean="median").fit(tasks)
    with pytest.raises(ValueError, match="envelope"):
        mf.MetaRidge(mean="split", metric="diag").fit(tasks)
    no_query = mf.tasks.TaskSet(
        tasks.X_support,
        tasks.y_support,
        tasks.support_offsets,
        np.empty((0, 3)),
        np.empty(0),
        np.zeros(len(tasks) + 1, dtype=np.int64),
    )
    with pytest.raises(ValueError, match="query points"):
        mf.MetaRidge(basis=basis, mean="split").fit(no_query)


@pytest.mark.slow
def test_one_task_of_a_million_rows_fits():
    """D16: MetaRidge failed on one task of 1,000,000 rows ("could not allocate the scratch of
    meta_stats") while MetaBayes fitted it."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    X = rng.uniform(-5, 5, (n, 1))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(n)
    tasks = mf.tasks.TaskSet(X, y, np.array([0, n]), X[:20], y[:20], np.array([0, 20]))
    basis = mf.basis.make("rbf", n_basis=8, length_scale=1.5).fit(np.linspace(-5, 5, 50)[:, None])
    model = mf.MetaRidge(basis=basis).fit(tasks)
    assert np.isfinite(model.prior_mean_).all()
    assert model.evaluate(tasks)["mse"] < 0.05  # the noise variance is 0.01
