"""Fourier family: recurrence kernels against np.sin/np.cos, fused sums, gradients, bad input."""

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
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast.basis.fourier import Fourier, _split_runs

BANDS = np.r_[np.linspace(4.6, 7.4, 15), np.linspace(9.2, 14.8, 15)]  # two harmonic bands


def fourier_reference(X, freqs, dims, constant, m):
    """Columns [1], cos(f x_j), sin(f x_j), ... with np.cos/np.sin, cut to m columns."""
    X = np.asarray(X, dtype=np.float64)
    cols = [np.ones(X.shape[0])] if constant else []
    for f, j in zip(freqs, dims):
        cols += [np.cos(f * X[:, j]), np.sin(f * X[:, j])]
    return np.column_stack(cols)[:, :m] if cols else np.zeros((X.shape[0], 0))


def reference_of(B, X):
    return fourier_reference(X, B.frequencies_, B.frequency_dims_, B.include_constant, B.n_basis)


# ---------------------------------------------------------------------- design matrix
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 7, 203])
def test_design_matches_numpy(rng, dtype, layout, n):
    B = Fourier(n_basis=21).fit(make_input(rng, 50, 1, np.float64, "C"))
    X = make_input(rng, n, 1, dtype, layout)
    Phi = B.design(X)
    assert Phi.dtype == dtype and Phi.shape == (n, 21)
    np.testing.assert_allclose(Phi, reference_of(B, X), **tol(dtype))


@pytest.mark.parametrize("d", range(1, 9))
@pytest.mark.parametrize("m", [1, 16, 33])
def test_design_multidimensional_additive(rng, d, m):
    X = make_input(rng, 37, d, np.float64, "C")
    B = Fourier(n_basis=m).fit(X)
    Phi = B.design(X)
    assert Phi.shape == (37, m)
    np.testing.assert_allclose(Phi, reference_of(B, X), rtol=1e-11, atol=1e-11)
    # every dimension gets its share of columns and its own fundamental frequency
    counts = np.bincount(B.run_dim_, weights=B.run_ncols_, minlength=d)
    assert counts.max() - counts.min() <= 2 and counts.sum() == m - 1


def test_default_frequencies_are_harmonics_of_twice_the_domain(rng):
    X = rng.uniform(-5, 5, size=(100, 1))
    B = Fourier(n_basis=9).fit(X)
    span = X.max() - X.min()
    np.testing.assert_allclose(B.frequencies_, 2 * np.pi * np.arange(1, 5) / (2 * span))
    B2 = Fourier(n_basis=9, period=3.0).fit(X)
    np.testing.assert_allclose(B2.frequencies_, 2 * np.pi * np.arange(1, 5) / 3.0)


@pytest.mark.parametrize("constant", [True, False])
@pytest.mark.parametrize("drop_last_sine", [False, True])
def test_explicit_frequency_bands_and_odd_n_basis(rng, constant, drop_last_sine):
    m = 2 * BANDS.size + int(constant) - int(drop_last_sine)
    B = Fourier(n_basis=m, frequencies=BANDS, include_constant=constant)
    X = rng.uniform(-2, 2, size=(41, 1))
    B.fit(X)
    np.testing.assert_allclose(B.frequencies_, BANDS, rtol=1e-15)
    assert len(B.run_len_) == 2  # two arithmetic runs: 4 sin/cos calls per row, not 60
    Phi = B.design(X)
    assert Phi.shape == (41, m)
    np.testing.assert_allclose(Phi, fourier_reference(X, BANDS, [0] * BANDS.size, constant, m), rtol=1e-12, atol=1e-12)


