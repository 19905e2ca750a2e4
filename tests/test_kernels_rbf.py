"""The rbf / rff / relu families and their fused kernels against plain-numpy references.

Covers float32 and float64, C- and F-ordered and strided input, n = 0, 1 and odd sizes, d = 1..8,
weighted sums with w (m,) and (m, k), per-task sums, gradients against central differences,
thread-count invariance and bad input.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

import metafast as mf
from metafast._kernels import _random_features, _rbf
from metafast.basis import _fused

FAMILIES = {
    "rbf": dict(n_basis=9),
    "rbf-ard": dict(n_basis=9, ard=True),
    "rbf-per-center": dict(n_basis=9, per_center=True),
    "rbf-both": dict(n_basis=9, ard=True, per_center=True),
    "rbf-kmeans": dict(n_basis=7, centers="kmeans", random_state=0),
    "rff": dict(n_basis=11, random_state=0),
    "rff-ard": dict(n_basis=11, ard=True, random_state=0),
    "relu": dict(n_basis=10, random_state=0),
}


def make(key, **extra):
    name = key.split("-")[0]
    return mf.basis.make(name, **{**FAMILIES[key], **extra})


# ------------------------------------------------------------------ numpy references
def rbf_reference(B, X):
    C, ls = B.centers_, np.asarray(B.length_scale_)
    if B.per_center and not B.ard:
        ls = ls[:, None]
    L = np.broadcast_to(ls, C.shape)
    D = (X[:, None, :] - C[None, :, :]) / L[None, :, :]
    return np.exp(-0.5 * np.sum(D * D, axis=-1))


def reference(B, X):
    """The design matrix in float64 from the fitted parameters, by the textbook formula."""
    X = np.asarray(X, dtype=np.float64)
    if isinstance(B, mf.basis.rbf.RBF):
        return rbf_reference(B, X)
    if type(B).__name__ == "RFF":
        Om = B.eps_ / B.length_scale_[None, :]
        return np.sqrt(2.0 / B.n_basis) * np.cos(X @ Om.T + B.offsets_)
    return np.maximum(0.0, X @ B.directions_.T + B.offsets_)


def tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def data(n, d, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, (n, d)).astype(dtype)


def fitted(key, d=2, **extra):
    return make(key, **extra).fit(data(60, d, np.float64, seed=1))


# ------------------------------------------------------------------ design and sums
@pytest.mark.parametrize("key", list(FAMILIES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 2, 33, 301])
def test_design_and_sums_match_reference(key, dtype, n):
    B = fitted(key, d=3)
    X = data(n, 3, dtype, seed=n)
    ref = reference(B, X)
    P = B.design(X)
    assert P.dtype == dtype and P.shape == (n, B.n_basis)
    np.testing.assert_allclose(P, ref, **tol(dtype))
    assert B.transform(X).dtype == dtype
    rng = np.random.default_rng(5)
    w = rng.normal(size=B.n_basis)
    Wk = rng.normal(size=(B.n_basis, 3))
    scale = np.abs(w).sum()
    s1 = B.weighted_sum(X, w)
    assert s1.shape == (n,) and s1.dtype == dtype
    np.testing.assert_allclose(s1, ref @ w, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * scale)
    sk = B.weighted_sum(X, Wk)
    assert sk.shape == (n, 3)
    np.testing.assert_allclose(sk, ref @ Wk, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * np.abs(Wk).sum())


@pytest.mark.parametrize("key", ["rbf", "rbf-ard", "rff", "relu"])
@pytest.mark.parametrize("d", [*range(1, 9), 9, 13])  # > 8: the multi-pass distance path
def test_every_input_dimension(key, d):
    B = make(key, **({"n_basis": 2**d} if key.startswith("rbf") and d <= 3 else {})).fit(
        data(40, d, np.float64, seed=d)
    )
    X = data(17, d, np.float64, seed=10 + d)
    np.testing.assert_allclose(B.design(X), reference(B, X), rtol=1e-10, atol=1e-12)
    w = np.linspace(-1, 1, B.n_basis)
    np.testing.assert_allclose(B.weighted_sum(X, w), reference(B, X) @ w, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("key", ["rbf-both", "rff-ard", "relu"])
@pytest.mark.parametrize("layout", ["F", "strided", "int", "list"])
def test_input_layouts_give_the_same_result(key, layout):
    B = fitted(key, d=3)
    X = data(45, 3, np.float64, seed=3)
    if layout == "F":
        Xl = np.asfortranarray(X)
    elif layout == "strided":
        big = np.zeros((90, 6))
        big[::2, ::2] = X
        Xl = big[::2, ::2]
    elif layout == "int":
        X = np.round(X).astype(np.int64)
        Xl = X
    else:
        Xl = X.tolist()
    w = np.arange(B.n_basis, dtype=float)
    np.testing.assert_allclose(B.design(Xl), reference(B, X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(B.weighted_sum(Xl, w), reference(B, X) @ w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("key", list(FAMILIES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_sum_tasks_matches_per_task_reference(key, dtype):
    B = fitted(key, d=2)
    sizes = [3, 0, 1, 600, 17, 0, 258]  # empty tasks and tasks longer than one kernel block
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    X = data(offsets[-1], 2, dtype, seed=7)
    W = np.random.default_rng(3).normal(size=(len(sizes), B.n_basis))
    got = B.weighted_sum_tasks(X, offsets, W)
    ref = reference(B, X)
    want = np.concatenate([ref[offsets[t] : offsets[t + 1]] @ W[t] for t in range(len(sizes))])
    assert got.dtype == dtype and got.shape == (offsets[-1],)
    np.testing.assert_allclose(got, want, rtol=tol(dtype)["rtol"], atol=50 * tol(dtype)["atol"])


def test_weighted_sum_tasks_no_tasks_and_no_rows():
    B = fitted("rbf")
    out = B.weighted_sum_tasks(np.zeros((0, 2)), np.array([0]), np.zeros((0, 9)))
    assert out.shape == (0,)
    out = B.weighted_sum_tasks(np.zeros((0, 2)), np.array([0, 0, 0]), np.ones((2, 9)))
    assert out.shape == (0,)


# ------------------------------------------------------------------ kernels directly
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rbf_kernel_general_inverse_scales(dtype):
    rng = np.random.default_rng(0)
    n, d, m = 37, 3, 5
    X = rng.normal(size=(n, d)).astype(dtype)
    C = rng.normal(size=(m, d)).astype(dtype)
    S = rng.uniform(0.2, 3, size=(m, d)).astype(dtype)
    D = (X[:, None, :].astype(float) - C[None]) * S[None]
    ref = np.exp(-0.5 * (D**2).sum(-1))
    out = np.empty((n, m), dtype)
    _rbf.rbf_design(X, np.ascontiguousarray(C.T), np.ascontiguousarray(S.T), out, 1)
    np.testing.assert_allclose(out, ref, **tol(dtype))
    W = rng.normal(size=(m, 2)).astype(dtype)
    o2 = np.empty((n, 2), dtype)
    _rbf.rbf_weighted_sum(X, C, S, W, o2, 2)
    np.testing.assert_allclose(o2, ref @ W, rtol=tol(dtype)["rtol"], atol=10 * tol(dtype)["atol"])


@pytest.mark.parametrize("act", [_random_features.ACT_COS, _random_features.ACT_RELU])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_projection_kernel_with_huge_arguments_uses_exact_reduction(act, dtype):
    """cos of arguments beyond the vector reduction limit falls back to libm: still accurate."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (20, 2)).astype(dtype)
    Om = np.array([[1e7, 0.0], [0.0, 1.0], [3.0, -2.0]], dtype=dtype)
    b = np.array([0.5, 1e8, -0.25], dtype=dtype)
    z = X.astype(np.float64) @ Om.T.astype(np.float64) + b
    ref = np.cos(z) if act == _random_features.ACT_COS else np.maximum(z, 0)
    out = np.empty((20, 3), dtype)
    _random_features.proj_design(X, np.ascontiguousarray(Om.T), b, act, 1.0, out, 2)
    # float32: z itself is rounded in float32, so compare against the float32 argument
    if dtype == np.float32:
        z32 = (X @ Om.T + b).astype(np.float64)
        ref = np.cos(z32) if act == _random_features.ACT_COS else np.maximum(z32, 0)
        np.testing.assert_allclose(out[:, 1:], ref[:, 1:], rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9)


