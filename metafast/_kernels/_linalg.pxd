# Fused-type facade over scipy.linalg.cython_blas / cython_lapack for the per-task solves.
# Every wrapper is noexcept nogil so it can run inside prange.  Matrices are column-major
# (Fortran) as LAPACK expects; a C-contiguous symmetric matrix is its own transpose, so a
# C-ordered (n, n) SPD buffer can be passed unchanged.

from cython cimport floating
from libc.math cimport fabs, isfinite, log, sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport (
    ddot, sdot, daxpy, saxpy, dgemv, sgemv, dgemm, sgemm, dsyrk, ssyrk, dtrsv, strsv,
    dtrsm, strsm, dtrmm, strmm, dscal, sscal,
)
from scipy.linalg.cython_lapack cimport dpotrf, spotrf, dpotrs, spotrs, dpotri, spotri


cdef inline floating dot(int n, const floating* x, int incx, const floating* y, int incy) noexcept nogil:
    """np.dot(x, y)"""
    if floating is double:
        return ddot(&n, <double*> x, &incx, <double*> y, &incy)
    else:
        return sdot(&n, <float*> x, &incx, <float*> y, &incy)


cdef inline void axpy(int n, floating alpha, const floating* x, int incx, floating* y, int incy) noexcept nogil:
    """y += alpha * x"""
    if floating is double:
        daxpy(&n, &alpha, <double*> x, &incx, y, &incy)
    else:
        saxpy(&n, &alpha, <float*> x, &incx, y, &incy)


cdef inline void scal(int n, floating alpha, floating* x, int incx) noexcept nogil:
    """x *= alpha"""
    if floating is double:
        dscal(&n, &alpha, x, &incx)
    else:
        sscal(&n, &alpha, x, &incx)


cdef inline void gemv(char trans, int m, int n, floating alpha, const floating* A, int lda,
                      const floating* x, int incx, floating beta, floating* y, int incy) noexcept nogil:
    """y = alpha * op(A) @ x + beta * y, A column-major (m, n)."""
    if floating is double:
        dgemv(&trans, &m, &n, &alpha, <double*> A, &lda, <double*> x, &incx, &beta, y, &incy)
    else:
        sgemv(&trans, &m, &n, &alpha, <float*> A, &lda, <float*> x, &incx, &beta, y, &incy)


