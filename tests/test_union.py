"""mf.basis.union: columns side by side, each part on its own kernels, params reach the parts."""

import numpy as np
import pytest
from sklearn.base import clone

import metafast as mf
from metafast.basis._base import BasisFamily
from metafast.testing import check_basis_family


class Ramp(BasisFamily):
    """A numpy-only plugin-style family: g_j(x) = max(0, x - j)."""

    def __init__(self, n_basis=3):
        self.n_basis = n_basis

    def design(self, X):
        return np.maximum(0.0, X[:, :1] - np.arange(self.n_basis)[None, :])


def _parts():
    return [
        mf.basis.make("polynomial", n_basis=4),
        mf.basis.make("fourier", n_basis=7),
        mf.basis.make("rbf", n_basis=5, random_state=0),
    ]


@pytest.fixture
def X():
    return np.random.default_rng(0).uniform(-2, 2, size=(37, 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_design_and_sums_match_the_stacked_parts(X, dtype):
    U = mf.basis.union(_parts()).fit(X)
    ref_parts = [p.fit(X) for p in _parts()]
    Xd = X.astype(dtype)
    Phi_ref = np.hstack([p.design(Xd) for p in ref_parts])
    Phi = U.design(Xd)
    assert U.n_basis == 16 and Phi.dtype == dtype
    np.testing.assert_array_equal(Phi, Phi_ref)
    rng = np.random.default_rng(1)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    w = rng.standard_normal(16)
    np.testing.assert_allclose(U.weighted_sum(Xd, w), Phi_ref.astype(np.float64) @ w, **tol)
    Wk = rng.standard_normal((16, 3))
    np.testing.assert_allclose(U.weighted_sum(Xd[::2], Wk), Phi_ref[::2].astype(np.float64) @ Wk, **tol)
    off = np.array([0, 5, 5, 20, 37])
    W = rng.standard_normal((4, 16))
    ref = np.concatenate([Phi_ref[off[t] : off[t + 1]].astype(np.float64) @ W[t] for t in range(4)])
    np.testing.assert_allclose(U.weighted_sum_tasks(Xd, off, W), ref, **tol)


def test_sums_use_the_parts_kernels_not_the_generic_blocks(X, monkeypatch):
    U = mf.basis.union(_parts()).fit(X)

    def forbidden(*args, **kwargs):
        raise AssertionError("generic numpy design blocks used")

    monkeypatch.setattr(BasisFamily, "_design_blocks", forbidden)
    U.weighted_sum(X, np.ones(U.n_basis))
    U.weighted_sum_tasks(X, np.array([0, 10, 37]), np.ones((2, U.n_basis)))


def test_names_and_part_of(X):
    U = mf.basis.union(_parts() + [mf.basis.make("rbf", n_basis=2)]).fit(X)
    names = U.get_feature_names_out()
    assert len(names) == U.n_basis == 18
    assert names[0] == "polynomial__polynomial0" and names[-1] == "rbf_1__rbf1"
    assert list(U.feature_names_out) == list(names)
    assert U.part_of(4) == (1, "fourier", 0)
    assert U.part_of(15) == (2, "rbf", 4)
    assert U.part_of(-1) == (3, "rbf_1", 1)
    with pytest.raises(IndexError, match="column"):
        U.part_of(18)


def test_params_clone_and_set_params(X):
    U = mf.basis.make("union", parts=_parts())
    params = U.get_params(deep=True)
    assert params["part1__n_basis"] == 7 and params["part2__random_state"] == 0
    U.set_params(part1__n_basis=9)
    assert U.parts[1].n_basis == 9 and U.n_basis == 18
    C = clone(U)
    assert C.parts[1] is not U.parts[1] and C.parts[1].n_basis == 9
    assert C.fit(X).design(X).shape == (37, 18)
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        U.set_params(bogus=1)


def test_learnable_params_vjp_and_with_params_route_to_parts(X):
    U = mf.basis.union(_parts()).fit(X)
    params = U.learnable_params()
    assert {"rbf__centers", "fourier__log_base", "polynomial__shift"} <= set(params)
    G = np.random.default_rng(2).standard_normal((X.shape[0], U.n_basis))
    grads = U.design_vjp(X, G)
    assert set(grads) == set(params)
    rbf = U.parts_[2]
    np.testing.assert_allclose(grads["rbf__centers"], rbf.design_vjp(X, G[:, 11:])["centers"])
    # finite difference on one centre through the union
    c = params["rbf__centers"].copy()
    eps = 1e-6
    c[2, 0] += eps
    up = (U.with_params(rbf__centers=c).design(X) * G).sum()
    c[2, 0] -= 2 * eps
    down = (U.with_params(rbf__centers=c).design(X) * G).sum()
    assert abs((up - down) / (2 * eps) - grads["rbf__centers"][2, 0]) < 1e-5
    with pytest.raises(ValueError, match="no learnable parameter"):
        U.with_params(rbf__nope=1.0)


def test_plugin_family_part_and_conformance(X):
    U = mf.basis.union([Ramp(3), mf.basis.make("polynomial", n_basis=2)])
    check_basis_family(U, skip=("check_family_params", "check_family_learnable_params"))
    U.fit(X)
    np.testing.assert_allclose(U.weighted_sum(X, np.ones(5)), U.design(X).sum(axis=1))
    check_basis_family(mf.basis.union(_parts()), skip=("check_family_params",))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("learner", [mf.MetaBayes(max_iter=30), mf.MetaRidge()])
def test_every_learner_fits_on_a_union(learner):
    tasks = mf.tasks.load("sinusoid", n_tasks=60, n_support=8, n_query=8, seed=0)
    U = mf.basis.union([mf.basis.make("polynomial", n_basis=3), mf.basis.make("fourier", n_basis=9), Ramp(2)])
    model = clone(learner).set_params(basis=U).fit(tasks)
    result = model.evaluate(mf.tasks.load("sinusoid", n_tasks=20, n_support=8, n_query=8, seed=1))
    assert np.isfinite(result["mse"])
    t = tasks[0]
    assert model.adapt(t.X_support, t.y_support).predict(t.X_query).shape == (8,)


def test_bad_input(X):
    with pytest.raises(ValueError, match="'parts' is empty"):
        mf.basis.union([])
    with pytest.raises(ValueError, match=r"item 1 \(RBF\) has n_basis=0"):
        mf.basis.union([mf.basis.make("polynomial"), mf.basis.make("rbf", n_basis=0)])
    with pytest.raises(TypeError, match="item 0 is a str"):
        mf.basis.union(["rbf"])
    with pytest.raises(TypeError, match="list of BasisFamily"):
        mf.basis.union(mf.basis.make("rbf"))
    X2 = np.random.default_rng(0).uniform(size=(20, 2))
    a = mf.basis.make("polynomial", n_basis=3).fit(X)
    b = mf.basis.make("polynomial", n_basis=3).fit(X2)
    with pytest.raises(ValueError, match=r"item 1 \(Polynomial\) was fitted on 2 feature\(s\) but item 0 on 1"):
        mf.basis.union([a, b])
    U = mf.basis.union([a, mf.basis.make("rbf", n_basis=3).fit(X)])
    assert U.__sklearn_is_fitted__() and U.design(X).shape == (37, 6)
    with pytest.raises(ValueError, match="'w'"):
        U.weighted_sum(X, np.ones(5))
    with pytest.raises(ValueError, match="'W'"):
        U.weighted_sum_tasks(X, np.array([0, 37]), np.ones((2, 6)))
