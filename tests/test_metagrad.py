"""MetaGrad: the engine's meta-gradients (w0, rates, basis parameters) against finite differences
of the meta-batch objective, the re-split of training rows, the estimator API (fit, evaluate,
adapt, adapt_predict, partial_fit on a stream, clone, pickle), learning, and bad input."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast.learners.grad._engine import Adam, TrainingRows, batch_meta_grad, split_batch


@pytest.fixture(scope="module")
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=200, n_support=5, n_query=10, seed=0)


@pytest.fixture(scope="module")
def test_tasks():
    return mf.tasks.load("sinusoid", n_tasks=100, n_support=5, n_query=10, seed=1)


def small_basis(tasks, name="rbf", **params):
    return mf.basis.make(name, **params).fit_tasks(tasks)


# ------------------------------------------------------------------------- engine gradients
@pytest.mark.parametrize("method", ["maml", "metasgd", "fomaml", "imaml"])
@pytest.mark.parametrize(
    "basis_name, params", [("rbf", {"n_basis": 6}), ("mlp", {"n_basis": 5, "width": 4, "random_state": 0})]
)
def test_batch_meta_grad_matches_finite_differences(tasks, method, basis_name, params):
    ts = tasks.subset(np.arange(6))
    basis = small_basis(ts, basis_name, **params)
    rows = TrainingRows(ts, basis, 1.0, cache_design=False)
    batch = split_batch(rows, np.arange(6), "resplit", np.random.default_rng(0))
    m = basis.n_basis
    rng = np.random.default_rng(1)
    w0, rates = rng.standard_normal(m) * 0.3, rng.uniform(0.2, 0.5, m)
    lam = 0.8

    def loss(w0_=w0, rates_=rates, b=basis):
        return batch_meta_grad(method, 3, lam, b, rows, batch, w0_, rates_, False, 1).loss

    res = batch_meta_grad(method, 3, lam, basis, rows, batch, w0, rates, True, 2)
    eps = 1e-6
    num_w = np.array([(loss(w0 + eps * e) - loss(w0 - eps * e)) / (2 * eps) for e in np.eye(m)])
    if method == "fomaml":
        assert not np.allclose(res.grad_w, num_w, rtol=1e-3)  # first order: not the exact gradient
    else:
        np.testing.assert_allclose(res.grad_w, num_w, rtol=1e-5, atol=1e-8)
    if method in ("maml", "metasgd"):
        num_a = np.array([(loss(rates_=rates + eps * e) - loss(rates_=rates - eps * e)) / (2 * eps) for e in np.eye(m)])
        np.testing.assert_allclose(res.grad_rates, num_a, rtol=1e-5, atol=1e-8)
    if method == "imaml":  # the learned proximal strength: d loss / d log(lam)
        num_reg = (
            batch_meta_grad(method, 3, lam * np.exp(eps), basis, rows, batch, w0, rates, False, 1).loss
            - batch_meta_grad(method, 3, lam * np.exp(-eps), basis, rows, batch, w0, rates, False, 1).loss
        ) / (2 * eps)
        np.testing.assert_allclose(res.grad_log_reg, num_reg, rtol=1e-5, atol=1e-9)
        assert abs(num_reg) > 1e-6
    if method == "fomaml":
        return
    params_now = basis.learnable_params()
    for key, value in params_now.items():
        direction = rng.standard_normal(value.shape)
        num = (
            loss(b=basis.with_params(**{key: value + eps * direction}))
            - loss(b=basis.with_params(**{key: value - eps * direction}))
        ) / (2 * eps)
        np.testing.assert_allclose(np.sum(res.grad_basis[key] * direction), num, rtol=1e-4, atol=1e-7)


def test_split_uses_every_row_and_keeps_support_size(tasks):
    ts = tasks.subset(np.arange(10))
    rows = TrainingRows(ts, small_basis(ts, n_basis=5), 1.0, cache_design=True)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        b = split_batch(rows, np.arange(10), "resplit", rng)
        assert np.all(np.diff(b.inner_offsets) == 5) and np.all(np.diff(b.outer_offsets) == 10)
        both = np.concatenate([b.inner, b.outer])
        assert sorted(both) == list(range(150))  # a partition of the rows
        seen.update(b.inner.tolist())
    assert seen == set(range(150))  # every row also adapts
    given = split_batch(rows, np.array([3]), "given", rng)
    np.testing.assert_array_equal(given.inner, np.arange(45, 50))  # support rows come first
    np.testing.assert_array_equal(given.outer, np.arange(50, 60))
    rep = split_batch(rows, np.array([0, 2]), "inner-only", rng)
    assert rep.outer.size == 0 and rep.inner.size == 30


def test_adam_minimises_a_quadratic():
    opt = Adam(0.1)
    p = {"x": np.array([3.0, -2.0])}
    for _ in range(500):
        p = opt.step(p, {"x": 2 * p["x"]})
    assert np.abs(p["x"]).max() < 1e-2


# ------------------------------------------------------------------------- the estimator
@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd", "reptile", "imaml"])
def test_every_method_learns_and_beats_no_meta_learning(tasks, test_tasks, method):
    basis = small_basis(tasks, n_basis=20)
    model = mf.MetaGrad(basis=basis, method=method, n_iter=300, random_state=0, n_jobs=1).fit(tasks)
    untrained = mf.MetaGrad(basis=basis, method=method, n_iter=0, random_state=0).fit(tasks)
    mse, base = model.evaluate(test_tasks)["mse"], untrained.evaluate(test_tasks)["mse"]
    assert np.isfinite(mse) and mse < 0.9 * base
    assert len(model.loss_curve_) == 300 and model.n_iter_ == 300
    if method == "metasgd":
        assert not np.allclose(model.inner_lr_, model.inner_lr_[0])  # rates were learned
    else:
        assert np.allclose(model.inner_lr_, model.inner_lr_[0])


def test_adapt_adapt_predict_and_evaluate_agree(tasks, test_tasks):
    model = mf.MetaGrad(basis=small_basis(tasks, n_basis=15), n_iter=50, random_state=0).fit(tasks)
    t = test_tasks[3]
    reg = model.adapt(t.X_support, t.y_support)
    pred = reg.predict(t.X_query)
    np.testing.assert_allclose(model.adapt_predict(t.X_support, t.y_support, t.X_query), pred, rtol=1e-10)
    W = model.adapt_tasks(test_tasks)
    np.testing.assert_allclose(W[3], reg.coef_, rtol=1e-10, atol=1e-12)
    mse = np.mean(
        [np.mean((model.adapt(s.X_support, s.y_support).predict(s.X_query) - s.y_query) ** 2) for s in test_tasks]
    )
    np.testing.assert_allclose(model.evaluate(test_tasks)["mse"], mse, rtol=1e-8)
    refit = clone(reg).fit(t.X_support, t.y_support)  # a plain sklearn regressor
    np.testing.assert_allclose(refit.predict(t.X_query), pred)
    assert reg.score(t.X_query, t.y_query) <= 1.0


def test_seeded_thread_independent_and_picklable(tasks, test_tasks):
    kw = dict(basis=small_basis(tasks, n_basis=10), n_iter=40, random_state=3)
    a = mf.MetaGrad(n_jobs=1, **kw).fit(tasks)
    b = mf.MetaGrad(n_jobs=2, **kw).fit(tasks)
    np.testing.assert_array_equal(a.init_coef_, b.init_coef_)
    c = pickle.loads(pickle.dumps(a))
    assert c.evaluate(test_tasks) == a.evaluate(test_tasks)
    c.partial_fit(test_tasks)  # keeps training after unpickling
    assert c.n_iter_ > a.n_iter_


def test_partial_fit_and_stream_fit(tasks, test_tasks):
    chunks = [tasks.subset(np.arange(i, i + 50)) for i in range(0, 200, 50)]
    model = mf.MetaGrad(basis=small_basis(tasks, n_basis=10), meta_batch=10, random_state=0).fit(iter(chunks))
    assert model.n_iter_ == 20 and model.n_tasks_seen_ == 200
    before = model.evaluate(test_tasks)["mse"]
    for _ in range(5):
        for ch in chunks:
            model.partial_fit(ch)
    assert model.evaluate(test_tasks)["mse"] < before


def test_learn_basis_moves_the_basis_and_helps(tasks, test_tasks):
    basis = small_basis(tasks, n_basis=12)
    fixed = mf.MetaGrad(basis=basis, n_iter=300, random_state=0).fit(tasks)
    learned = mf.MetaGrad(basis=basis, n_iter=300, learn_basis=True, random_state=0).fit(tasks)
    assert not np.allclose(learned.basis_.learnable_params()["centers"], basis.learnable_params()["centers"])
    assert learned.evaluate(test_tasks)["mse"] < fixed.evaluate(test_tasks)["mse"]
    np.testing.assert_array_equal(basis.learnable_params()["centers"], basis.learnable_params()["centers"])


def test_max_time_stops_training(tasks):
    model = mf.MetaGrad(basis=small_basis(tasks, n_basis=10), n_iter=10**7, max_time=0.3, random_state=0).fit(tasks)
    assert 0 < model.n_iter_ < 10**7


def test_float32_tasks(tasks, test_tasks):
    t32 = tasks.astype(np.float32)
    model = mf.MetaGrad(basis=small_basis(tasks, n_basis=10), n_iter=100, random_state=0).fit(t32)
    ref = mf.MetaGrad(basis=small_basis(tasks, n_basis=10), n_iter=100, random_state=0).fit(tasks)
    np.testing.assert_allclose(model.evaluate(test_tasks)["mse"], ref.evaluate(test_tasks)["mse"], rtol=1e-2)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "param, value, match",
    [
        ("method", "anil", "method"),
        ("inner_steps", 0, "inner_steps"),
        ("inner_lr", -1.0, "inner_lr"),
        ("inner_reg", 0.0, "inner_reg"),
        ("meta_lr", 0, "meta_lr"),
        ("meta_batch", 0, "meta_batch"),
        ("n_iter", -1, "n_iter"),
        ("train_rows", "query", "train_rows"),
        ("max_time", -1, "max_time"),
    ],
)
def test_bad_parameters_name_themselves(tasks, param, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mf.MetaGrad(**{param: value}).fit(tasks)


def test_bad_input_errors(tasks):
    with pytest.raises(TypeError, match="tasks"):
        mf.MetaGrad().fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="reptile"):
        mf.MetaGrad(method="reptile", learn_basis=True).fit(tasks)
    with pytest.raises(ValueError, match="learnable"):
        mf.MetaGrad(basis="bspline", learn_basis=True).fit(tasks)
    with pytest.raises(NotFittedError, match="not fitted"):
        mf.MetaGrad().adapt(np.zeros((2, 1)), np.zeros(2))
    model = mf.MetaGrad(basis=small_basis(tasks, n_basis=8), n_iter=5, random_state=0).fit(tasks)
    with pytest.raises(ValueError, match="y"):
        model.adapt(np.zeros((2, 1)), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="X"):
        model.adapt(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(FloatingPointError, match="inner_lr"):
        mf.MetaGrad(basis=small_basis(tasks, n_basis=8), inner_lr=1e100, n_iter=5).fit(tasks)


def test_train_rows_support_keeps_the_given_split(tasks, test_tasks, monkeypatch):
    from metafast.learners.grad import _training as grad

    modes = []
    real = grad.split_batch
    monkeypatch.setattr(grad, "split_batch", lambda rows, t, mode, rng: modes.append(mode) or real(rows, t, mode, rng))
    basis = small_basis(tasks, n_basis=10)
    kw = dict(basis=basis, validation_fraction=None, random_state=0)
    given = mf.MetaGrad(train_rows="support", n_iter=20, **kw).fit(tasks)
    resplit = mf.MetaGrad(n_iter=20, **kw).fit(tasks)
    mf.MetaGrad(method="reptile", n_iter=5, **kw).fit(tasks)
    assert modes == ["given"] * 20 + ["resplit"] * 20 + ["inner-only"] * 5
    assert not np.allclose(given.init_coef_, resplit.init_coef_)