def test_unknown_activation_code_is_rejected():
    X = np.zeros((2, 1))
    with pytest.raises(ValueError, match="activation"):
        _random_features.proj_design(X, np.zeros((1, 1)), np.zeros(1), 7, 1.0, np.empty((2, 1)), 1)


# ------------------------------------------------------------------ gradients
def _fd_grad(B, X, G, key, h=1e-6):
    p = B.learnable_params()[key]
    num = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        plus, minus = p.copy(), p.copy()
        plus[idx] += h
        minus[idx] -= h
        f_plus = np.sum(G * B.with_params(**{key: plus}).design(X))
        f_minus = np.sum(G * B.with_params(**{key: minus}).design(X))
        num[idx] = (f_plus - f_minus) / (2 * h)
    return num


@pytest.mark.parametrize("key", ["rbf", "rbf-ard", "rbf-per-center", "rbf-both", "rbf-kmeans", "rff", "rff-ard"])
@pytest.mark.parametrize("n", [1, 29, 700])
def test_design_vjp_matches_central_differences(key, n):
    B = fitted(key, d=3)
    X = data(n, 3, np.float64, seed=n)
    G = np.random.default_rng(n).normal(size=(n, B.n_basis))
    grads = B.design_vjp(X, G)
    params = B.learnable_params()
    assert set(grads) == set(params)
    for name, value in params.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.float64
        num = _fd_grad(B, X, G, name)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-7 * max(1, np.abs(num).max()))


