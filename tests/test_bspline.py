"""B-spline family: Cox-de Boor kernels against scipy.interpolate.BSpline, sparsity, bad input."""

import numpy as np
import pytest
from family_inputs import DTYPES, LAYOUTS, make_input, per_task_reference, tol
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import BSpline as ScipyBSpline
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast.basis.bspline import BSpline


def bspline_reference(B, X):
    """Additive design from scipy's BSpline.design_matrix, dimension by dimension."""
    X = np.asarray(X, dtype=np.float64)
    blocks = []
    for j in range(X.shape[1]):
        t = B.knots(j)
        n_j = len(t) - B.degree_ - 1
        if X.shape[0] == 0:
            blocks.append(np.zeros((0, n_j)))
            continue
        blocks.append(ScipyBSpline.design_matrix(X[:, j], t, B.degree_, extrapolate=True).toarray())
    return np.hstack(blocks)


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 7, 203])
def test_design_matches_scipy(rng, degree, dtype, layout, n):
    B = BSpline(n_basis=11, degree=degree).fit(rng.uniform(-3, 5, size=(40, 1)))
    X = make_input(rng, n, 1, dtype, layout, low=-4, high=6)  # includes extrapolation
    Phi = B.design(X)
    assert Phi.dtype == dtype and Phi.shape == (n, 11)
    np.testing.assert_allclose(Phi, bspline_reference(B, X), **tol(dtype))


@pytest.mark.parametrize("d", range(1, 9))
def test_additive_multidimensional(rng, d):
    X = make_input(rng, 25, d, np.float64, "C")
    m = 4 * d + 3
    B = BSpline(n_basis=m).fit(X)
    Phi = B.design(X)
    assert Phi.shape == (25, m)
    np.testing.assert_allclose(Phi, bspline_reference(B, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Phi.sum(axis=1), d)  # each dimension sums to one
    assert np.all((Phi != 0).sum(axis=1) <= d * 4)  # only p + 1 non-zeros per dimension


def test_domain_end_points(rng):
    X = rng.uniform(0, 1, size=(30, 1))
    B = BSpline(n_basis=6).fit(X)
    Phi = B.design(np.array([[X.min()], [X.max()]]))
    np.testing.assert_allclose(Phi[0], np.eye(6)[0], atol=1e-12)  # clamped knots
    np.testing.assert_allclose(Phi[1], np.eye(6)[-1], atol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(x=st.floats(-1e3, 1e3), degree=st.integers(0, 6), extra=st.integers(1, 20))
def test_hypothesis_partition_of_unity(x, degree, extra):
    B = BSpline(n_basis=degree + extra, degree=degree).fit(np.array([[-2.0], [3.0]]))
    Phi = B.design(np.array([[x]]))
    assert np.isfinite(Phi).all()
    # extrapolated pieces grow like |x|^p: rounding is relative to the largest value
    np.testing.assert_allclose(Phi.sum(), 1.0, rtol=0, atol=1e-13 * (1 + np.abs(Phi).max()))
    if -2.0 <= x <= 3.0:
        assert np.all(Phi >= -1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 9, 1001])
@pytest.mark.parametrize("k", [None, 3])
def test_weighted_sum_matches_design_at_w(rng, dtype, layout, n, k):
    B = BSpline(n_basis=17, degree=2).fit(make_input(rng, 30, 2, np.float64, "C"))
    X = make_input(rng, n, 2, dtype, layout)
    w = rng.normal(size=(17,) if k is None else (17, k))
    out = B.weighted_sum(X, w)
    assert out.dtype == dtype and out.shape == ((n,) if k is None else (n, k))
    np.testing.assert_allclose(out, bspline_reference(B, X) @ w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_sum_tasks_matches_per_task_reference(rng, dtype):
    sizes = [5, 0, 12, 1, 7]
    offsets = np.r_[0, np.cumsum(sizes)]
    X = make_input(rng, offsets[-1], 1, dtype, "C")
    B = BSpline(n_basis=9).fit(X)
    W = rng.normal(size=(len(sizes), 9))
    out = B.weighted_sum_tasks(X, offsets, W)
    np.testing.assert_allclose(out, per_task_reference(B, X, offsets, W), **tol(dtype))


def test_thread_count_invariance(rng):
    X = rng.uniform(-1, 1, size=(2001, 2))
    B1 = BSpline(n_basis=20, n_jobs=1).fit(X)
    B2 = clone(B1).set_params(n_jobs=2).fit(X)
    w = rng.normal(size=20)
    assert np.array_equal(B1.design(X), B2.design(X))
    assert np.array_equal(B1.weighted_sum(X, w), B2.weighted_sum(X, w))


def test_defaults_and_bad_input(rng):
    B = mf.basis.make("bspline")
    X = rng.uniform(size=(9, 1))
    with pytest.raises(NotFittedError):
        B.design(X)
    assert B.fit(X).design(X).shape == (9, 12)
    assert B.learnable_params() == {} and B.design_vjp(X, np.ones((9, 12))) == {}
    with pytest.raises(ValueError, match="n_basis"):
        BSpline(n_basis=7).fit(rng.uniform(size=(5, 2)))
    with pytest.raises(ValueError, match="degree"):
        BSpline(n_basis=40, degree=16).fit(X)
    with pytest.raises(ValueError, match="degree"):
        BSpline(degree=-1).fit(X)
    with pytest.raises(ValueError, match="'X'.*inf"):
        B.design(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="'w'"):
        B.weighted_sum(X, np.ones(11))


def test_constant_and_huge_inputs_are_finite():
    B = BSpline(n_basis=8).fit(np.full((4, 1), 2.0))
    assert np.isfinite(B.design(np.array([[2.0], [1e6], [-1e6]]))).all()


def test_huge_inputs_give_a_clear_error_not_nan():
    B = BSpline(n_basis=8).fit(np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="'X'.*outside the fitted domain"):
        B.design(np.array([[1e300]]))