def test_irregular_frequencies_fall_back_to_short_runs(rng):
    f = np.array([1.0, 2.0, 3.5, 3.6, 10.0, 0.5])
    X = rng.uniform(-3, 3, size=(17, 2))
    B = Fourier(n_basis=1 + 2 * 2 * f.size, frequencies=f).fit(X)
    np.testing.assert_allclose(B.design(X), reference_of(B, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(B.frequencies_[: f.size], f, rtol=1e-15)


def test_split_runs():
    assert _split_runs(np.linspace(1, 2, 7)) == [(0, 7)]
    assert _split_runs(np.array([1.0, 2.0, 3.0, 5.0, 7.0, 6.0])) == [(0, 3), (3, 2), (5, 1)]


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_recurrence_accuracy_long_runs_and_large_x(rng, scale):
    """m = 512 (256 frequencies in one run): drift stays at rounding level thanks to re-seeding."""
    X = rng.uniform(-scale, scale, size=(300, 1))
    B = Fourier(n_basis=512, include_constant=False, period=2.0).fit(X)
    Phi = B.design(X)
    arg = np.abs(X * B.frequencies_).max()
    # np.cos itself is only exact for the rounded argument: error ~ eps * |f x| per entry
    np.testing.assert_allclose(Phi, reference_of(B, X), rtol=0, atol=64 * 2.3e-16 * (1 + arg))
    assert np.isfinite(Phi).all()


def test_unit_circle_property(rng):
    X = rng.uniform(-50, 50, size=(64, 1))
    Phi = Fourier(n_basis=129).fit(X).design(X)
    np.testing.assert_allclose(Phi[:, 1::2] ** 2 + Phi[:, 2::2] ** 2, 1.0, atol=1e-12)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(x=st.floats(-1e4, 1e4), f0=st.floats(0.01, 20), df=st.floats(0.01, 20), L=st.integers(1, 80))
def test_hypothesis_recurrence_matches_direct(x, f0, df, L):
    freqs = f0 + np.arange(L) * df
    B = Fourier(n_basis=2 * L, frequencies=freqs, include_constant=False)
    B.fit(np.array([[0.0], [1.0]]))
    Phi = B.design(np.array([[x]]))
    ref = fourier_reference([[x]], B.frequencies_, [0] * L, False, 2 * L)
    arg = abs(x) * freqs.max()
    np.testing.assert_allclose(Phi, ref, rtol=0, atol=64 * 2.3e-16 * (1 + arg))


# ---------------------------------------------------------------------- fused sums
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 9, 1001])
@pytest.mark.parametrize("k", [None, 1, 3])
def test_weighted_sum_matches_design_at_w(rng, dtype, layout, n, k):
    B = Fourier(n_basis=31).fit(make_input(rng, 20, 2, np.float64, "C"))
    X = make_input(rng, n, 2, dtype, layout)
    w = rng.normal(size=(31,) if k is None else (31, k))
    out = B.weighted_sum(X, w)
    assert out.dtype == dtype and out.shape == ((n,) if k is None else (n, k))
    np.testing.assert_allclose(out, reference_of(B, X) @ w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_sum_tasks_matches_per_task_reference(rng, dtype):
    sizes = [3, 0, 11, 1, 0, 17]
    offsets = np.r_[0, np.cumsum(sizes)]
    X = make_input(rng, offsets[-1], 1, dtype, "C")
    B = Fourier(n_basis=12, frequencies=BANDS[:6], include_constant=False).fit(X)
    W = rng.normal(size=(len(sizes), 12))
    out = B.weighted_sum_tasks(X, offsets, W)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, per_task_reference(B, X, offsets, W), **tol(dtype))


def test_thread_count_invariance(rng):
    X = rng.uniform(-4, 4, size=(3001, 2))
    B1 = Fourier(n_basis=40, n_jobs=1).fit(X)
    B2 = clone(B1).set_params(n_jobs=2).fit(X)
    w = rng.normal(size=40)
    G = rng.normal(size=(3001, 40))
    assert np.array_equal(B1.design(X), B2.design(X))
    assert np.array_equal(B1.weighted_sum(X, w), B2.weighted_sum(X, w))
    g1, g2 = B1.design_vjp(X, G), B2.design_vjp(X, G)
    for key in g1:
        assert np.array_equal(g1[key], g2[key])


# ---------------------------------------------------------------------- learnable frequencies
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_basis, frequencies", [(17, None), (2 * BANDS.size + 1, BANDS), (2 * BANDS.size, BANDS)])
def test_design_vjp_matches_central_differences(rng, dtype, n_basis, frequencies):
    X = rng.uniform(-2, 2, size=(53, 1))
    B = Fourier(n_basis=n_basis, frequencies=frequencies).fit(X)
    G = rng.normal(size=(53, n_basis))
    grads = B.design_vjp(X.astype(dtype), G)
    assert set(grads) == set(B.learnable_params())
    for key, value in grads.items():
        fd = central_difference(B, X, G, key)
        rtol = 1e-4 if dtype == np.float32 else 1e-6
        np.testing.assert_allclose(value, fd, rtol=rtol, atol=rtol * np.abs(fd).max())


def test_design_vjp_multidimensional_and_empty(rng):
    X = rng.uniform(-1, 1, size=(29, 3))
    B = Fourier(n_basis=20).fit(X)
    G = rng.normal(size=(29, 20))
    grads = B.design_vjp(X, G)
    for key, value in grads.items():
        np.testing.assert_allclose(value, central_difference(B, X, G, key), rtol=1e-6, atol=1e-8)
    empty = B.design_vjp(np.zeros((0, 3)), np.zeros((0, 20)))
    assert all(np.array_equal(v, np.zeros_like(v)) for v in empty.values())


