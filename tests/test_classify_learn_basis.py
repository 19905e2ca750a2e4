"""MetaClassifier(learn_basis=True): each head's basis objective and its gradient (finite
differences), and the alternation of basis and head."""

import numpy as np
import pytest

import metafast as mf
from metafast.learners._basis_opt import _flatten, _unflatten
from metafast.learners.classify._basis import logistic_query_loss, prototype_loo_loss, ridge_neg_evidence
from metafast.learners.classify._chunks import LocalChunks, Spec
from metafast.learners.classify._logistic import ClassPrior


def _packed(rng, T, n, nq, m, C):
    Phi_s, Phi_q = rng.normal(size=(T * n, m)), rng.normal(size=(T * nq, m))
    codes_s = np.tile(np.arange(n) % C, T)
    codes_q = rng.integers(0, C, T * nq)
    return Phi_s, codes_s, np.arange(T + 1) * n, np.full(T, C), Phi_q, codes_q, np.arange(T + 1) * nq


def _prior(rng, m, C, shared):
    A = rng.normal(size=(m, m))
    return ClassPrior(A @ A.T / m + 0.5 * np.eye(m), rng.normal(size=(C, m)) if shared else None)


def _fd_check(f, arrays, grads, eps=1e-6, tol=1e-6):
    """Central differences of f() with respect to every entry of every array."""
    for arr, g in zip(arrays, grads):
        fd = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            a0 = arr[idx]
            arr[idx] = a0 + eps
            fp = f()
            arr[idx] = a0 - eps
            fm = f()
            arr[idx] = a0
            fd[idx] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(g, fd, atol=tol * max(1.0, np.abs(fd).max()))


# (m, n): primal solve when m < n, dual otherwise
@pytest.mark.parametrize("m,n,C", [(4, 9, 3), (9, 5, 3), (6, 7, 2)])
@pytest.mark.parametrize("shared", [False, True])
def test_logistic_query_loss_gradient_by_finite_differences(m, n, C, shared):
    rng = np.random.default_rng(m * 10 + n)
    Phi_s, cs, so, nc, Phi_q, cq, qo = _packed(rng, 2, n, 4, m, C)
    prior = _prior(rng, m, C, shared)

    def f():
        return logistic_query_loss(prior, Phi_s, cs, so, nc, Phi_q, cq, qo, 1)

    val, dS, dQ = f()
    assert np.isfinite(val) and val > 0
    _fd_check(lambda: f()[0], [Phi_s, Phi_q], [dS, dQ])


def test_logistic_query_loss_gradient_with_ragged_query_sets():
    """Tasks of one support shape but different query sizes (one with none) take the per-task branch."""
    rng = np.random.default_rng(11)
    Phi_s, cs, so, nc, _, _, _ = _packed(rng, 3, 6, 1, 4, 3)
    qo = np.array([0, 3, 3, 8])
    Phi_q, cq = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    prior = _prior(rng, 4, 3, True)

    def f():
        return logistic_query_loss(prior, Phi_s, cs, so, nc, Phi_q, cq, qo, 1)

    val, dS, dQ = f()
    assert np.all(dS[6:12] == 0)  # task 1 has no query rows: no gradient
    _fd_check(lambda: f()[0], [Phi_s, Phi_q], [dS, dQ])


def test_logistic_query_loss_is_the_query_log_loss_of_the_adapted_map():
    """The value equals the mean query log loss of the batched adapt path (same MAP)."""
    from metafast.learners.classify._logistic import mean_log_loss, query_logits

    rng = np.random.default_rng(3)
    Phi_s, cs, so, nc, Phi_q, cq, qo = _packed(rng, 3, 6, 5, 5, 3)
    prior = _prior(rng, 5, 3, False)
    val = logistic_query_loss(prior, Phi_s, cs, so, nc, Phi_q, cq, qo, 1)[0]
    Z = query_logits(Phi_s, cs, so, nc, Phi_q, qo, prior, 1)
    assert val == pytest.approx(mean_log_loss(Z, cq, qo, nc), rel=1e-7)


@pytest.mark.parametrize("shared", [False, True])
def test_ridge_evidence_gradient_by_finite_differences(shared):
    rng = np.random.default_rng(5)
    Phi, codes, off, nc, *_ = _packed(rng, 3, 5, 1, 4, 3)
    prior = _prior(rng, 4, 3, shared)
    val, d = ridge_neg_evidence(prior, 0.3, Phi, codes, off, nc, 1)
    _fd_check(lambda: ridge_neg_evidence(prior, 0.3, Phi, codes, off, nc, 1)[0], [Phi], [d])


@pytest.mark.parametrize("shared", [False, True])
def test_prototype_loo_gradient_wrt_the_design(shared):
    rng = np.random.default_rng(7)
    Phi, codes, off, nc, *_ = _packed(rng, 3, 7, 1, 4, 3)
    metric = np.exp(rng.normal(size=4))
    val, d = prototype_loo_loss(metric, shared, Phi, codes, off, nc, 1)
    _fd_check(lambda: prototype_loo_loss(metric, shared, Phi, codes, off, nc, 1)[0], [Phi], [d])


