"""basis.subset.restrict: a column subset equals the gathered columns, restricted natively."""

import numpy as np
import pytest
from sklearn.base import clone

import metafast as mf
from metafast.basis.subset import ColumnSubset, restrict
from metafast.testing import check_basis_family

RNG = np.random.default_rng(0)
X1 = RNG.uniform(-2, 2, size=(41, 1))
X2 = RNG.uniform(-2, 2, size=(41, 2))


def _cases():
    fourier = mf.basis.make("fourier", frequencies=np.linspace(0.5, 5, 10), n_basis=20)
    return [
        # (family, X, columns, natively restricted?)
        (mf.basis.make("rbf", n_basis=12, per_center=True), X1, [11, 0, 5], True),
        (mf.basis.make("rbf", n_basis=9, ard=True), X2, [2, 3, 8], True),
        (fourier, X1, [0, 3, 4, 5, 12, 19], True),  # constant, runs, lone cosine
        (fourier, X1, [8], True),  # a sine alone
        (mf.basis.make("fourier", n_basis=13), X2, [1, 2, 11, 12], True),  # additive 2-D
        (mf.basis.make("fourier", n_basis=13, multivariate="lattice"), X2, [1, 4], False),
        (mf.basis.make("polynomial", n_basis=10), X2, [0, 4, 2], True),
        (mf.basis.make("relu", n_basis=10, random_state=0), X2, [9, 1], True),
        (mf.basis.make("bspline", n_basis=8), X1, [2, 7], False),
        (
            mf.basis.union([mf.basis.make("polynomial", n_basis=5), fourier, mf.basis.make("rbf", n_basis=6)]),
            X1,
            [30, 1, 25, 24, 7],
            True,
        ),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(_cases())))
def test_subset_equals_the_gathered_columns(case, dtype):
    family, X, cols, native = _cases()[case]
    B = family.fit(X)
    S = restrict(B, cols)
    assert S.natively_restricted_ == native and S.n_basis == len(cols)
    Xd = X.astype(dtype)
    Phi = B.design(Xd)[:, cols].astype(np.float64)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(S.design(Xd), Phi, **tol)
    assert S.design(Xd).dtype == dtype
    rng = np.random.default_rng(3)
    w = rng.standard_normal(len(cols))
    np.testing.assert_allclose(S.weighted_sum(Xd, w), Phi @ w, **tol)
    Wk = rng.standard_normal((len(cols), 2))
    np.testing.assert_allclose(S.weighted_sum(Xd[1::3], Wk), Phi[1::3] @ Wk, **tol)
    off = np.array([0, 7, 7, X.shape[0]])
    W = rng.standard_normal((3, len(cols)))
    ref = np.concatenate([Phi[off[t] : off[t + 1]] @ W[t] for t in range(3)])
    np.testing.assert_allclose(S.weighted_sum_tasks(Xd, off, W), ref, **tol)
    names = np.asarray(B.get_feature_names_out())[cols]
    assert list(S.get_feature_names_out()) == list(names)


def test_rbf_subset_gradient_is_the_full_gradient_of_the_kept_centres():
    B = mf.basis.make("rbf", n_basis=10).fit(X1)
    cols = [7, 2, 4]
    S = restrict(B, cols)
    G = np.random.default_rng(1).standard_normal((X1.shape[0], 3))
    Gfull = np.zeros((X1.shape[0], 10))
    Gfull[:, cols] = G
    full = B.design_vjp(X1, Gfull)
    sub = S.design_vjp(X1, G)
    np.testing.assert_allclose(sub["centers"], full["centers"][cols], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sub["log_length_scale"], full["log_length_scale"], rtol=1e-10)
    moved = S.with_params(centers=sub["centers"] * 0 + 0.5)
    np.testing.assert_allclose(moved.design(X1)[:, 0], np.exp(-0.5 * ((X1[:, 0] - 0.5) / B.length_scale_[0]) ** 2))


def test_fourier_gradient_through_a_partial_pair():
    B = mf.basis.make("fourier", frequencies=np.linspace(0.5, 5, 10), n_basis=21).fit(X1)
    S = restrict(B, [4, 9, 10, 11])  # sin of f1 alone, then a run f4 (sin), f5 (cos, sin)
    G = np.random.default_rng(2).standard_normal((X1.shape[0], 4))
    grads = S.design_vjp(X1, G)
    eps = 1e-6
    params = S.learnable_params()
    for key in params:
        for i in range(params[key].size):
            p = params[key].copy()
            p.flat[i] += eps
            up = (S.with_params(**{key: p}).design(X1) * G).sum()
            p.flat[i] -= 2 * eps
            down = (S.with_params(**{key: p}).design(X1) * G).sum()
            assert abs((up - down) / (2 * eps) - grads[key].flat[i]) < 1e-5 * max(1, abs(up))


def test_unfitted_subset_fits_its_basis_and_clones():
    S = ColumnSubset(mf.basis.make("rbf", n_basis=8), columns=np.array([1, 6]))
    check_basis_family(S, n_features=(1,), skip=("check_family_params",))
    S.fit(X1)
    ref = mf.basis.make("rbf", n_basis=8).fit(X1).design(X1)[:, [1, 6]]
    np.testing.assert_allclose(clone(S).fit(X1).design(X1), ref)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("learner", [mf.MetaBayes(max_iter=20), mf.MetaRidge()])
def test_learners_fit_on_a_subset(learner):
    tasks = mf.tasks.load("sinusoid", n_tasks=40, n_support=8, n_query=8, seed=0)
    B = mf.basis.make("fourier", n_basis=21).fit(np.linspace(-5, 5, 50)[:, None])
    S = restrict(B, [0, 1, 2, 5])
    model = clone(learner).set_params(basis=S).fit(tasks)
    assert np.isfinite(model.evaluate(tasks)["mse"])


def test_bad_columns():
    B = mf.basis.make("rbf", n_basis=5).fit(X1)
    with pytest.raises(ValueError, match="'columns' holds indices outside"):
        restrict(B, [0, 5])
    with pytest.raises(ValueError, match="'columns' repeats"):
        restrict(B, [1, 1])
    with pytest.raises(ValueError, match="'columns' must be a non-empty"):
        restrict(B, [])
    with pytest.raises(ValueError, match="'columns' must be a non-empty"):
        restrict(B, [0.5])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        restrict(mf.basis.make("rbf"), [0])