def test_with_params_keeps_frequencies_positive_and_recurrence_valid(rng):
    X = rng.uniform(-3, 3, size=(40, 1))
    B = Fourier(n_basis=9).fit(X)
    params = B.learnable_params()
    C = B.with_params(log_base=params["log_base"] + 0.3, log_spacing=params["log_spacing"] - 5)
    assert np.all(C.frequencies_ > 0)
    np.testing.assert_allclose(C.design(X), reference_of(C, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(B.design(X), reference_of(B, X), rtol=1e-12, atol=1e-12)  # unchanged


# ---------------------------------------------------------------------- registry, sklearn
def test_make_with_defaults_and_sklearn_params(rng):
    B = mf.basis.make("fourier")
    assert B.n_basis == 64
    X = rng.uniform(size=(10, 1))
    assert B.fit(X).transform(X).shape == (10, 64)
    C = clone(B).set_params(n_basis=5)
    assert C.get_params()["n_basis"] == 5 and not C.__sklearn_is_fitted__()


# ---------------------------------------------------------------------- bad input
def test_bad_inputs_raise_naming_the_argument(rng):
    X = rng.uniform(size=(10, 1))
    with pytest.raises(NotFittedError):
        Fourier().design(X)
    B = Fourier(n_basis=8).fit(X)
    bad = X.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="'X'.*NaN"):
        B.design(bad)
    with pytest.raises(ValueError, match="'X'.*inf"):
        B.weighted_sum(np.full((2, 1), np.inf), np.ones(8))
    with pytest.raises(ValueError, match="'X'.*features"):
        B.design(np.ones((3, 2)))
    with pytest.raises(TypeError, match="'X'"):
        B.design(np.array([["a"]]))
    with pytest.raises(ValueError, match="'w'"):
        B.weighted_sum(X, np.ones(7))
    with pytest.raises(TypeError, match="'w'"):
        B.weighted_sum(X, np.array(["a"] * 8))
    with pytest.raises(ValueError, match="'w'.*NaN"):
        B.weighted_sum(X, np.full(8, np.nan))
    with pytest.raises(TypeError, match="'W'"):
        B.weighted_sum_tasks(X, [0, 4, 10], np.full((2, 8), "a"))
    with pytest.raises(ValueError, match="'W'.*inf"):
        B.weighted_sum_tasks(X, [0, 4, 10], np.full((2, 8), np.inf))
    with pytest.raises(ValueError, match="'offsets'"):
        B.weighted_sum_tasks(X, np.array([0.0, 4.0, 10.0]), np.ones((2, 8)))
    with pytest.raises(ValueError, match="'W'"):
        B.weighted_sum_tasks(X, [0, 4, 10], np.ones((3, 8)))
    with pytest.raises(ValueError, match="'offsets'"):
        B.weighted_sum_tasks(X, [0, 4, 9], np.ones((2, 8)))
    with pytest.raises(ValueError, match="'G'"):
        B.design_vjp(X, np.ones((10, 7)))
    with pytest.raises(ValueError, match="'G'.*NaN"):
        B.design_vjp(X, np.full((10, 8), np.nan))
    with pytest.raises(ValueError, match="log_base"):
        B.with_params(log_base=np.zeros(5))
    with pytest.raises(ValueError, match="no learnable"):
        B.with_params(centers=np.zeros(1))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_basis=0), "n_basis"),
        (dict(n_basis=2.5), "n_basis"),
        (dict(frequencies=[1.0, -2.0], n_basis=9), "frequencies"),
        (dict(frequencies=[1.0, np.nan], n_basis=9), "frequencies"),
        (dict(frequencies=[1.0, 2.0], n_basis=9), "n_basis"),
        (dict(frequencies=[], n_basis=1), "frequencies"),
        (dict(period=-1.0), "period"),
        (dict(frequencies=[1.0], period=2.0, n_basis=3), "period"),
    ],
)
def test_bad_parameters_raise_at_fit(rng, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Fourier(**params).fit(rng.uniform(size=(5, 1)))


def test_constant_input_gives_finite_features():
    X = np.full((6, 2), 3.0)
    B = Fourier(n_basis=10).fit(X)
    assert np.isfinite(B.design(X)).all()
    assert np.isfinite(B.design(np.array([[1e12, -1e12]]))).all()


# ---------------------------------------------------------------------- lattice (d > 1)
def lattice_reference(B, X):
    """[1], cos(X @ f_q), sin(X @ f_q) for the (Q, d) frequency vectors f_q, cut to m."""
    X = np.asarray(X, dtype=np.float64)
    theta = X @ B.frequencies_.T
    cols = [np.ones((X.shape[0], 1))] if B.include_constant else []
    pairs = np.stack([np.cos(theta), np.sin(theta)], axis=-1).reshape(X.shape[0], 2 * theta.shape[1])
    return np.hstack(cols + [pairs])[:, : B.n_basis]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [0, 1, 7, 203])