cdef inline void gemm(char transa, char transb, int m, int n, int k, floating alpha,
                      const floating* A, int lda, const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C, column-major."""
    if floating is double:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*> A, &lda, <double*> B, &ldb, &beta, C, &ldc)
    else:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*> A, &lda, <float*> B, &ldb, &beta, C, &ldc)


cdef inline void syrk(char uplo, char trans, int n, int k, floating alpha, const floating* A, int lda,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(A).T + beta * C (only the `uplo` triangle), column-major."""
    if floating is double:
        dsyrk(&uplo, &trans, &n, &k, &alpha, <double*> A, &lda, &beta, C, &ldc)
    else:
        ssyrk(&uplo, &trans, &n, &k, &alpha, <float*> A, &lda, &beta, C, &ldc)


cdef inline void trsv(char uplo, char trans, char diag, int n, const floating* A, int lda,
                      floating* x, int incx) noexcept nogil:
    """x = op(A)^{-1} x for triangular A."""
    if floating is double:
        dtrsv(&uplo, &trans, &diag, &n, <double*> A, &lda, x, &incx)
    else:
        strsv(&uplo, &trans, &diag, &n, <float*> A, &lda, x, &incx)


cdef inline void trsm(char side, char uplo, char transa, char diag, int m, int n, floating alpha,
                      const floating* A, int lda, floating* B, int ldb) noexcept nogil:
    """B = alpha * op(A)^{-1} B (side 'L') or alpha * B op(A)^{-1} (side 'R')."""
    if floating is double:
        dtrsm(&side, &uplo, &transa, &diag, &m, &n, &alpha, <double*> A, &lda, B, &ldb)
    else:
        strsm(&side, &uplo, &transa, &diag, &m, &n, &alpha, <float*> A, &lda, B, &ldb)


cdef inline void trmm(char side, char uplo, char transa, char diag, int m, int n, floating alpha,
                      const floating* A, int lda, floating* B, int ldb) noexcept nogil:
    """B = alpha * op(A) @ B (side 'L') or alpha * B @ op(A) (side 'R') for triangular A."""
    if floating is double:
        dtrmm(&side, &uplo, &transa, &diag, &m, &n, &alpha, <double*> A, &lda, B, &ldb)
    else:
        strmm(&side, &uplo, &transa, &diag, &m, &n, &alpha, <float*> A, &lda, B, &ldb)


cdef inline int potrf(char uplo, int n, floating* A, int lda) noexcept nogil:
    """In-place Cholesky of an SPD matrix; returns LAPACK's info (> 0: not positive definite)."""
    cdef int info = 0
    if floating is double:
        dpotrf(&uplo, &n, A, &lda, &info)
    else:
        spotrf(&uplo, &n, A, &lda, &info)
    return info


cdef inline int potrs(char uplo, int n, int nrhs, const floating* A, int lda, floating* B, int ldb) noexcept nogil:
    """Solve A X = B given potrf's factor of A; B overwritten by X."""
    cdef int info = 0
    if floating is double:
        dpotrs(&uplo, &n, &nrhs, <double*> A, &lda, B, &ldb, &info)
    else:
        spotrs(&uplo, &n, &nrhs, <float*> A, &lda, B, &ldb, &info)
    return info


cdef inline int potri(char uplo, int n, floating* A, int lda) noexcept nogil:
    """Inverse of an SPD matrix from potrf's factor (only the `uplo` triangle is written)."""
    cdef int info = 0
    if floating is double:
        dpotri(&uplo, &n, A, &lda, &info)
    else:
        spotri(&uplo, &n, A, &lda, &info)
    return info


cdef inline double sum_log_diag(int n, const floating* L) noexcept nogil:
    """sum_i log L_ii of an n x n triangular factor (half the log-determinant of L L^T)."""
    cdef double s = 0
    cdef int i
    for i in range(n):
        s += log(L[i * n + i])
    return s


# ---------------------------------------------------------------------------- jittered Cholesky
# One policy for every per-task factorisation: try A itself; when it is not numerically positive
# definite, add scale * CHOL_EPS * 10^(r-1) to its diagonal for r = 1..CHOL_RETRIES (scale = mean
# |A_ii|; CHOL_EPS = 1e-12 in double, 1e-6 in float).  Status: the jitter rounds used (0: A
# itself), or -1 when it failed: not positive definite even with the largest jitter, not finite,
# or (n > CHOL_STACK only) no memory to keep the diagonal.

cdef enum:
    CHOL_RETRIES = 10     # jittered attempts after the plain one
    CHOL_STACK = 256      # diagonals up to this size are kept on the stack
    CHOL_SMALL = 32       # up to this size a plain loop beats the LAPACK call (few-shot tasks)


cdef inline int _plain_cholesky_rows(int n, floating* A, double jitter) noexcept nogil:
    """Cholesky factor of A + jitter I for a small matrix, in place, row-major lower (= column-
    major upper): dot products along contiguous rows; the strict upper triangle is zeroed.
    Returns 0, or the failing pivot + 1 as potrf does."""
    cdef int i, j, k
    cdef floating acc, d
    for j in range(n):
        d = <floating> (A[j * n + j] + jitter)
        for k in range(j):
            d = d - A[j * n + k] * A[j * n + k]
        if not (d > 0):
            return j + 1
        d = sqrt(d)
        A[j * n + j] = d
        for i in range(j + 1, n):
            acc = A[i * n + j]
            for k in range(j):
                acc = acc - A[i * n + k] * A[j * n + k]
            A[i * n + j] = acc / d
            A[j * n + i] = 0
    return 0


cdef inline int _plain_cholesky_columns(int n, floating* A, double jitter) noexcept nogil:
    """Cholesky factor of A + jitter I for a small matrix, in place, column-major lower: axpy
    updates along contiguous columns; the strict upper triangle is zeroed.  Returns 0, or the
    failing pivot + 1 as potrf does."""
    cdef int i, j, k
    cdef floating ljk, d
    cdef floating* cj
    for j in range(n):
        cj = A + j * n
        for i in range(j):
            cj[i] = 0
        cj[j] = <floating> (cj[j] + jitter)
        for k in range(j):
            ljk = A[j + k * n]
            for i in range(j, n):
                cj[i] = cj[i] - ljk * A[i + k * n]
        d = cj[j]
        if not (d > 0):
            return j + 1
        d = sqrt(d)
        cj[j] = d
        d = 1 / d
        for i in range(j + 1, n):
            cj[i] = cj[i] * d
    return 0


cdef inline void symmetrise(char uplo, int n, floating* A) noexcept nogil:
    """Copy the `uplo` triangle of the column-major n x n A into the other one."""
    cdef int i, j
    if uplo == c'L':
        for j in range(n):
            for i in range(j + 1, n):
                A[j + i * n] = A[i + j * n]
    else:
        for j in range(n):
            for i in range(j + 1, n):
                A[i + j * n] = A[j + i * n]


cdef inline void _zero_triangle(char uplo, int n, floating* A) noexcept nogil:
    """Zero the strict `uplo` triangle of the column-major n x n A."""
    cdef int i, j
    for j in range(n):
        if uplo == c'L':
            for i in range(j + 1, n):
                A[i + j * n] = 0
        else:
            for i in range(j):
                A[i + j * n] = 0


cdef inline int jittered_cholesky(char uplo, int n, floating* A) noexcept nogil:
    """Cholesky factor of the symmetric n x n column-major A (ld n), in place, with the policy
    above: uplo 'L' reads the lower triangle and leaves L (A = L L^T), 'U' the upper one and U
    (A = U^T U).  The other triangle is zero on return.  Returns the jitter rounds used, or -1
    when it failed (A then holds no factor).

    A is kept between attempts: up to CHOL_SMALL (few-shot tasks) as a copy on the stack (copied
    back only for a retry), and a plain loop factors A in place writing the zeros as it goes;
    beyond that in A's other triangle, for LAPACK's potrf, which is cleared afterwards."""
    cdef double stack_diag[CHOL_STACK]
    cdef floating kept[CHOL_SMALL * CHOL_SMALL]
    cdef double* diag = stack_diag
    cdef double scale = 0, jitter = 0
    cdef char other = c'U' if uplo == c'L' else c'L'
    cdef bint small = n <= CHOL_SMALL
    cdef int i, r, info, status = -1
    if n == 0:
        return 0
    if n > CHOL_STACK:
        diag = <double*> malloc(n * sizeof(double))
        if diag == NULL:
            return -1
    for i in range(n):
        diag[i] = A[i + i * n]
        scale += fabs(diag[i])
    if small:
        memcpy(kept, A, n * n * sizeof(floating))
    else:
        symmetrise(uplo, n, A)                       # A's triangle, kept in the other one
    if isfinite(scale):                              # (some LAPACKs factor NaN without error)
        for r in range(CHOL_RETRIES + 1):
            if small and r > 0:
                memcpy(A, kept, n * n * sizeof(floating))   # restore A
            if small and uplo == c'U':               # column-major upper = row-major lower
                info = _plain_cholesky_rows(n, A, jitter)
            elif small:
                info = _plain_cholesky_columns(n, A, jitter)
            else:
                if r > 0:
                    symmetrise(other, n, A)          # restore A's triangle
                    for i in range(n):
                        A[i + i * n] = <floating> (diag[i] + jitter)
                info = potrf(uplo, n, A, n)
            if info == 0:
                status = r
                break
            if r == 0:
                scale = scale / n if scale > 0 else 1.0
                jitter = scale * (1e-12 if floating is double else 1e-6)
            else:
                jitter = jitter * 10
    if status >= 0:                                  # a NaN or inf off the diagonal ends there
        for i in range(n):
            if not isfinite(A[i + i * n]):
                status = -1
                break
    if not small:
        _zero_triangle(other, n, A)
    if diag != stack_diag:
        free(diag)
    return status
