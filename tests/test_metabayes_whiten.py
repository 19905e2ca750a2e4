"""MetaBayes' whitened coordinates (learners/bayes/_whiten.py): invariance, the mapped-back prior,
the hyperprior's meaning, rank-deficient designs."""

import functools
import warnings

import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer

import metafast as mf
from metafast.basis import as_basis
from metafast.learners import MetaBayes
from metafast.learners.bayes._em import GaussianPrior, Stats, log_prior, mstep
from metafast.learners.bayes._whiten import missing_columns, to_user, to_whitened, whitening_map
from metafast.tasks import TaskSet


def legendre(X, q, A=None):
    Phi = np.polynomial.legendre.legvander(X[:, 0] / 3.0, q - 1)
    return Phi if A is None else Phi @ A


def grouped(T=300, n=6, q=4, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(q, q)) / np.sqrt(q)
    W = rng.normal(size=q) + rng.normal(size=(T, q)) @ B.T
    X = rng.uniform(-3, 3, (T, n))
    Phi = legendre(X.reshape(-1, 1), q).reshape(T, n, q)
    Y = np.einsum("tnq,tq->tn", Phi, W) + noise * rng.normal(size=(T, n))
    off = np.arange(T + 1) * n
    return TaskSet(X.reshape(-1, 1), Y.ravel(), off, X.reshape(-1, 1), Y.ravel(), off)


def basis_of(q, A=None, X=None):
    X = np.zeros((1, 1)) if X is None else X
    return as_basis(FunctionTransformer(functools.partial(legendre, q=q, A=A)), X)


@pytest.mark.parametrize("q", [3, 6])
def test_fit_on_phi_and_phi_times_A_predicts_the_same(q):
    train, test = grouped(q=q, seed=1), grouped(T=20, q=q, seed=2)
    rng = np.random.default_rng(q)
    A = rng.normal(size=(q, q)) * np.exp(rng.uniform(-3, 3, q))  # invertible, badly scaled
    # lbfgs: stops on the gradient (sqrt(1e-14)/3 per task), so both fits sit at the optimum
    models = [
        MetaBayes(basis=basis_of(q, M), prior_weight=0.0, tol=1e-14, max_iter=2000, acceleration="lbfgs").fit(train)
        for M in (None, A)
    ]
    for model in models:
        assert model.converged_
    (m0, s0), (m1, s1) = (model.predict_tasks(test) for model in models)
    np.testing.assert_allclose(m1, m0, rtol=1e-8, atol=1e-8 * np.abs(m0).max())
    np.testing.assert_allclose(s1, s0, rtol=1e-8)
    np.testing.assert_allclose(models[1].noise_var_, models[0].noise_var_, rtol=1e-8)
    # the public prior is in the user's coordinates: mean_ of Phi A is A^-1 mean_ of Phi
    np.testing.assert_allclose(A @ models[1].mean_, models[0].mean_, rtol=1e-6, atol=1e-8)