@pytest.mark.parametrize("key", ["rbf-both", "rff-ard"])
def test_design_vjp_float32_close_to_float64(key):
    B = fitted(key, d=2)
    X = data(300, 2, np.float64, seed=4)
    G = np.random.default_rng(4).normal(size=(300, B.n_basis))
    g64 = B.design_vjp(X, G)
    g32 = B.design_vjp(X.astype(np.float32), G.astype(np.float32))
    for name in g64:
        scale = np.abs(g64[name]).max()
        np.testing.assert_allclose(g32[name], g64[name], atol=1e-4 * scale)


def test_design_vjp_empty_input_is_zero():
    B = fitted("rbf-both")
    g = B.design_vjp(np.zeros((0, 2)), np.zeros((0, 9)))
    assert all(np.all(v == 0) for v in g.values())


def test_relu_has_no_learnable_params():
    B = fitted("relu")
    assert B.learnable_params() == {}
    assert B.design_vjp(data(3, 2, np.float64), np.ones((3, 10))) == {}


def test_with_params_replaces_and_leaves_original():
    B = fitted("rbf")
    p = B.learnable_params()
    B2 = B.with_params(log_length_scale=p["log_length_scale"] + np.log(2.0), centers=p["centers"] + 1)
    np.testing.assert_allclose(B2.length_scale_, 2 * B.length_scale_)
    np.testing.assert_allclose(B2.centers_, B.centers_ + 1)
    np.testing.assert_allclose(B.learnable_params()["centers"], p["centers"])
    with pytest.raises(ValueError, match="log_length_scale"):
        B.with_params(log_length_scale=np.zeros(3))
    with pytest.raises(ValueError, match="centers"):
        B.with_params(centers=np.full((9, 2), np.nan))
    with pytest.raises(ValueError, match="no learnable"):
        B.with_params(frequencies=np.zeros(2))


