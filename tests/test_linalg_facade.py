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
