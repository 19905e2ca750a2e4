"""Polynomial family: recurrences against numpy.polynomial, total degree, gradients, bad input."""

import numpy as np
import pytest
from family_inputs import (
    DTYPES,
    LAYOUTS,
    central_difference,
    make_input,
    per_task_reference,
    tol,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import chebyshev, legendre
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast.basis.polynomial import Polynomial, graded_multi_indices

VAL = {"legendre": legendre.legval, "chebyshev": chebyshev.chebval}


def polynomial_reference(B, X):
    """prod_j P_{alpha_j}(u_j) with numpy.polynomial, u mapped with the fitted domain."""
    X = np.asarray(X, dtype=np.float64)
    U = (X - B.shift_) * np.exp(-B.log_scale_)
    D = int(B.multi_indices_.max()) + 1
    eye = np.eye(D)
    cols = []
    for alpha in B.multi_indices_:
        col = np.ones(X.shape[0])
        for j, a in enumerate(alpha):
            col = col * VAL[B.kind](U[:, j], eye[a])
        cols.append(col)
    return np.column_stack(cols)


@pytest.mark.parametrize("kind", ["legendre", "chebyshev"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 7, 203])
def test_design_1d_matches_vander(rng, kind, dtype, layout, n):
    Xfit = rng.uniform(-3, 5, size=(40, 1))
    B = Polynomial(n_basis=13, kind=kind).fit(Xfit)
    X = make_input(rng, n, 1, dtype, layout)
    Phi = B.design(X)
    assert Phi.dtype == dtype and Phi.shape == (n, 13)
    u = (X[:, 0].astype(np.float64) - B.shift_[0]) * np.exp(-B.log_scale_[0])
    vander = legendre.legvander if kind == "legendre" else chebyshev.chebvander
    np.testing.assert_allclose(Phi, vander(u, 12), **tol(dtype))


def test_fitted_domain_maps_to_unit_interval(rng):
    X = rng.uniform(2, 9, size=(30, 2))
    B = Polynomial(n_basis=3).fit(X)
    U = (X - B.shift_) * np.exp(-B.log_scale_)
    np.testing.assert_allclose(U.min(axis=0), -1)
    np.testing.assert_allclose(U.max(axis=0), 1)


@pytest.mark.parametrize("kind", ["legendre", "chebyshev"])
@pytest.mark.parametrize("d", range(1, 9))
def test_design_total_degree_matches_products(rng, kind, d):
    X = make_input(rng, 23, d, np.float64, "C")
    m = {1: 9, 2: 15, 3: 20}.get(d, 2 * d + 5)
    B = Polynomial(n_basis=m, kind=kind).fit(X)
    np.testing.assert_allclose(B.design(X), polynomial_reference(B, X), rtol=1e-11, atol=1e-11)


def test_graded_order_and_exact_truncation():
    alpha = graded_multi_indices(2, 7)
    assert alpha.tolist() == [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2], [3, 0]]
    alpha = graded_multi_indices(8, 50)
    assert alpha.shape == (50, 8) and np.all(np.diff(alpha.sum(axis=1)) >= 0)
    assert len({tuple(a) for a in alpha}) == 50


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 9, 1001])
@pytest.mark.parametrize("k", [None, 2])
def test_weighted_sum_matches_design_at_w(rng, dtype, layout, n, k):
    B = Polynomial(n_basis=10, kind="chebyshev").fit(make_input(rng, 20, 3, np.float64, "C"))
    X = make_input(rng, n, 3, dtype, layout)
    w = rng.normal(size=(10,) if k is None else (10, k))
    out = B.weighted_sum(X, w)
    assert out.dtype == dtype and out.shape == ((n,) if k is None else (n, k))
    np.testing.assert_allclose(out, polynomial_reference(B, X) @ w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_sum_tasks_matches_per_task_reference(rng, dtype):
    sizes = [4, 0, 13, 1, 9]
    offsets = np.r_[0, np.cumsum(sizes)]
    X = make_input(rng, offsets[-1], 2, dtype, "C")
    B = Polynomial(n_basis=8).fit(X)
    W = rng.normal(size=(len(sizes), 8))
    out = B.weighted_sum_tasks(X, offsets, W)
    np.testing.assert_allclose(out, per_task_reference(B, X, offsets, W), **tol(dtype))


@pytest.mark.parametrize("kind", ["legendre", "chebyshev"])
@pytest.mark.parametrize("d", [1, 2, 4])
def test_design_vjp_matches_central_differences(rng, kind, d):
    X = rng.uniform(-2, 3, size=(31, d))
    B = Polynomial(n_basis=12, kind=kind).fit(X)
    G = rng.normal(size=(31, 12))
    grads = B.design_vjp(X, G)
    assert set(grads) == {"log_scale", "shift"}
    for key, value in grads.items():
        fd = central_difference(B, X, G, key)
        np.testing.assert_allclose(value, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_design_vjp_float32_and_empty(rng):
    X = rng.uniform(-2, 3, size=(31, 2))
    B = Polynomial(n_basis=6).fit(X)
    G = rng.normal(size=(31, 6))
    g64, g32 = B.design_vjp(X, G), B.design_vjp(X.astype(np.float32), G)
    for key in g64:
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-4, atol=1e-4)
    empty = B.design_vjp(np.zeros((0, 2)), np.zeros((0, 6)))
    assert all(np.all(v == 0) for v in empty.values())


def test_thread_count_invariance(rng):
    X = rng.uniform(-1, 1, size=(2501, 3))
    B1 = Polynomial(n_basis=20, n_jobs=1).fit(X)
    B2 = clone(B1).set_params(n_jobs=2).fit(X)
    w, G = rng.normal(size=20), rng.normal(size=(2501, 20))
    assert np.array_equal(B1.design(X), B2.design(X))
    assert np.array_equal(B1.weighted_sum(X, w), B2.weighted_sum(X, w))
    g1, g2 = B1.design_vjp(X, G), B2.design_vjp(X, G)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(theta=st.floats(0, np.pi), k=st.integers(0, 40))
def test_hypothesis_chebyshev_is_cosine_of_multiple_angle(theta, k):
    """T_k(cos theta) = cos(k theta) on the fitted domain [-1, 1]."""
    B = Polynomial(n_basis=k + 1, kind="chebyshev").fit(np.array([[-1.0], [1.0]]))
    Phi = B.design(np.array([[np.cos(theta)]]))
    np.testing.assert_allclose(Phi[0, k], np.cos(k * theta), atol=1e-12 * (k + 1) ** 2)


def test_with_params_changes_the_mapping(rng):
    X = rng.uniform(0, 4, size=(20, 1))
    B = Polynomial(n_basis=5).fit(X)
    C = B.with_params(log_scale=np.log([4.0]), shift=np.array([0.0]))
    u = X[:, 0] / 4.0
    np.testing.assert_allclose(C.design(X), legendre.legvander(u, 4), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="shift"):
        B.with_params(shift=np.zeros(2))
    with pytest.raises(ValueError, match="shift.*NaN"):
        B.with_params(shift=np.array([np.nan]))


def test_make_defaults_and_bad_input(rng):
    B = mf.basis.make("polynomial")
    X = rng.uniform(size=(8, 2))
    with pytest.raises(NotFittedError):
        B.design(X)
    assert B.fit(X).design(X).shape == (8, 10)
    with pytest.raises(ValueError, match="kind"):
        Polynomial(kind="hermite").fit(X)
    with pytest.raises(ValueError, match="n_basis"):
        Polynomial(n_basis=0).fit(X)
    with pytest.raises(ValueError, match="'X'.*NaN"):
        B.design(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="'w'"):
        B.weighted_sum(X, np.ones((9, 2)))
    with pytest.raises(ValueError, match="'G'"):
        B.design_vjp(X, np.ones((8, 3)))
    with pytest.raises(TypeError, match="'G'"):
        B.design_vjp(X, np.full((8, 10), "a"))
    with pytest.raises(ValueError, match="0 feature"):
        Polynomial().fit(np.zeros((3, 0)))


def test_constant_feature_is_finite(rng):
    X = np.c_[np.full(10, 2.0), rng.uniform(size=10)]
    B = Polynomial(n_basis=6).fit(X)
    assert np.isfinite(B.design(X)).all()


def test_huge_inputs_give_a_clear_error_not_nan(rng):
    B = Polynomial(n_basis=12).fit(rng.uniform(size=(10, 1)))
    X = np.array([[1e200]])
    with pytest.raises(ValueError, match="'X'.*outside the fitted domain"):
        B.design(X)
    with pytest.raises(ValueError, match="'X'.*outside the fitted domain"):
        B.weighted_sum(X, np.ones(12))
    with pytest.raises(ValueError, match="'X'.*outside the fitted domain"):
        B.weighted_sum_tasks(X, [0, 1], np.ones((1, 12)))
