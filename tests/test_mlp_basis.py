"""The ``mlp`` basis: kernels against a plain numpy network (float32/float64, odd sizes, both
depths and activations), design_vjp against finite differences, the conformance checks and
scikit-learn's estimator checks, seeding and bad settings."""

import pickle

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import metafast as mf
from metafast.basis.mlp import MLP
from metafast.testing import check_basis_family

CONFIGS = [
    dict(hidden_layers=1, activation="tanh"),
    dict(hidden_layers=2, activation="tanh"),
    dict(hidden_layers=1, activation="relu"),
    dict(hidden_layers=2, activation="relu"),
]


def numpy_features(B, X):
    act = np.tanh if B.activation == "tanh" else (lambda z: np.maximum(z, 0))
    Z = (np.asarray(X, np.float64) - B.input_mean_) / B.input_scale_
    H = act(Z @ B.weights_["W1"] + B.weights_["b1"])
    return act(H @ B.weights_["W2"] + B.weights_["b2"]) if "W2" in B.weights_ else H


@pytest.fixture
def threaded_small_work(monkeypatch):
    monkeypatch.setattr(mf.parallel, "MIN_PARALLEL_WORK", 0)  # exercise the threaded paths


@pytest.mark.usefixtures("threaded_small_work")
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_design_and_weighted_sum_match_numpy(cfg, dtype):
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (301, 3))  # 301: a partial last block of rows
    B = MLP(n_basis=13, width=7, random_state=1, n_jobs=2, **cfg).fit(X)
    Xc = X.astype(dtype)
    ref = numpy_features(B, X)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    Phi = B.design(Xc)
    assert Phi.dtype == dtype and Phi.shape == (301, 13)
    np.testing.assert_allclose(Phi, ref, **tol)
    W = rng.standard_normal((13, 3))
    np.testing.assert_allclose(B.weighted_sum(Xc, W), ref @ W, **tol)
    np.testing.assert_allclose(B.weighted_sum(Xc[::2], W[:, 0]), ref[::2] @ W[:, 0], **tol)  # strided X
    off = np.array([0, 5, 5, 301])
    Wt = rng.standard_normal((3, 13))
    exp = np.concatenate([ref[a:b] @ Wt[t] for t, (a, b) in enumerate(zip(off[:-1], off[1:]))])
    np.testing.assert_allclose(B.weighted_sum_tasks(Xc, off, Wt), exp, **tol)


@pytest.mark.usefixtures("threaded_small_work")
@pytest.mark.parametrize("cfg", CONFIGS)
def test_design_vjp_matches_finite_differences_and_float32(cfg):
    rng = np.random.default_rng(2)
    X = rng.uniform(-2, 2, (150, 2))
    B = MLP(n_basis=6, width=5, random_state=3, n_jobs=2, **cfg).fit(X)
    G = rng.standard_normal((150, 6))
    grads = B.design_vjp(X, G)
    params = B.learnable_params()
    assert set(grads) == set(params)
    for key, value in params.items():
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            up, dn = value.copy(), value.copy()
            up[idx] += 1e-6
            dn[idx] -= 1e-6
            num[idx] = (
                np.sum(G * B.with_params(**{key: up}).design(X)) - np.sum(G * B.with_params(**{key: dn}).design(X))
            ) / 2e-6
        # ReLU kinks make single entries noisy only if a unit sits exactly at 0: not here
        np.testing.assert_allclose(grads[key], num, rtol=1e-5, atol=1e-6)
    g32 = B.design_vjp(X.astype(np.float32), G.astype(np.float32))
    for key in grads:
        np.testing.assert_allclose(g32[key], grads[key], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_conformance_checks(cfg):
    check_basis_family(MLP(n_basis=8, width=6, random_state=0, **cfg))


def test_registered_seeded_and_picklable():
    X = np.random.default_rng(0).uniform(-1, 1, (40, 2))
    B = mf.basis.make("mlp", n_basis=12, random_state=5).fit(X)
    C = mf.basis.make("mlp", n_basis=12, random_state=5).fit(X)
    np.testing.assert_array_equal(B.design(X), C.design(X))
    D = mf.basis.make("mlp", n_basis=12, random_state=6).fit(X)
    assert not np.allclose(B.design(X), D.design(X))
    E = pickle.loads(pickle.dumps(B))
    np.testing.assert_array_equal(E.design(X), B.design(X))
    # results do not depend on the thread count
    np.testing.assert_array_equal(B.set_params(n_jobs=1).design(X), B.set_params(n_jobs=2).design(X))


def test_bad_settings_name_the_parameter():
    X = np.zeros((5, 1))
    with pytest.raises(ValueError, match="activation"):
        MLP(activation="sigmoid").fit(X)
    with pytest.raises(ValueError, match="hidden_layers"):
        MLP(hidden_layers=3).fit(X)
    with pytest.raises(ValueError, match="width"):
        MLP(width=0).fit(X)
    with pytest.raises(ValueError, match="n_basis"):
        MLP(n_basis=0).fit(X)
    B = MLP(n_basis=4, hidden_layers=1).fit(np.random.default_rng(0).standard_normal((10, 1)))
    with pytest.raises(ValueError, match="W1"):
        B.with_params(W1=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="W2"):
        B.with_params(W2=np.zeros((4, 4)))


@parametrize_with_checks(
    [MLP(n_basis=5, width=4, random_state=0), MLP(n_basis=3, hidden_layers=1, activation="relu", random_state=0)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_metabayes_learns_the_network_on_the_log_evidence():
    """ALPaCA-style: MetaBayes(learn_basis=True) moves the weights and raises the summed evidence."""
    train = mf.tasks.load("friedman", n_tasks=60, n_support=10, n_query=10, seed=0)
    test = mf.tasks.load("friedman", n_tasks=60, n_support=10, n_query=20, seed=1)
    basis = mf.basis.make("mlp", n_basis=8, width=8, random_state=0)
    fixed = mf.MetaBayes(basis=basis, max_iter=50, tol=1e-3).fit(train)
    learned = mf.MetaBayes(basis=basis, learn_basis=True, max_iter=50, tol=1e-3, basis_rounds=3, basis_max_iter=10).fit(
        train
    )
    assert learned.basis_log_evidence_[-1] > learned.basis_log_evidence_[0]
    assert not np.allclose(learned.basis_.learnable_params()["W1"], basis.fit_tasks(train).learnable_params()["W1"])
    assert learned.evaluate(test)["mse"] < fixed.evaluate(test)["mse"]


def test_metagrad_trains_the_network_anil_style():
    train = mf.tasks.load("sinusoid", n_tasks=200, n_support=5, n_query=5, seed=0)
    basis = mf.basis.make("mlp", n_basis=10, width=10, random_state=0)
    model = mf.MetaGrad(basis=basis, learn_basis=True, meta_lr=0.003, n_iter=150, random_state=0).fit(train)
    assert np.mean(model.loss_curve_[-20:]) < np.mean(model.loss_curve_[:20])
    assert not np.allclose(model.basis_.learnable_params()["W2"], basis.fit_tasks(train).learnable_params()["W2"])
