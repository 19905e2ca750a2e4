"""The fused BLAS/LAPACK facade (_linalg.pxd) against numpy, through its test twins."""

import numpy as np
import pytest

from metafast._kernels import _linalg_check as L

RTOL = {np.float32: 1e-4, np.float64: 1e-11}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, nrhs", [(1, 1), (5, 3), (13, 2)])
def test_cholesky_solve_matches_numpy(dtype, n, nrhs, rng):
    M = rng.normal(size=(n, n))
    A = (M @ M.T + n * np.eye(n)).astype(dtype)
    B = rng.normal(size=(nrhs, n)).astype(dtype)
    expected = np.linalg.solve(A.astype(np.float64), B.T.astype(np.float64)).T
    A_work, B_work = A.copy(), B.copy()
    assert L.cholesky_solve(A_work, B_work) == 0
    np.testing.assert_allclose(B_work, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_cholesky_reports_non_positive_definite():
    A = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert L.cholesky_solve(A, np.ones((1, 2))) > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 7, 5), (8, 2, 9)])
def test_matmul_matches_numpy(dtype, m, k, n, rng):
    A = rng.normal(size=(m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    C = np.empty((m, n), dtype=dtype)
    L.matmul(A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=RTOL[dtype], atol=RTOL[dtype])


# ------------------------------------------------------------------ the one jittered Cholesky
CHOL_RETRIES = 10
CHOL_EPS = {np.float32: 1e-6, np.float64: 1e-12}


def reference_jittered_cholesky(A, dtype):
    """The policy of _linalg.jittered_cholesky in plain numpy: (L, status)."""
    scale = np.abs(np.diag(A)).mean() if A.shape[0] else 1.0
    scale = scale if scale > 0 else 1.0
    for r in range(CHOL_RETRIES + 1):
        jitter = 0.0 if r == 0 else scale * CHOL_EPS[dtype] * 10.0 ** (r - 1)
        shifted = (A.astype(np.float64) + jitter * np.eye(A.shape[0])).astype(dtype)
        try:
            return np.linalg.cholesky(shifted), r
        except np.linalg.LinAlgError:
            continue
    return None, -1


def _kernel_factor(A, dtype, lower):
    work = np.array(A, dtype=dtype)
    status = L.jittered_cholesky_factor(work, lower)
    return (work.T if lower else work), status


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("case", ["well", "ill", "singular", "indefinite", "large_singular"])
def test_jittered_cholesky_matches_the_numpy_policy(dtype, lower, case, rng):
    if case == "well":
        M = rng.normal(size=(7, 7))
        A = M @ M.T + 7 * np.eye(7)
    elif case == "ill":  # Hilbert matrix, condition number ~1e13 at n = 9
        i = np.arange(9)
        A = 1.0 / (i[:, None] + i[None, :] + 1)
    elif case == "singular":  # rank one: the second pivot is exactly 0
        A = np.ones((5, 5))
    elif case == "indefinite":  # eigenvalues 4 and -2
        A = np.array([[1.0, 3.0], [3.0, 1.0]])
    else:  # beyond the on-stack diagonal (CHOL_STACK = 256)
        A = np.ones((300, 300))
    factor, status = _kernel_factor(A, dtype, lower)
    ref, ref_status = reference_jittered_cholesky(A, dtype)
    if case in ("well", "singular", "indefinite"):
        assert status == ref_status  # clear-cut pivots: the same number of rounds
    assert -1 <= status <= CHOL_RETRIES
    if case == "singular":
        assert status == 1
    if case == "large_singular":
        assert status >= 1
    if case == "indefinite":  # needs a jitter above 2: reachable in float32's policy only
        assert status == (-1 if dtype == np.float64 else 8)
    if status < 0:
        return
    assert np.array_equal(factor, np.tril(factor))  # the other triangle is zeroed
    scale = np.abs(np.diag(A)).mean()
    jitter = 0.0 if status == 0 else scale * CHOL_EPS[dtype] * 10.0 ** (status - 1)
    rebuilt = factor.astype(np.float64) @ factor.T.astype(np.float64)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * (np.abs(A).max() + jitter) * A.shape[0]
    np.testing.assert_allclose(rebuilt, A + jitter * np.eye(A.shape[0]), rtol=0, atol=tol)
    if ref is not None and case != "ill":
        np.testing.assert_allclose(factor, ref, rtol=0, atol=50 * tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [(2, 2), (3, 1)])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_jittered_cholesky_fails_on_non_finite_input(dtype, where, value):
    A = np.eye(4)
    A[where] = A[where[::-1]] = value
    assert _kernel_factor(A, dtype, True)[1] == -1
    assert _kernel_factor(A, dtype, False)[1] == -1


def test_jittered_cholesky_of_an_empty_matrix():
    assert L.jittered_cholesky_factor(np.zeros((0, 0)), True) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("n", [6, 32, 33, 40])  # the plain-loop path (<= CHOL_SMALL) and potrf's
@pytest.mark.parametrize("singular", [False, True])
def test_jittered_cholesky_reads_only_its_triangle(dtype, lower, n, singular, rng):
    """The other triangle may hold anything (here NaN): it is neither read nor left behind, on
    the first attempt and on the jittered retries, which must start again from A itself."""
    if singular:  # rank one: the second pivot is exactly 0, so it retries
        A = np.full((n, n), 1.5)
    else:
        M = rng.normal(size=(n, n))
        A = M @ M.T + n * np.eye(n)
    clean, clean_status = _kernel_factor(A, dtype, lower)
    # _kernel_factor's A is C-ordered: 'L' reads the row-major upper triangle, 'U' the lower one
    dirty = A.copy()
    dirty[np.tril_indices(n, -1) if lower else np.triu_indices(n, 1)] = np.nan
    factor, status = _kernel_factor(dirty, dtype, lower)
    assert status == clean_status and status >= (1 if singular else 0)
    np.testing.assert_array_equal(factor, clean)
    assert np.array_equal(factor, np.tril(factor))
