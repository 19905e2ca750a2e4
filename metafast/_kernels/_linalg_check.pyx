"""Python-callable twins of the _linalg.pxd wrappers, so tests can check them against numpy."""

from cython cimport floating

from metafast._kernels._linalg cimport gemm, jittered_cholesky, potrf, potrs


def cholesky_solve(floating[:, ::1] A, floating[:, ::1] B):
    """Overwrite A with its Cholesky factor and B (nrhs, n), row-major, with A^{-1} B^T rows; returns info."""
    cdef int n = A.shape[0], nrhs = B.shape[0], info
    with nogil:
        info = potrf(c'L', n, &A[0, 0], n)
        if info == 0:
            info = potrs(c'L', n, nrhs, &A[0, 0], n, &B[0, 0], n)
    return info


def matmul(const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] C):
    """C = A @ B for C-ordered arrays (computed as C^T = B^T A^T in column-major BLAS)."""
    cdef int m = A.shape[0], k = A.shape[1], n = B.shape[1]
    with nogil:
        gemm(c'N', c'N', n, m, k, 1.0, &B[0, 0], n, &A[0, 0], k, 0.0, &C[0, 0], n)


def jittered_cholesky_factor(floating[:, ::1] A, bint lower=True):
    """Factor the symmetric A in place with _linalg.jittered_cholesky; returns its status.

    A C-ordered symmetric matrix is its own column-major transpose, so on return A.T holds the
    lower factor L (A = L L^T) when ``lower``, and A itself holds it otherwise (the column-major
    upper factor U = L^T read row-major)."""
    cdef int n = A.shape[0], status
    with nogil:
        status = jittered_cholesky(c'L' if lower else c'U', n, &A[0, 0])
    return status