@pytest.fixture(scope="module")
def episodes():
    kw = dict(n_way=3, n_features=3, n_total_classes=12, k_shot=2, n_query=4)
    return (
        mf.tasks.load("class-mixtures", n_tasks=40, seed=0, **kw),
        mf.tasks.load("class-mixtures", n_tasks=30, seed=1, split="test", **kw),
    )


def _source_and_spec(clf, tasks):
    """The in-process chunk source and Spec the fitted model's basis objective is summed over."""
    return LocalChunks(tasks, 1), Spec(
        clf.basis_, clf.setting_, getattr(clf, "classes_", None), clf.train_rows, clf.max_classes, clf.head
    )


@pytest.mark.parametrize("setting", ["episodic", "shared"])
@pytest.mark.parametrize("head", ["logistic", "ridge", "prototype"])
def test_basis_objective_gradient_through_the_basis(episodes, head, setting):
    """d objective / d basis parameters (design_vjp of dPhi, summed over the chunk source; shared
    prototype: also through the global class means) against finite differences."""
    train_ts = (
        episodes[0] if setting == "episodic" else mf.tasks.load("logistic", n_tasks=30, n_support=6, n_query=6, seed=0)
    )
    clf = mf.MetaClassifier(
        basis=mf.basis.make("polynomial", n_basis=4), head=head, max_iter=5, n_jobs=1, metric="none", normalize="none"
    )
    clf.fit(train_ts)
    assert clf.setting_ == setting
    objective = clf.basis_objective(*_source_and_spec(clf, train_ts))
    x0, layout = _flatten(clf.basis_.learnable_params())

    def f(x):
        return objective.evaluate(clf.basis_.with_params(**_unflatten(x, layout)))

    g, _ = _flatten(f(x0)[1])
    eps = 1e-6
    fd = np.array([(f(x0 + eps * e)[0] - f(x0 - eps * e)[0]) / (2 * eps) for e in np.eye(x0.size)])
    np.testing.assert_allclose(g, fd, atol=1e-6 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("head", ["logistic", "ridge", "prototype"])
def test_learn_basis_lowers_the_objective_and_moves_the_basis(episodes, head):
    train, test = episodes
    base = mf.basis.make("polynomial", n_basis=4)
    clf = mf.MetaClassifier(
        basis=base, head=head, learn_basis=True, basis_rounds=2, basis_max_iter=10, max_iter=10, n_jobs=1
    ).fit(train)
    obj = np.asarray(clf.basis_objective_)
    assert obj.size >= 2 and obj.min() < obj[0]
    # the kept (basis, head) pair is the one with the lowest objective
    value = clf.basis_objective(*_source_and_spec(clf, train)).value(clf.basis_)
    assert value == pytest.approx(obj.min(), rel=1e-9)
    fixed = mf.MetaClassifier(basis=base, head=head, max_iter=10, n_jobs=1, metric="none", normalize="none").fit(train)
    moved = [not np.allclose(v, fixed.basis_.learnable_params()[k]) for k, v in clf.basis_.learnable_params().items()]
    assert any(moved)
    scores = clf.evaluate(test)
    assert np.isfinite(scores["nll"]) and scores["accuracy"] > 1 / 3 + 0.1
    W = clf.adapt(test[0].X_support, test[0].y_support).predict_proba(test[0].X_query)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)


class _Identity(mf.basis.BasisFamily):
    """x itself: a basis with no learnable parameters."""

    def __init__(self, n_basis=3):
        self.n_basis = n_basis

    def design(self, X):
        return np.asarray(X)[:, : self.n_basis]


def test_learn_basis_bad_input(episodes):
    train = episodes[0]
    with pytest.raises(ValueError, match="no learnable parameters"):
        mf.MetaClassifier(basis=_Identity(), learn_basis=True, n_jobs=1).fit(train)
    with pytest.raises(TypeError, match="learn_basis"):
        mf.MetaClassifier(basis=mf.basis.make("polynomial", n_basis=3), learn_basis="yes").fit(train)
    no_query = mf.tasks.TaskSet.from_list(
        [mf.tasks.Task(t.X_support, t.y_support, t.X_support[:0], t.y_support[:0]) for t in train],
        label_setting="episodic",
    )
    with pytest.raises(ValueError, match="query rows"):
        mf.MetaClassifier(basis=mf.basis.make("polynomial", n_basis=3), learn_basis=True, max_iter=3, n_jobs=1).fit(
            no_query
        )


def test_learn_basis_in_float32_and_pickled(episodes):
    import pickle

    train, test = (ts.astype(np.float32) for ts in episodes)
    clf = mf.MetaClassifier(
        basis=mf.basis.make("rbf", n_basis=6), learn_basis=True, basis_rounds=1, basis_max_iter=5, max_iter=5, n_jobs=1
    ).fit(train)
    assert clf.basis_objective_[-1] < clf.basis_objective_[0]
    again = pickle.loads(pickle.dumps(clf))
    assert again.evaluate(test) == clf.evaluate(test)
    assert clf.adapt(test[0].X_support, test[0].y_support).predict_proba(test[0].X_query).dtype == np.float64
