"""The ``linear`` family and the ``Standardized`` wrapper against plain numpy references."""

import numpy as np
import pytest
from family_inputs import DTYPES, LAYOUTS, make_input, per_task_reference, tol

import metafast as mf
from metafast.basis.standardized import Standardized
from metafast.testing import check_basis_family


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n, d", [(1, 1), (7, 3), (33, 5)])
def test_linear_design_matches_numpy(rng, dtype, layout, n, d):
    X = make_input(rng, n, d, dtype, layout)
    B = mf.basis.make("linear").fit(X)
    X64 = X.astype(np.float64)
    sd = X64.std(axis=0)
    sd[sd == 0] = 1.0
    ref = np.column_stack([(X64 - X64.mean(axis=0)) / sd, np.ones(n)])
    Phi = B.design(X)
    assert Phi.dtype == dtype and B.n_basis == d + 1
    np.testing.assert_allclose(Phi, ref, **({"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else tol(dtype)))
    w = rng.normal(size=d + 1)
    np.testing.assert_allclose(B.weighted_sum(X, w), Phi.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)
    offsets = np.array([0, n // 2, n])
    W = rng.normal(size=(2, d + 1))
    np.testing.assert_allclose(
        B.weighted_sum_tasks(X, offsets, W), per_task_reference(B, X, offsets, W), rtol=1e-4, atol=1e-4
    )


def test_linear_options_and_constant_columns(rng):
    X = np.column_stack([rng.normal(size=10), np.full(10, 3.0)])
    B = mf.basis.make("linear", standardize=False, include_constant=False).fit(X)
    np.testing.assert_array_equal(B.design(X), X)
    Phi = mf.basis.make("linear").fit(X).design(X)
    assert np.all(np.isfinite(Phi)) and np.all(Phi[:, 1] == 0)
    with pytest.raises(TypeError, match="standardize"):
        mf.basis.make("linear", standardize="yes").fit(X)


def test_linear_passes_the_plugin_conformance_checks():
    check_basis_family(mf.basis.make("linear"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_standardized_is_the_inner_family_on_scaled_inputs(rng, dtype):
    X = make_input(rng, 40, 3, dtype, "strided") * np.array([1, 100, 0.01], dtype=dtype)
    S = Standardized(mf.basis.make("rff", n_basis=16, random_state=0)).fit(X)
    Z = (X.astype(np.float64) - X.astype(np.float64).mean(0)) / X.astype(np.float64).std(0)
    inner = mf.basis.make("rff", n_basis=16, random_state=0).fit(Z)
    np.testing.assert_allclose(S.design(X), inner.design(Z), rtol=1e-4, atol=1e-4)
    assert S.design(X).dtype == dtype
    w = rng.normal(size=16)
    np.testing.assert_allclose(S.weighted_sum(X, w), inner.weighted_sum(Z, w), rtol=1e-4, atol=1e-4)
    G = rng.normal(size=(40, 16))
    key = "log_length_scale"
    np.testing.assert_allclose(S.design_vjp(X, G)[key], inner.design_vjp(Z, G)[key], rtol=1e-3)
    moved = S.with_params(**{key: S.learnable_params()[key] + 0.3})
    assert not np.allclose(moved.design(X), S.design(X))
