"""MetaBayes' gradient optimiser (learners/bayes/_lbfgs.py) and the convergence report."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import metafast as mf
from metafast.learners import MetaBayes
from metafast.learners.bayes._em import GaussianPrior, estep, log_prior
from metafast.learners.bayes._lbfgs import Coordinates
from metafast.tasks import TaskSet


def grouped(T=400, n=5, q=3, seed=0, noise=0.4):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(q, q)) / np.sqrt(q)
    W = rng.normal(size=q) + rng.normal(size=(T, q)) @ B.T
    X = rng.uniform(-1, 1, (T, n))
    Phi = np.polynomial.legendre.legvander(X.ravel(), q - 1).reshape(T, n, q)
    Y = np.einsum("tnq,tq->tn", Phi, W) + noise * rng.normal(size=(T, n))
    off = np.arange(T + 1) * n
    return TaskSet(X.reshape(-1, 1), Y.ravel(), off, X.reshape(-1, 1), Y.ravel(), off)


@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mapped", [False, True])
def test_gradient_matches_finite_differences(kind, dtype, mapped):
    """dF/dx from one E-step's statistics against central differences of F (log evidence +
    log p(Sigma), nu > 0 and a non-identity target)."""
    rng = np.random.default_rng(7)
    T, n, m = 37, 5, 3  # odd sizes
    Phi64 = rng.normal(size=(T * n, m))
    y = rng.normal(size=T * n)
    off = np.arange(T + 1) * n
    B = rng.normal(size=(m, m))
    cov = {"full": B @ B.T + np.eye(m), "diag": np.diag([0.5, 2.0, 1.3]), "iso": 1.3 * np.eye(m)}[kind]
    A = rng.normal(size=(m, m)) + 2 * np.eye(m) if mapped and kind == "full" else None
    centre = GaussianPrior(rng.normal(size=m), cov, 0.7, kind, A)
    coords = Coordinates(centre)
    nu, psi = 2.0, 0.5 * np.eye(m) + 0.1

    def F(x, Phi):
        prior, K = coords.prior(x)
        stats, _ = estep(Phi, y, off, prior, 1, with_means=False)
        return stats.log_evidence + log_prior(prior, nu, psi), stats, prior, K

    x = coords.start() + 0.3 * rng.normal(size=coords.start().shape)
    Phi = np.asfortranarray(Phi64.astype(dtype))[:, :]  # a non-C layout on purpose
    _, stats, prior, K = F(x, Phi)
    g = coords.gradient(stats, prior, K, nu, psi)
    h = 1e-6
    fd = np.array([(F(x + h * e, Phi64)[0] - F(x - h * e, Phi64)[0]) / (2 * h) for e in np.eye(x.size)])
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    assert np.abs(g - fd).max() <= rtol * np.abs(fd).max()


@pytest.mark.parametrize("acceleration", ["lbfgs", "squarem", "overrelax", "none"])
def test_objective_never_decreases_and_the_report_is_honest(acceleration):
    train = grouped(seed=1)
    model = MetaBayes(
        basis=mf.basis.make("polynomial", n_basis=3), prior_weight=0.5, acceleration=acceleration, max_iter=500
    ).fit(train)
    obj = model.objective_
    assert np.all(np.diff(obj) >= -1e-9 * np.abs(obj).max())
    rep = model.convergence_
    assert rep["converged"] and model.converged_
    assert rep["method"] == acceleration and rep["n_passes"] == model.n_passes_
    np.testing.assert_array_equal(rep["objective"], obj)
    assert rep["reason"] and rep["boundary"] == ""
    assert rep["gradient_norm"] < 1e-2


def test_lbfgs_reaches_the_same_optimum_as_em_and_beats_it_in_accuracy():
    train = grouped(T=1000, q=4, seed=2)
    basis = mf.basis.make("polynomial", n_basis=4)
    ref = MetaBayes(basis=basis, prior_weight=0.0, acceleration="squarem", tol=1e-12, max_iter=5000).fit(train)
    fast = MetaBayes(basis=basis, prior_weight=0.0, acceleration="lbfgs").fit(train)
    default = MetaBayes(basis=basis, prior_weight=0.0).fit(train)
    best = ref.log_evidence_[-1]
    assert abs(fast.log_evidence_[-1] - best) <= 1e-6 * abs(best)
    assert abs(fast.log_evidence_[-1] - best) <= abs(default.log_evidence_[-1] - best) + 1e-9 * abs(best)
    assert fast.convergence_["gradient_norm"] <= np.sqrt(1e-5) / 3
    np.testing.assert_allclose(fast.covariance_, ref.covariance_, rtol=1e-2, atol=1e-3)


def test_not_converged_warns_naming_what_to_change_and_reports_why():
    train = grouped(seed=3)
    model = MetaBayes(basis=mf.basis.make("polynomial", n_basis=3), max_iter=2, acceleration="lbfgs")
    with pytest.warns(ConvergenceWarning, match="increase max_iter or tol, or try acceleration='squarem'"):
        model.fit(train)
    assert not model.converged_ and "max_iter" in model.convergence_["reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged: no warning
        MetaBayes(basis=mf.basis.make("polynomial", n_basis=3), acceleration="lbfgs").fit(train)


def test_boundary_is_reported_not_a_crash():
    """Noise-free tasks from a 2-function family fitted with 6: sigma^2 goes to its floor and
    Sigma to rank 2; the fit finishes and convergence_ says so."""
    rng = np.random.default_rng(4)
    T, n = 300, 8
    X = rng.uniform(-1, 1, (T, n))
    Y = rng.normal(size=(T, 1)) + rng.normal(size=(T, 1)) * X
    off = np.arange(T + 1) * n
    train = TaskSet(X.reshape(-1, 1), Y.ravel(), off, X.reshape(-1, 1), Y.ravel(), off)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MetaBayes(basis=mf.basis.make("polynomial", n_basis=6), prior_weight=0.0, max_iter=30).fit(train)
    assert np.all(np.isfinite(model.covariance_))
    assert "floor" in model.convergence_["boundary"] or "singular" in model.convergence_["boundary"]


def test_gradient_norm_is_zero_at_an_em_fixed_point():
    train = grouped(seed=5)
    model = MetaBayes(
        basis=mf.basis.make("polynomial", n_basis=3), prior_weight=0.0, tol=1e-13, max_iter=5000, acceleration="squarem"
    ).fit(train)
    assert model.convergence_["gradient_norm"] < 1e-4
    rough = MetaBayes(basis=mf.basis.make("polynomial", n_basis=3), prior_weight=0.0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rough.fit(train)
    assert rough.convergence_["gradient_norm"] > 10 * model.convergence_["gradient_norm"]