# ------------------------------------------------------------------ threads
@pytest.mark.parametrize("key", ["rbf-both", "rff-ard", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_bit_identical_whatever_the_thread_count(key, dtype, monkeypatch):
    monkeypatch.setattr(mf.parallel, "MIN_PARALLEL_WORK", 0)  # thread even this small work
    X = data(1501, 3, dtype, seed=9)
    offsets = np.array([0, 5, 700, 701, 1501])
    outs = []
    for n_jobs in (1, 2, 3):
        B = make(key, n_jobs=n_jobs, random_state=0).fit(data(50, 3, np.float64, seed=1))
        W = np.random.default_rng(0).normal(size=(4, B.n_basis))
        G = np.random.default_rng(1).normal(size=(1501, B.n_basis))
        res = [B.design(X), B.weighted_sum(X, W[0]), B.weighted_sum(X, W[:2].T), B.weighted_sum_tasks(X, offsets, W)]
        res += list(B.design_vjp(X, G).values())
        outs.append(res)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ robustness
@pytest.mark.parametrize("key", ["rbf", "rff", "relu"])
def test_huge_distances_give_zero_or_finite_not_nan(key):
    B = fitted(key, d=2)
    X = np.array([[1e150, -1e150], [1e300, 1e300], [-3e38, 2.0]])
    P = B.design(X)
    assert np.all(np.isfinite(P)) if key != "relu" else not np.any(np.isnan(P))
    if key == "rbf":
        np.testing.assert_array_equal(P, 0.0)
        np.testing.assert_array_equal(B.weighted_sum(X, np.ones(9)), 0.0)
    X32 = np.array([[3e38, -3e38], [1e20, 0]], dtype=np.float32)
    P32 = B.design(X32)
    assert P32.dtype == np.float32 and not np.any(np.isnan(P32))
    assert not np.any(np.isnan(B.weighted_sum(X32, np.ones(B.n_basis))))
    if key != "rbf":  # projections beyond float64's range: a clear error, not NaN
        with pytest.raises(ValueError, match="'X'.*overflow"):
            B.design(np.array([[1e308, -1e308]]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rbf_gradients_of_far_points_are_zero_not_nan(dtype):
    B = fitted("rbf-both")
    B = B.with_params(log_length_scale=np.full((9, 2), np.log(0.1)))  # (x - c) / l overflows
    big = np.finfo(dtype).max / 2
    X = np.array([[big, -big], [big, 0.0], [0.5, 0.5]], dtype=dtype)
    G = np.ones((3, 9), dtype=dtype)
    grads = B.design_vjp(X, G)
    near = B.design_vjp(X[2:], G[2:])
    for name in grads:
        assert np.all(np.isfinite(grads[name]))
        np.testing.assert_allclose(grads[name], near[name], rtol=1e-5, atol=1e-6)


def test_rbf_constant_data_and_single_point():
    for X in (np.ones((5, 2)), np.array([[0.5]])):
        for centers in ("grid", "kmeans"):
            B = mf.basis.make("rbf", n_basis=6, centers=centers, random_state=0).fit(X)
            P = B.design(X)
            assert P.shape == (X.shape[0], 6) and np.all(np.isfinite(P))
            assert np.all(B.length_scale_ > 0)


def test_rff_relu_constant_data():
    X = np.full((4, 3), 2.0)
    for name in ("rff", "relu"):
        B = mf.basis.make(name, n_basis=5, random_state=0).fit(X)
        assert np.all(np.isfinite(B.design(X)))


@pytest.mark.parametrize("key", ["rbf", "rff", "relu"])
def test_bad_input_errors_name_the_argument(key):
    B = fitted(key, d=2)
    m = B.n_basis
    X = data(4, 2, np.float64)
    cases = [
        (lambda: B.design(np.array([[np.nan, 1.0]])), ValueError, "'X'.*NaN"),
        (lambda: B.design(np.array([[np.inf, 1.0]])), ValueError, "'X'.*inf"),
        (lambda: B.design(np.zeros((3, 5))), ValueError, "argument 'X'.*X has 5 features"),
        (lambda: B.design(np.zeros(3)), ValueError, "'X' must be 2-D"),
        (lambda: B.design(np.array([["a", "b"]])), TypeError, "'X'"),
        (lambda: B.weighted_sum(X, np.ones(m + 1)), ValueError, "'w'"),
        (lambda: B.weighted_sum(X, np.ones((m, 2, 2))), ValueError, "'w'"),
        (lambda: B.weighted_sum(X, np.full(m, np.nan)), ValueError, "'w'.*NaN"),
        (lambda: B.weighted_sum(X, np.array(["x"] * m)), TypeError, "'w'"),
        (lambda: B.weighted_sum_tasks(X, [0, 4], np.ones((2, m))), ValueError, "'W'"),
        (lambda: B.weighted_sum_tasks(X, [0, 3], np.ones((1, m))), ValueError, "'offsets'"),
        (lambda: B.weighted_sum_tasks(X, [0, 4], np.full((1, m), np.inf)), ValueError, "'W'"),
    ]
    if B.learnable_params():
        cases += [
            (lambda: B.design_vjp(X, np.ones((4, m + 1))), ValueError, "'G'"),
            (lambda: B.design_vjp(X, np.full((4, m), np.nan)), ValueError, "'G'.*NaN"),
        ]
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


@pytest.mark.parametrize("name", ["rbf", "rff", "relu"])
def test_unfitted_family_raises(name):
    B = mf.basis.make(name, n_basis=4)
    for call in (
        lambda: B.design(np.zeros((2, 1))),
        lambda: B.weighted_sum(np.zeros((2, 1)), np.ones(4)),
        lambda: B.weighted_sum_tasks(np.zeros((2, 1)), [0, 2], np.ones((1, 4))),
    ):
        with pytest.raises(NotFittedError):
            call()
    if name != "relu":
        with pytest.raises(NotFittedError):
            B.learnable_params()


@pytest.mark.parametrize(
    "params, pattern",
    [
        (dict(n_basis=0), "n_basis"),
        (dict(n_basis=2.5), "n_basis"),
        (dict(centers="hex"), "centers"),
        (dict(centers=np.zeros((3, 2))), "centers"),
        (dict(length_scale=-1.0), "length_scale"),
        (dict(length_scale=[1.0, 2.0]), "length_scale"),
        (dict(n_jobs=0), "n_jobs"),
    ],
)
def test_bad_rbf_parameters(params, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        mf.basis.make("rbf", **{"n_basis": 4, **params}).fit(data(10, 2, np.float64))


def test_zero_feature_input_is_rejected():
    for name in ("rbf", "rff", "relu"):
        with pytest.raises(ValueError, match="0 feature"):
            mf.basis.make(name, n_basis=3).fit(np.zeros((4, 0)))


# ------------------------------------------------------------------ centre placement
def test_rbf_grid_in_1d_is_even_over_the_range():
    X = np.array([[-3.0], [1.0], [5.0]])
    B = mf.basis.make("rbf", n_basis=5).fit(X)
    np.testing.assert_allclose(B.centers_[:, 0], np.linspace(-3, 5, 5))
    np.testing.assert_allclose(B.length_scale_, [2.0])


def test_rbf_grid_in_2d_when_it_fits_else_kmeans():
    X = data(200, 2, np.float64)
    B = mf.basis.make("rbf", n_basis=16).fit(X)
    assert len(np.unique(B.centers_[:, 0].round(12))) == 4
    B = mf.basis.make("rbf", n_basis=10, random_state=0).fit(X)
    assert B.centers_.shape == (10, 2)
    assert len(np.unique(B.centers_[:, 0].round(12))) == 10  # k-means, not a grid
    assert np.all(B.centers_.min(0) >= X.min(0)) and np.all(B.centers_.max(0) <= X.max(0))


def test_rbf_explicit_centers_and_ard_length_scale():
    C = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])
    B = mf.basis.make("rbf", n_basis=3, centers=C, length_scale=[0.5, 2.0], ard=True)
    B.fit(data(10, 2, np.float64))
    np.testing.assert_array_equal(B.centers_, C)
    np.testing.assert_array_equal(B.length_scale_, [0.5, 2.0])


def test_random_state_reproducible_and_fit_adapts_to_domain():
    X = data(100, 2, np.float64)
    for name in ("rff", "relu"):
        a = mf.basis.make(name, n_basis=8, random_state=3).fit(X).design(X)
        b = mf.basis.make(name, n_basis=8, random_state=3).fit(X).design(X)
        np.testing.assert_array_equal(a, b)
    B = mf.basis.make("relu", n_basis=50, random_state=0).fit(X * 1000 + 5000)
    P = B.design(X * 1000 + 5000)
    assert 0.2 < np.mean(P > 0) < 0.8  # kinks inside the (shifted, scaled) domain
    R = mf.basis.make("rff", n_basis=8, random_state=0).fit(X * 100)
    assert 50 < R.length_scale_[0] < 500  # median heuristic follows the data scale


# ------------------------------------------------------------------ properties
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 40),
    d=st.integers(1, 5),
    m=st.integers(1, 12),
    key=st.sampled_from(["rbf", "rbf-both", "rff", "rff-ard", "relu"]),
    f32=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_property_fused_sum_equals_design_times_weights(n, d, m, key, f32, seed):
    dtype = np.float32 if f32 else np.float64
    B = make(key, n_basis=m).fit(data(max(n, 1), d, np.float64, seed=seed + 1))
    X = data(n, d, dtype, seed=seed)
    w = np.random.default_rng(seed).normal(size=m)
    P = B.design(X)
    assert np.all(np.isfinite(P))
    if key.startswith("rbf"):
        assert np.all((P >= 0) & (P <= 1))
    elif key.startswith("rff"):
        assert np.all(np.abs(P) <= np.sqrt(2.0 / m) * (1 + 1e-6))
    else:
        assert np.all(P >= 0)
    t = tol(dtype)
    np.testing.assert_allclose(
        B.weighted_sum(X, w),
        P.astype(np.float64) @ w,
        rtol=t["rtol"],
        atol=10 * t["atol"] * (1 + np.abs(w).sum() * (1 + np.abs(P).max(initial=0))),
    )


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6),
    key=st.sampled_from(["rbf-per-center", "rff", "relu"]),
    f32=st.booleans(),
    n_jobs=st.sampled_from([1, 2]),
)
def test_property_task_sums_equal_per_task_design(sizes, key, f32, n_jobs):
    saved = mf.parallel.MIN_PARALLEL_WORK
    mf.parallel.MIN_PARALLEL_WORK = 0  # thread even small work (hypothesis cannot use monkeypatch)
    try:
        _check_task_sums(sizes, key, f32, n_jobs)
    finally:
        mf.parallel.MIN_PARALLEL_WORK = saved