def test_whitening_map_makes_the_gram_the_identity_and_round_trips():
    rng = np.random.default_rng(0)
    Phi = rng.normal(size=(200, 5)) @ np.diag([1e-2, 1, 10, 100, 1e2])
    G = Phi.T @ Phi
    wmap = whitening_map(G, 200, "full", np.float64)
    np.testing.assert_allclose(wmap.A.T @ (G / 200) @ wmap.A, np.eye(5), atol=1e-9)
    np.testing.assert_allclose(wmap.A @ wmap.A_inv, np.eye(5), atol=1e-9)
    assert wmap.logdet == pytest.approx(np.linalg.slogdet(wmap.A)[1])
    d = whitening_map(G, 200, "diag", np.float64)
    np.testing.assert_allclose(np.diag(d.A.T @ (G / 200) @ d.A), np.ones(5))
    assert np.count_nonzero(d.A - np.diag(np.diag(d.A))) == 0
    assert whitening_map(G, 200, "iso", np.float64) is None
    mean, S = rng.normal(size=5), np.cov(rng.normal(size=(5, 30)))
    back = to_user(*to_whitened(mean, S, wmap), wmap)
    np.testing.assert_allclose(back[0], mean, rtol=1e-9)
    np.testing.assert_allclose(back[1], S, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_hyperprior_and_mstep_keep_their_meaning_in_the_users_coordinates(kind):
    """The MAP M-step in whitened coordinates (target psi A^-1 A^-T), mapped back, equals the
    M-step in the user's coordinates (target psi I); and log p(Sigma) is the same number."""
    rng = np.random.default_rng(1)
    m, T, nu, psi = 4, 50, 3.0, 0.7
    G = np.cov(rng.normal(size=(m, 60))) * 60 + np.diag([1e-2, 1, 1e2, 1e3])
    wmap = whitening_map(G, 60, kind, np.float64)
    M = rng.normal(size=(T, m))
    S = np.cov(rng.normal(size=(m, 40)))
    if kind == "diag":
        S = np.diag(np.diag(S))
    second = T * S + M.T @ M
    if kind == "diag":
        second = np.diag(np.diag(second))
    user = Stats(T, 400, M.sum(0), second, 12.0, 0.0)
    Ai = wmap.A_inv
    white = Stats(T, 400, Ai @ M.sum(0), Ai @ second @ Ai.T, 12.0, 0.0)
    start = GaussianPrior(np.zeros(m), np.eye(m), 1.0, kind)
    p_user = mstep(user, start, nu, psi, 1e-10)
    p_white = mstep(white, GaussianPrior(np.zeros(m), np.eye(m), 1.0, kind, wmap.A), nu, wmap.target(psi), 1e-10)
    mean, cov = to_user(p_white.mean, p_white.cov, wmap)
    np.testing.assert_allclose(mean, p_user.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov, p_user.cov, rtol=1e-8, atol=1e-12)
    assert log_prior(p_white, nu, wmap.target(psi)) == pytest.approx(log_prior(p_user, nu, psi), rel=1e-9)


def test_rank_deficient_design_warns_naming_the_columns_and_stays_finite():
    train = grouped(q=3, seed=3)

    def dup(X):
        P = legendre(X, 3)
        return np.column_stack([P, P[:, 1], np.zeros(len(X))])  # column 3 = column 1, column 4 = 0

    with pytest.warns(UserWarning, match=r"rank 3 < 5.*column\(s\) 3, 4") as record:
        model = MetaBayes(basis=as_basis(FunctionTransformer(dup), train.X_support), prior_weight=0.0).fit(train)
    assert not any("converge" in str(w.message) for w in record)
    for value in (model.mean_, model.covariance_, model.noise_var_, model.log_evidence_):
        assert np.all(np.isfinite(value))
    mean, std = model.predict_tasks(grouped(T=5, q=3, seed=4))
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    # the same model as the full-rank basis: equal log evidence
    ref = MetaBayes(basis=basis_of(3), prior_weight=0.0).fit(train)
    assert model.log_evidence_[-1] == pytest.approx(ref.log_evidence_[-1], rel=1e-6)


def test_missing_columns_of_fewer_rows_than_columns():
    rng = np.random.default_rng(2)
    Phi = rng.normal(size=(3, 6))
    assert len(missing_columns(Phi.T @ Phi, 3, np.float64)) == 3
    assert missing_columns(np.eye(4), 10, np.float64) == []


def test_ill_conditioned_polynomial_pipeline_converges_without_warning():
    """The issue's case, smaller: StandardScaler + PolynomialFeatures(9) on sinusoid."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    train = mf.tasks.load("sinusoid", n_tasks=500, n_support=10, n_query=10, seed=0)
    test = mf.tasks.load("sinusoid", n_tasks=200, n_support=5, n_query=20, seed=1)
    basis = as_basis(make_pipeline(StandardScaler(), PolynomialFeatures(9)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MetaBayes(basis=basis).fit(train)
    assert model.converged_ and model.n_passes_ <= 60
    assert model.evaluate(test)["mse"] <= 1e-3
    unwhitened = MetaBayes(basis=basis, whiten=False, max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not unwhitened.fit(train).converged_  # what whitening fixes