def test_lattice_design_matches_numpy(rng, dtype, layout, n):
    B = Fourier(n_basis=24, multivariate="lattice").fit(make_input(rng, 30, 3, np.float64, "C"))
    X = make_input(rng, n, 3, dtype, layout)
    Phi = B.design(X)
    assert Phi.dtype == dtype and Phi.shape == (n, 24)
    np.testing.assert_allclose(Phi, lattice_reference(B, X), **tol(dtype))


@pytest.mark.parametrize("d", range(2, 9))
@pytest.mark.parametrize("m, constant", [(41, True), (40, True), (40, False)])
def test_lattice_shapes_sums_and_gradients(rng, d, m, constant):
    X = rng.uniform(-2, 2, size=(33, d))
    B = Fourier(n_basis=m, multivariate="lattice", include_constant=constant).fit(X)
    K = B.lattice_vectors_
    assert len({tuple(k) for k in K}) == len(K)  # distinct, never both k and -k
    assert not ({tuple(k) for k in K} & {tuple(-k) for k in K})
    assert np.all(np.diff(np.abs(K).sum(axis=1)) >= 0)  # graded
    np.testing.assert_allclose(B.design(X), lattice_reference(B, X), rtol=1e-12, atol=1e-12)
    w = rng.normal(size=(m, 2))
    np.testing.assert_allclose(B.weighted_sum(X, w), lattice_reference(B, X) @ w, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(B.weighted_sum(X, w[:, 0]), lattice_reference(B, X) @ w[:, 0], rtol=1e-11, atol=1e-11)
    G = rng.normal(size=(33, m))
    grad = B.design_vjp(X, G)["log_base"]
    fd = central_difference(B, X, G, "log_base")
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_lattice_has_cross_terms_and_matches_additive_in_1d(rng):
    X = rng.uniform(-1, 1, size=(20, 2))
    B = Fourier(n_basis=9, multivariate="lattice").fit(X)
    assert np.any(np.count_nonzero(B.lattice_vectors_, axis=1) == 2)
    X1 = X[:, :1]
    A = Fourier(n_basis=9).fit(X1)
    L = Fourier(n_basis=9, multivariate="lattice").fit(X1)
    assert np.array_equal(A.design(X1), L.design(X1))


def test_lattice_tasks_threads_and_errors(rng):
    sizes = [3, 0, 9, 5]
    offsets = np.r_[0, np.cumsum(sizes)]
    X = rng.uniform(-1, 1, size=(offsets[-1], 2))
    B = Fourier(n_basis=11, multivariate="lattice").fit(X)
    W = rng.normal(size=(4, 11))
    np.testing.assert_allclose(
        B.weighted_sum_tasks(X, offsets, W), per_task_reference(B, X, offsets, W), rtol=1e-12, atol=1e-12
    )
    big = rng.uniform(-1, 1, size=(2000, 3))
    B1 = Fourier(n_basis=30, multivariate="lattice", n_jobs=1).fit(big)
    B2 = clone(B1).set_params(n_jobs=2).fit(big)
    G = rng.normal(size=(2000, 30))
    assert np.array_equal(B1.design(big), B2.design(big))
    assert np.array_equal(B1.design_vjp(big, G)["log_base"], B2.design_vjp(big, G)["log_base"])
    with pytest.raises(ValueError, match="multivariate"):
        Fourier(multivariate="tensor").fit(X)
    with pytest.raises(ValueError, match="frequencies"):
        Fourier(n_basis=9, frequencies=[1.0, 2.0], multivariate="lattice").fit(X)
    with pytest.raises(AttributeError, match="frequencies_"):
        B.frequency_dims_  # noqa: B018 (the attribute access is what raises)


def test_two_band_basis_spans_harmonic_tasks(rng):
    """y = a1 sin(w x + b1) + a2 sin(2 w x + b2), w ~ U[5, 7], is fit almost exactly by the
    two-band basis (the use the mixture-prior learner makes of it)."""
    B = Fourier(n_basis=2 * BANDS.size + 1, frequencies=BANDS).fit(np.array([[-5.0], [5.0]]))
    xq = np.linspace(-5, 5, 500)[:, None]
    for _ in range(5):
        w, (a1, a2), (b1, b2) = rng.uniform(5, 7), rng.uniform(0.1, 5, 2), rng.uniform(0, 6.3, 2)

        def f(x):
            return a1 * np.sin(w * x[:, 0] + b1) + a2 * np.sin(2 * w * x[:, 0] + b2)

        x = rng.uniform(-5, 5, size=(300, 1))
        coef = np.linalg.lstsq(B.design(x), f(x), rcond=None)[0]
        rel = np.sqrt(np.mean((B.weighted_sum(xq, coef) - f(xq)) ** 2)) / np.std(f(xq))
        assert rel < 1e-4