def _check_task_sums(sizes, key, f32, n_jobs):
    dtype = np.float32 if f32 else np.float64
    B = make(key, n_jobs=n_jobs, random_state=0).fit(data(30, 2, np.float64, seed=1))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    X = data(offsets[-1], 2, dtype, seed=len(sizes))
    W = np.random.default_rng(len(sizes)).normal(size=(len(sizes), B.n_basis))
    got = B.weighted_sum_tasks(X, offsets, W)
    P = B.design(X).astype(np.float64)
    want = np.concatenate([np.zeros(0)] + [P[offsets[t] : offsets[t + 1]] @ W[t] for t in range(len(sizes))])
    t = tol(dtype)
    np.testing.assert_allclose(got, want, rtol=t["rtol"], atol=20 * t["atol"] * (1 + np.abs(W).max()))


@pytest.mark.parametrize("key", ["rbf-both", "rff-ard", "relu"])
def test_clone_pickle_and_fit_tasks(key):
    import pickle

    from sklearn.base import clone

    B = fitted(key, d=2)
    X = data(20, 2, np.float64, seed=2)
    B2 = pickle.loads(pickle.dumps(B))
    np.testing.assert_array_equal(B2.design(X), B.design(X))
    C = clone(B)
    assert C.get_params() == B.get_params() and not C.__sklearn_is_fitted__()
    tasks = mf.tasks.TaskSet.from_list(
        [
            mf.tasks.Task(X[:5], np.zeros(5), X[5:10], np.zeros(5)),
            mf.tasks.Task(X[10:15], np.zeros(5), X[15:], np.zeros(5)),
        ]
    )
    F = make(key, random_state=0).fit_tasks(tasks)
    assert F.design(X).shape == (20, F.n_basis)


def test_small_work_runs_on_one_thread():
    assert _fused.n_threads_for(4, 10, 10) == 1
    assert _fused.n_threads_for(2, 100_000, 64) == mf.parallel.effective_n_threads(2)
    with pytest.raises(ValueError, match="n_jobs"):
        _fused.n_threads_for(0, 100_000, 64)
