# Batched biased-ridge kernels over packed tasks (MetaRidge).
#
# Every task t owns rows offsets[t]:offsets[t+1] of the packed design Phi (N, m), row-major, so a
# task's block read as column-major is Phi_t^T (m x n, leading dimension m): that is how the
# BLAS/LAPACK wrappers see it.  The per-task problem is
#
#     w_t = argmin ||Phi_t w - y_t||^2 + lam (w - h)^T D^{-1} (w - h),    D = diag(s^2),
#
# solved through the scaled design Psi = Phi S (S = diag(s)): u = argmin ||Psi u - r0||^2 +
# lam ||u||^2 with r0 = y - Phi h, and w = h + S u.  This never divides by s, so a prior scale
# that shrinks to zero is harmless.  Tasks with n < m use the dual n x n Cholesky of
# K = Psi Psi^T + lam I, the others the primal m x m Cholesky of Psi^T Psi + lam I.
#
# Threads: prange over tasks (solves, gradients) or over fixed blocks of tasks (the m x m
# statistics).  Each task writes its own output slot and block sums are added in block order,
# so results do not depend on the thread count.  A Cholesky that fails (lam tiny against the
# scale of Psi in float32) is retried with a growing jitter (_linalg.jittered_cholesky); the number
# of jitter rounds is returned (a factorisation that failed counts CHOL_RETRIES + 1).

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.math cimport sqrt

from metafast._kernels._rowblocks cimport max_task_size
from metafast._kernels._linalg cimport (
    CHOL_RETRIES, dot, gemv, gemm, jittered_cholesky, potrs, potri, symmetrise, syrk, trsm,
)

import numpy as np

cdef enum:
    ROW_BLOCK = 4096    # meta_stats reads a task of more rows than this in blocks of this many rows


cdef inline void _scaled_design(int n, int m, const floating* Phi, const floating* s,
                                floating* Psi) noexcept nogil:
    """Psi = Phi * s (broadcast over rows)."""
    cdef int i, j
    for i in range(n):
        for j in range(m):
            Psi[i * m + j] = Phi[i * m + j] * s[j]


cdef inline void _prior_residual(int n, int m, const floating* Phi, const floating* y,
                                 const floating* h, floating* r0) noexcept nogil:
    """r0 = y - Phi @ h"""
    cdef int i
    for i in range(n):
        r0[i] = y[i] - _dot4(m, &Phi[i * m], h)


# ---------------------------------------------------------------------------- small dense helpers
# Few-shot tasks have n ~ 5-20 points: for such sizes a LAPACK call costs more in overhead than
# in arithmetic, so the dual path uses these plain loops (row-major lower-triangular L, L[i*n+k],
# k <= i).  The compiler vectorises the inner loops over the m basis functions.

cdef inline floating _dot4(int m, const floating* a, const floating* b) noexcept nogil:
    """np.dot(a, b) with four partial sums (breaks the add latency chain of a plain loop)."""
    cdef int k = 0
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    while k + 4 <= m:
        s0 = s0 + a[k] * b[k]
        s1 = s1 + a[k + 1] * b[k + 1]
        s2 = s2 + a[k + 2] * b[k + 2]
        s3 = s3 + a[k + 3] * b[k + 3]
        k += 4
    while k < m:
        s0 = s0 + a[k] * b[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


cdef inline int _retries(int status) noexcept nogil:
    """Jitter rounds of a jittered_cholesky status, a failure counting CHOL_RETRIES + 1."""
    return status if status >= 0 else CHOL_RETRIES + 1


cdef inline int _gram_chol(int n, int m, const floating* Psi, floating lam, floating* L) noexcept nogil:
    """L = chol(Psi Psi^T + lam I), row-major lower; returns the jitter rounds."""
    cdef int i
    # Gram matrix by BLAS: the column-major upper triangle is the row-major lower one
    syrk(c'U', c'T', n, m, 1.0, Psi, m, 0.0, L, n)
    for i in range(n):
        L[i * n + i] += lam
    return _retries(jittered_cholesky(c'U', n, L))


cdef inline void _forward_rows(int n, int m, const floating* L, floating* X) noexcept nogil:
    """X = L^{-1} X for X (n, m) row-major (m = 1 for a vector)."""
    cdef int i, k, j
    cdef floating lik, inv
    for i in range(n):
        for k in range(i):
            lik = L[i * n + k]
            for j in range(m):
                X[i * m + j] -= lik * X[k * m + j]
        inv = 1.0 / L[i * n + i]
        for j in range(m):
            X[i * m + j] *= inv


cdef inline void _backward_rows(int n, int m, const floating* L, floating* X) noexcept nogil:
    """X = L^{-T} X for X (n, m) row-major."""
    cdef int i, k, j
    cdef floating lki, inv
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            lki = L[k * n + i]
            for j in range(m):
                X[i * m + j] -= lki * X[k * m + j]
        inv = 1.0 / L[i * n + i]
        for j in range(m):
            X[i * m + j] *= inv


cdef inline void _whiten(int n, int m, const floating* L, const floating* Phi,
                         const floating* y, floating* Z, floating* zy) noexcept nogil:
    """Z = L^{-1} Phi (n, m) and zy = L^{-1} y for the row-major lower factor L."""
    cdef int i
    for i in range(n * m):
        Z[i] = Phi[i]
    _forward_rows(n, m, L, Z)
    for i in range(n):
        zy[i] = y[i]
    _forward_rows(n, 1, L, zy)


cdef inline void _inverse_diag(int n, const floating* L, floating* col, floating* diag) noexcept nogil:
    """diag[i] = ((L L^T)^{-1})_ii = ||L^{-1} e_i||^2; col is n scratch entries."""
    cdef int i, r, k
    cdef floating acc, tot
    for i in range(n):
        col[i] = 1.0 / L[i * n + i]
        tot = col[i] * col[i]
        for r in range(i + 1, n):
            acc = 0
            for k in range(i, r):
                acc = acc + L[r * n + k] * col[k]
            col[r] = -acc / L[r * n + r]
            tot = tot + col[r] * col[r]
        diag[i] = tot


cdef int _chol_syrk(char trans, int k, int inner, const floating* Psi, int ld, floating lam,
                    floating* A) noexcept nogil:
    """A = chol(op + lam I) (lower, column-major k x k), op the BLAS syrk product of Psi with
    ``trans`` and inner dimension ``inner``; returns the jitter rounds."""
    cdef int i
    syrk(c'L', trans, k, inner, 1.0, Psi, ld, 0.0, A, k)
    for i in range(k):
        A[i * k + i] += lam
    return _retries(jittered_cholesky(c'L', k, A))


cdef inline int _chol_dual(int n, int m, const floating* Psi, floating lam,
                           floating* K) noexcept nogil:
    """K = chol(Psi Psi^T + lam I) (lower, column-major n x n); returns the jitter retries."""
    return _chol_syrk(c'T', n, m, Psi, m, lam, K)


cdef inline int _chol_primal(int n, int m, const floating* Psi, floating lam,
                             floating* A) noexcept nogil:
    """A = chol(Psi^T Psi + lam I) (lower, column-major m x m); returns the jitter retries."""
    return _chol_syrk(c'N', m, n, Psi, m, lam, A)


cdef inline int _dual_setup(int n, int m, const floating* Phi, const floating* y,
                            const floating* h, const floating* s, floating lam, floating* Psi,
                            floating* r0, floating* L) noexcept nogil:
    """Psi = Phi S, r0 = y - Phi h and L = chol(Psi Psi^T + lam I); returns the jitter retries."""
    _scaled_design(n, m, Phi, s, Psi)
    _prior_residual(n, m, Phi, y, h, r0)
    return _chol_dual(n, m, Psi, lam, L)


cdef int _solve_one(int n, int m, const floating* Phi, const floating* y, const floating* h,
                    const floating* s, floating lam, floating* w, floating* loo,
                    floating* work) noexcept nogil:
    """Biased ridge weights w (m,) of one task, and its LOO residuals loo (n,) unless NULL.

    work: 2*n*m + m*m + 4*n + 2*m entries.  Returns the Cholesky jitter retries.
    """
    cdef floating* Psi = work
    cdef floating* F = Psi + n * m                 # factor (n x n dual with n <= m, m x m primal)
    cdef floating* V = F + m * m                   # primal LOO: L^{-1} Psi^T (m x n)
    cdef floating* r0 = V + n * m + 2 * n
    cdef floating* u = r0 + n + m
    cdef int i, j, tries
    cdef floating si, lev, floor
    if n == 0:
        for j in range(m):
            w[j] = h[j]
        return 0
    _scaled_design(n, m, Phi, s, Psi)
    _prior_residual(n, m, Phi, y, h, r0)
    if n <= m:
        # dual: alpha = (Psi Psi^T + lam I)^{-1} r0,  u = Psi^T alpha
        tries = _gram_chol(n, m, Psi, lam, F)
        _forward_rows(n, 1, F, r0)
        _backward_rows(n, 1, F, r0)                         # r0 <- alpha
        for j in range(m):
            u[j] = 0
        for i in range(n):
            for j in range(m):
                u[j] += Psi[i * m + j] * r0[i]              # u = Psi^T alpha
        if loo != NULL:
            _inverse_diag(n, F, V, V + n)                   # diag of K^{-1}
            for i in range(n):
                loo[i] = r0[i] / V[n + i]                   # e_i = alpha_i / (K^{-1})_ii
    else:
        # primal: (Psi^T Psi + lam I) u = Psi^T r0
        tries = _chol_primal(n, m, Psi, lam, F)
        gemv(c'N', m, n, 1.0, Psi, m, r0, 1, 0.0, u, 1)
        potrs(c'L', m, 1, F, m, u, m)
        if loo != NULL:
            for i in range(n * m):
                V[i] = Psi[i]
            trsm(c'L', c'L', c'N', c'N', m, n, 1.0, F, m, V, m)   # V = L^{-1} Psi^T
            for i in range(n):
                lev = dot(m, &V[i * m], 1, &V[i * m], 1)          # S_ii, the leverage
                si = dot(m, &Psi[i * m], 1, &Psi[i * m], 1)
                floor = lam / (lam + si)                          # exact lower bound of 1 - S_ii
                lev = 1 - lev
                if lev < floor:
                    lev = floor
                loo[i] = (r0[i] - dot(m, &Psi[i * m], 1, u, 1)) / lev
    for j in range(m):
        w[j] = h[j] + s[j] * u[j]
    return tries


def solve_tasks(
    const floating[:, ::1] Phi,          # IN  (N, m) packed support design
    const floating[::1] y,               # IN  (N,) packed support targets
    const long long[::1] offsets,        # IN  (T+1,) task boundaries
    const floating[::1] h,               # IN  (m,) prior mean
    const floating[::1] s,               # IN  (m,) prior scale (sqrt of the diagonal metric)
    double lam,                          # IN  ridge strength (> 0)
    floating[:, ::1] W,                  # OUT (T, m) per-task weights
    floating[::1] loo,                   # OUT (N,) LOO residuals, or an empty array to skip them
    int n_threads=1,
):
    """Per-task biased ridge weights (and leave-one-out residuals); returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, nmax = max_task_size(offsets)
    cdef Py_ssize_t wsize = 2 * nmax * m + m * m + 4 * nmax + 2 * m + 1
    cdef bint want_loo = loo.shape[0] > 0
    cdef int retries = 0, n
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    cdef floating* loo_ptr
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                n_failed += 1
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            loo_ptr = &loo[offsets[t]] if (want_loo and n > 0) else NULL
            retries += _solve_one(n, <int> m, &Phi[offsets[t], 0] if n > 0 else NULL,
                                  &y[offsets[t]] if n > 0 else NULL, &h[0], &s[0],
                                  <floating> lam, &W[t, 0], loo_ptr, work)
        free(work)
    if n_failed:
        raise MemoryError(_scratch_error("solve_tasks", sizeof(floating), wsize, n_threads, 0,
                                         "fewer threads (n_jobs), fewer basis functions or smaller tasks"))
    return retries


def adapt_predict(
    const floating[:, ::1] Phi,          # IN  (n, m) support design of one task
    const floating[::1] y,               # IN  (n,)
    const floating[::1] h,               # IN  (m,)
    const floating[::1] s,               # IN  (m,)
    double lam,
    floating[::1] w,                     # OUT (m,) weights
    const floating[:, ::1] Phi_q,        # IN  (n_q, m) query design (n_q may be 0)
    floating[::1] pred,                  # OUT (n_q,) Phi_q @ w
):
    """One task: the biased ridge solve and the query predictions in one call (no threads)."""
    cdef int n = Phi.shape[0], m = Phi.shape[1], nq = Phi_q.shape[0], i
    cdef floating* work
    cdef int tries = 0
    work = <floating*> malloc((2 * n * m + m * m + 4 * n + 2 * m + 1) * sizeof(floating))
    if work == NULL:
        raise MemoryError(_scratch_error("adapt_predict", sizeof(floating), 2 * n * m + m * m + 4 * n + 2 * m + 1, 1,
                                         0, "fewer basis functions or fewer support points"))
    with nogil:
        tries = _solve_one(n, m, &Phi[0, 0] if n > 0 else NULL, &y[0] if n > 0 else NULL,
                           &h[0], &s[0], <floating> lam, &w[0], NULL, work)
        if nq > 0:
            gemv(c'T', m, nq, 1.0, &Phi_q[0, 0], m, &w[0], 1, 0.0, &pred[0], 1)
    free(work)
    return tries


# ---------------------------------------------------------------------------- meta statistics
cdef void _primal_stats(int m, const floating* L, const floating* C, const floating* c,
                       const floating* s, floating lam, floating* Y, floating* cz, floating* M,
                       floating* b) noexcept nogil:
    """A primal task's share of M (lower triangle) and b from its Gram matrices, C = Phi^T Phi
    (full) and c = Phi^T y, and L = chol(Psi^T Psi + lam I): M += (C - Y^T Y) / lam and
    b += (c - Y^T cz) / lam with Y = L^{-1} S C and cz = L^{-1} S c (kept for the LOO rows)."""
    cdef int i, j
    cdef floating inv_lam = 1.0 / lam
    for j in range(m):
        for i in range(m):
            Y[j * m + i] = s[i] * C[j * m + i]
        cz[j] = s[j] * c[j]
    trsm(c'L', c'L', c'N', c'N', m, m, 1.0, L, m, Y, m)
    trsm(c'L', c'L', c'N', c'N', m, 1, 1.0, L, m, cz, m)
    syrk(c'L', c'T', m, m, -inv_lam, Y, m, 1.0, M, m)
    for j in range(m):
        for i in range(j, m):
            M[j * m + i] += inv_lam * C[j * m + i]
    gemv(c'T', m, m, -inv_lam, Y, m, cz, 1, 1.0, b, 1)
    for j in range(m):
        b[j] += inv_lam * c[j]


cdef void _primal_loo_rows(int rows, int m, const floating* Phi, const floating* y, floating* Psi,
                           const floating* L, const floating* Y, const floating* cz, floating lam,
                           floating inv_sqrt_n, floating* Fm, floating* f, floating* lb) noexcept nogil:
    """LOO rows F / sqrt(n), f / sqrt(n) of ``rows`` rows of a primal task (Psi = their scaled
    design, overwritten with V = L^{-1} Psi^T):  e = diag(1/(1 - S_ii)) (I - Psi A^{-1} Psi^T)
    (y - Phi h), so F^T = Phi^T - Y^T V and f = y - V^T cz, with 1 - S_ii kept above its exact
    lower bound lam / (lam + ||psi_i||^2).  lb: ``rows`` scratch entries."""
    cdef int i, j
    cdef floating lev, si
    for i in range(rows * m):
        Fm[i] = Phi[i]
    for i in range(rows):
        si = dot(m, &Psi[i * m], 1, &Psi[i * m], 1)
        lb[i] = lam / (lam + si)                   # exact lower bound of 1 - S_ii
    trsm(c'L', c'L', c'N', c'N', m, rows, 1.0, L, m, Psi, m)
    gemm(c'T', c'N', m, rows, m, -1.0, Y, m, Psi, m, 1.0, Fm, m)
    for i in range(rows):
        f[i] = y[i] - dot(m, &Psi[i * m], 1, cz, 1)
        lev = 1 - dot(m, &Psi[i * m], 1, &Psi[i * m], 1)
        if lev < lb[i]:
            lev = lb[i]
        lev = inv_sqrt_n / lev
        for j in range(m):
            Fm[i * m + j] *= lev
        f[i] *= lev


cdef int _stats_one(int n, int m, const floating* Phi, const floating* y, const floating* s,
                    floating lam, floating* M, floating* b, floating* Z, floating* zy,
                    floating* Fm, floating* f, bint with_loo, floating* work) noexcept nogil:
    """One task's share of the GLS statistics sum_t Phi^T G Phi, sum_t Phi^T G y (G = (Phi D Phi^T
    + lam I)^{-1}) and of the LOO quadratic sum_t F^T F / n, F^T f / n, f.f / n (the LOO
    residuals at prior mean h are f - F h).

    Dual tasks (n <= m) write whitened rows Z = L^{-1} Phi, zy = L^{-1} y (so that Z^T Z is their
    share) and leave M, b alone; primal tasks add their share to M (lower triangle) and b and
    write zero rows.  Both write the LOO rows F / sqrt(n), f / sqrt(n).  The caller reduces the
    rows of a block of tasks with one syrk.  work: n*m + 3*m*m + 2*(n + m).
    Returns the jitter retries.
    """
    cdef floating* Psi = work
    cdef floating* L = Psi + n * m                 # factor: n x n dual (n <= m), m x m primal
    cdef floating* C = L + m * m                   # m x m
    cdef floating* Y = C + m * m                   # m x m
    cdef floating* c = Y + m * m                   # m
    cdef floating* cz = c + n + m                  # m
    cdef floating* lb = cz + m                     # n
    cdef int i, j, tries
    cdef floating inv_sqrt_n = 1.0 / sqrt(<double> n), pii
    _scaled_design(n, m, Phi, s, Psi)
    if n <= m:
        tries = _gram_chol(n, m, Psi, lam, L)
        _whiten(n, m, L, Phi, y, Z, zy)
        if not with_loo:
            return tries
        # LOO: e = E (y - Phi h), E = diag(P_ii)^{-1} P, P = K^{-1}:  P Phi = L^{-T} Z
        for i in range(n * m):
            Fm[i] = Z[i]
        _backward_rows(n, m, L, Fm)
        for i in range(n):
            f[i] = zy[i]
        _backward_rows(n, 1, L, f)
        _inverse_diag(n, L, C, Y)
        for i in range(n):
            pii = inv_sqrt_n / Y[i]
            f[i] *= pii
            for j in range(m):
                Fm[i * m + j] *= pii
    else:
        tries = _chol_primal(n, m, Psi, lam, L)
        for i in range(n * m):
            Z[i] = 0
        for i in range(n):
            zy[i] = 0
        # C = Phi^T Phi, c = Phi^T y
        syrk(c'L', c'N', m, n, 1.0, Phi, m, 0.0, C, m)
        symmetrise(c'L', m, C)
        gemv(c'N', m, n, 1.0, Phi, m, y, 1, 0.0, c, 1)
        _primal_stats(m, L, C, c, s, lam, Y, cz, M, b)
        if with_loo:
            _primal_loo_rows(n, m, Phi, y, Psi, L, Y, cz, lam, inv_sqrt_n, Fm, f, lb)
    return tries


cdef inline void _reduce_rows(int rows, int m, const floating* R, const floating* r,
                              floating* acc, bint with_sq) noexcept nogil:
    """acc[:m*m] += R^T R (column-major lower), acc[m*m:m*m+m] += R^T r and, with ``with_sq``,
    acc[m*m+m] += r.r over a block's ``rows`` rows R (rows, m) and r (rows,)."""
    if rows <= 0:
        return
    syrk(c'L', c'N', m, rows, 1.0, R, m, 1.0, acc, m)
    gemv(c'N', m, rows, 1.0, R, m, r, 1, 1.0, acc + m * m, 1)
    if with_sq:
        acc[m * m + m] += dot(rows, r, 1, r, 1)


cdef int _stats_large(int n, int m, const floating* Phi, const floating* y, const floating* s,
                      floating lam, floating* M, floating* b, floating* acc_loo, bint with_loo,
                      floating* work) noexcept nogil:
    """``_stats_one``'s primal path for a task of more than ROW_BLOCK rows, read ROW_BLOCK rows at
    a time so that its scratch does not grow with the task: the Gram matrices Psi^T Psi, Phi^T Phi
    and Phi^T y are accumulated over row blocks, and the LOO rows F / sqrt(n), f / sqrt(n) of each
    row block are reduced into acc_loo (Q, q, f.f; as ``_reduce_rows``) at once instead of being
    written out.  work: 2*ROW_BLOCK*m + 3*m*m + 2*m + 2*ROW_BLOCK.  Returns the jitter retries."""
    cdef floating* Psi = work                      # ROW_BLOCK x m
    cdef floating* Fm = Psi + ROW_BLOCK * m        # ROW_BLOCK x m
    cdef floating* L = Fm + ROW_BLOCK * m          # m x m
    cdef floating* C = L + m * m                   # m x m
    cdef floating* Y = C + m * m                   # m x m
    cdef floating* c = Y + m * m                   # m
    cdef floating* cz = c + m                      # m
    cdef floating* f = cz + m                      # ROW_BLOCK
    cdef floating* lb = f + ROW_BLOCK              # ROW_BLOCK
    cdef int i, r0, rows, tries
    cdef floating beta, inv_sqrt_n = 1.0 / sqrt(<double> n)
    r0 = 0
    while r0 < n:
        rows = n - r0 if n - r0 < ROW_BLOCK else ROW_BLOCK
        beta = 0.0 if r0 == 0 else 1.0
        _scaled_design(rows, m, &Phi[r0 * m], s, Psi)
        syrk(c'L', c'N', m, rows, 1.0, Psi, m, beta, L, m)
        syrk(c'L', c'N', m, rows, 1.0, &Phi[r0 * m], m, beta, C, m)
        gemv(c'N', m, rows, 1.0, &Phi[r0 * m], m, &y[r0], 1, beta, c, 1)
        r0 += ROW_BLOCK
    for i in range(m):
        L[i * m + i] += lam
    tries = _retries(jittered_cholesky(c'L', m, L))
    symmetrise(c'L', m, C)
    _primal_stats(m, L, C, c, s, lam, Y, cz, M, b)
    if not with_loo:
        return tries
    r0 = 0
    while r0 < n:
        rows = n - r0 if n - r0 < ROW_BLOCK else ROW_BLOCK
        _scaled_design(rows, m, &Phi[r0 * m], s, Psi)
        _primal_loo_rows(rows, m, &Phi[r0 * m], &y[r0], Psi, L, Y, cz, lam, inv_sqrt_n, Fm, f, lb)
        _reduce_rows(rows, m, Fm, f, acc_loo, True)
        r0 += ROW_BLOCK
    return tries


def _scratch_error(str kernel, Py_ssize_t itemsize, Py_ssize_t per_thread, int n_threads,
                   Py_ssize_t per_block, str what) -> str:
    """The message of a failed scratch allocation: its size and what to change."""
    mib = 1.0 / 2 ** 20
    return (f"metafast: could not allocate the scratch of {kernel}: {per_thread * itemsize * mib:.1f} MiB per "
            f"thread x {n_threads} thread(s)" + (f" + {per_block * itemsize * mib:.1f} MiB for a block of tasks"
                                                 if per_block else "") + f"; use {what}")


def _block_total(slots, Py_ssize_t nb):
    """Sum of the per-block slots in block order (the same whatever the thread count)."""
    total = slots[0].copy()
    for blk in range(1, nb):
        total += slots[blk]
    return total


def _scatter_total(slots, Py_ssize_t nb, Py_ssize_t m, outs):
    """The slots summed in block order, written out in turn: an (m, m) output takes the next m*m
    entries (a column-major lower triangle, made symmetric), a vector output its length."""
    total = _block_total(slots, nb)
    cdef Py_ssize_t pos = 0, size
    for out in outs:
        arr = np.asarray(out)
        if arr.ndim == 2:
            arr[...] = _symmetric(total[pos:pos + m * m], m)
            pos += m * m
        else:
            size = arr.shape[0]
            arr[...] = total[pos:pos + size]
            pos += size


def _symmetric(lower_colmajor, Py_ssize_t m):
    """The full symmetric (m, m) matrix of a column-major lower triangle stored flat."""
    A = lower_colmajor.reshape(m, m)          # column-major lower == row-major upper
    return np.triu(A) + np.triu(A, 1).T


def task_blocks(Py_ssize_t n_tasks):
    """Block size of the statistics reduction: depends on the number of tasks only (so the
    result does not depend on the thread count), at most 256 blocks."""
    return max(16, -(-n_tasks // 256))


def meta_stats(
    const floating[:, ::1] Phi,          # IN  (N, m) packed support design
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[::1] s,               # IN  (m,) prior scale
    double lam,
    floating[:, ::1] M,                  # OUT (m, m) sum_t Phi_t^T G_t Phi_t
    floating[::1] b,                     # OUT (m,)   sum_t Phi_t^T G_t y_t
    floating[:, ::1] Q,                  # OUT (m, m) sum_t F_t^T F_t / n_t  (LOO quadratic)
    floating[::1] q,                     # OUT (m,)   sum_t F_t^T f_t / n_t
    floating[::1] sq,                    # OUT (1,)   sum_t f_t.f_t / n_t
    int n_threads=1,
    bint with_loo=True,                  # IN  False: skip the LOO quadratic (Q, q, sq set to 0)
):
    """Closed-form statistics of the GLS prior mean and of the LOO score, summed over tasks
    (empty tasks skipped).  Returns the jitter retries.

    Tasks are processed in fixed blocks (task_blocks); each block writes its tasks' whitened rows
    to a block buffer, reduces them with one syrk/gemv into its own slot, and the slots are added
    in block order, so the result does not depend on the thread count.
    """
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], nmax = max_task_size(offsets)
    cdef Py_ssize_t bs = task_blocks(T), nb = (T + bs - 1) // bs, blk, t, t0, t1, r0
    cdef Py_ssize_t nsmall = nmax if nmax <= ROW_BLOCK else ROW_BLOCK
    cdef Py_ssize_t wsize = max(nsmall * m + 3 * m * m + 2 * (nsmall + m),
                                (2 * ROW_BLOCK * m + 3 * m * m + 2 * m + 2 * ROW_BLOCK) if nmax > ROW_BLOCK else 0) + 1
    cdef Py_ssize_t slot = 2 * m * m + 2 * m + 1
    cdef int retries = 0, n, rows
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    cdef floating* acc
    cdef floating* rowbuf
    dtype = np.float64 if floating is double else np.float32
    slots_arr = np.zeros((max(nb, 1), slot), dtype=dtype)
    cdef floating[:, ::1] slots = slots_arr
    if T > 0:
        with nogil, parallel(num_threads=n_threads):
            work = <floating*> malloc(wsize * sizeof(floating))
            for blk in prange(nb, schedule='dynamic'):
                t0 = blk * bs
                t1 = min(T, (blk + 1) * bs)
                rows = 0                 # rows of the block's tasks of at most ROW_BLOCK rows
                for t in range(t0, t1):
                    if offsets[t + 1] - offsets[t] <= ROW_BLOCK:
                        rows = rows + <int> (offsets[t + 1] - offsets[t])
                rowbuf = <floating*> malloc((2 * rows * m + 2 * rows + 1) * sizeof(floating))
                if work == NULL or rowbuf == NULL:
                    n_failed += 1
                    free(rowbuf)
                    continue
                acc = &slots[blk, 0]
                r0 = 0
                for t in range(t0, t1):
                    n = <int> (offsets[t + 1] - offsets[t])
                    if n > ROW_BLOCK:    # primal, streamed: reduces its LOO rows itself
                        retries += _stats_large(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &s[0],
                                                <floating> lam, acc, acc + m * m, acc + m * m + m, with_loo, work)
                    elif n > 0:
                        retries += _stats_one(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &s[0],
                                              <floating> lam, acc, acc + m * m,
                                              rowbuf + r0 * m, rowbuf + 2 * rows * m + r0,
                                              rowbuf + rows * m + r0 * m, rowbuf + 2 * rows * m + rows + r0,
                                              with_loo, work)
                        r0 = r0 + n
                # M += Z^T Z, b += Z^T zy, Q += F^T F, q += F^T f, sq += f.f over the block's rows
                _reduce_rows(rows, <int> m, rowbuf, rowbuf + 2 * rows * m, acc, False)
                if with_loo:
                    _reduce_rows(rows, <int> m, rowbuf + rows * m, rowbuf + 2 * rows * m + rows,
                                 acc + m * m + m, True)
                free(rowbuf)
            free(work)
    if n_failed:
        sizes = np.diff(np.asarray(offsets))
        block_rows = np.add.reduceat(np.where(sizes <= ROW_BLOCK, sizes, 0), np.arange(0, T, bs)).max()
        raise MemoryError(_scratch_error("meta_stats", sizeof(floating), wsize, n_threads,
                                         2 * int(block_rows) * (m + 1) + 1,
                                         "fewer basis functions, fewer threads (n_jobs) or smaller chunks of tasks"))
    _scatter_total(slots_arr, nb, m, (M, b, Q, q, sq))
    return retries


# ---------------------------------------------------------------------------- split (transfer-risk) statistics
cdef int _split_one(int n, int m, int nq, const floating* Phi, const floating* y,
                    const floating* Phiq, const floating* yq, const floating* s, floating lam,
                    floating* Mq, floating* zq, floating* work) noexcept nogil:
    """Rows of one task's transfer-risk least-squares problem (docs/derivations.md 1.2):
    Mq = Phi_q A_t / sqrt(n_q), zq = (y_q - Phi_q c_t) / sqrt(n_q), where w_t(h) = A_t h + c_t, so
    the task's query MSE at h is ||Mq h - zq||^2.  Dual form:  Phi_q A_t = Phi_q - Bw Z,
    Phi_q c_t = Bw zy, with Z = L^{-1} Phi, zy = L^{-1} y, Bw^T = L^{-1} Phi D Phi_q^T.
    work: 2*n*m + n*n + n*nq + n entries.  Returns the jitter retries."""
    cdef floating* Psi = work
    cdef floating* L = Psi + n * m
    cdef floating* Z = L + n * n
    cdef floating* BT = Z + n * m                  # (n, nq) row-major
    cdef floating* zy = BT + n * nq
    cdef int i, j, k, tries = 0
    cdef floating inv = 1.0 / sqrt(<double> nq), bki
    for i in range(nq):
        for j in range(m):
            Mq[i * m + j] = Phiq[i * m + j]
        zq[i] = yq[i]
    if n > 0:
        _scaled_design(n, m, Phi, s, Psi)
        tries = _gram_chol(n, m, Psi, lam, L)
        _whiten(n, m, L, Phi, y, Z, zy)
        # BT[k, i] = (Psi_k * s) . Phiq_i  = (Phi D Phi_q^T)[k, i]
        for k in range(n):
            for i in range(nq):
                bki = 0
                for j in range(m):
                    bki = bki + Psi[k * m + j] * s[j] * Phiq[i * m + j]
                BT[k * nq + i] = bki
        _forward_rows(n, nq, L, BT)                # BT = L^{-1} Phi D Phi_q^T
        for k in range(n):
            for i in range(nq):
                bki = BT[k * nq + i]
                zq[i] -= bki * zy[k]
                for j in range(m):
                    Mq[i * m + j] -= bki * Z[k * m + j]
    for i in range(nq):
        zq[i] *= inv
        for j in range(m):
            Mq[i * m + j] *= inv
    return tries


def split_stats(
    const floating[:, ::1] Phi,          # IN  (N, m) packed support design
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[:, ::1] Phi_q,        # IN  (N_q, m) packed query design
    const floating[::1] y_q,             # IN  (N_q,)
    const long long[::1] q_offsets,      # IN  (T+1,)
    const floating[::1] s,               # IN  (m,) prior scale
    double lam,
    floating[:, ::1] A,                  # OUT (m, m) sum_t M_t^T M_t / n_q,t
    floating[::1] b,                     # OUT (m,)   sum_t M_t^T z_t / n_q,t
    floating[::1] c,                     # OUT (1,)   sum_t z_t.z_t / n_q,t
    int n_threads=1,
):
    """Statistics of the transfer-risk objective sum_t ||M_t h - z_t||^2 / n_q,t (tasks without
    query points skipped), reduced in fixed blocks of tasks like meta_stats.  Returns the jitter
    retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1]
    cdef Py_ssize_t nmax = max_task_size(offsets), nqmax = max_task_size(q_offsets)
    cdef Py_ssize_t bs = task_blocks(T), nb = (T + bs - 1) // bs, blk, t, t0, t1, r0
    cdef Py_ssize_t wsize = 2 * nmax * m + nmax * nmax + nmax * nqmax + nmax + 1
    cdef Py_ssize_t slot = m * m + m + 1
    cdef int retries = 0, n, nq, rows
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    cdef floating* acc
    cdef floating* rowbuf
    dtype = np.float64 if floating is double else np.float32
    slots_arr = np.zeros((max(nb, 1), slot), dtype=dtype)
    cdef floating[:, ::1] slots = slots_arr
    if T > 0:
        with nogil, parallel(num_threads=n_threads):
            work = <floating*> malloc(wsize * sizeof(floating))
            for blk in prange(nb, schedule='dynamic'):
                t0 = blk * bs
                t1 = min(T, (blk + 1) * bs)
                rows = <int> (q_offsets[t1] - q_offsets[t0])
                rowbuf = <floating*> malloc((rows * m + rows + 1) * sizeof(floating))
                if work == NULL or rowbuf == NULL:
                    n_failed += 1
                    free(rowbuf)
                    continue
                acc = &slots[blk, 0]
                for t in range(t0, t1):
                    n = <int> (offsets[t + 1] - offsets[t])
                    nq = <int> (q_offsets[t + 1] - q_offsets[t])
                    if nq > 0:
                        r0 = q_offsets[t] - q_offsets[t0]
                        retries += _split_one(n, <int> m, nq, &Phi[offsets[t], 0] if n > 0 else NULL,
                                              &y[offsets[t]] if n > 0 else NULL, &Phi_q[q_offsets[t], 0],
                                              &y_q[q_offsets[t]], &s[0], <floating> lam,
                                              rowbuf + r0 * m, rowbuf + rows * m + r0, work)
                _reduce_rows(rows, <int> m, rowbuf, rowbuf + rows * m, acc, True)
                free(rowbuf)
            free(work)
    if n_failed:
        raise MemoryError("metafast: could not allocate the scratch of split_stats")
    _scatter_total(slots_arr, nb, m, (A, b, c))
    return retries


# ---------------------------------------------------------------------------- gradients
cdef inline void _zero_task_grad(int m, Py_ssize_t n, floating* G, floating* loss, floating* dlam,
                                 floating* dh) noexcept nogil:
    """A task that contributes nothing: zero loss, dL/dlam, dL/dh (m,) and its G rows (n, m)."""
    cdef Py_ssize_t i
    loss[0] = 0
    dlam[0] = 0
    for i in range(m):
        dh[i] = 0
    for i in range(n * m):
        G[i] = 0


cdef int _query_grad_one(int n, int m, int nq, const floating* Phi, const floating* y,
                         const floating* Phiq, const floating* yq, const floating* h,
                         const floating* s, floating lam, floating scale,
                         floating* G, floating* Gq, floating* loss, floating* dlam,
                         floating* dh, floating* work) noexcept nogil:
    """Held-out loss scale * ||Phi_q w - y_q||^2 / n_q of one task and its gradients (dual form):
    G = dL/dPhi = a (D(g - Phi^T p))^T - p w^T, Gq = delta w^T, dL/dlam = -p.a,
    dL/dh = g - Phi^T p, with a = P r0, P = (Phi D Phi^T + lam I)^{-1}, g = Phi_q^T delta,
    p = P Phi D g.  work: n*m + n*n + 3*n + 4*m + nq entries."""
    cdef floating* Psi = work
    cdef floating* L = Psi + n * m
    cdef floating* a = L + n * n
    cdef floating* p = a + n
    cdef floating* wv = p + n
    cdef floating* g = wv + m
    cdef floating* e = g + m                       # D (g - Phi^T p)
    cdef floating* tmp = e + m
    cdef floating* delta = tmp + m + n
    cdef int i, j, tries = 0
    cdef floating acc
    if n > 0:
        tries = _dual_setup(n, m, Phi, y, h, s, lam, Psi, a, L)
        potrs(c'L', n, 1, L, n, a, n)                            # a = P r0
        gemv(c'N', m, n, 1.0, Psi, m, a, 1, 0.0, tmp, 1)         # Psi^T a
        for j in range(m):
            wv[j] = h[j] + s[j] * tmp[j]
    else:
        for j in range(m):
            wv[j] = h[j]
    # query residuals, loss and delta
    acc = 0
    for i in range(nq):
        delta[i] = dot(m, &Phiq[i * m], 1, wv, 1) - yq[i]
        acc = acc + delta[i] * delta[i]
    loss[0] = scale * acc / nq
    for i in range(nq):
        delta[i] = 2 * scale * delta[i] / nq
        for j in range(m):
            Gq[i * m + j] = delta[i] * wv[j]
    gemv(c'N', m, nq, 1.0, Phiq, m, delta, 1, 0.0, g, 1)        # g = Phi_q^T delta
    if n == 0:
        dlam[0] = 0
        for j in range(m):
            dh[j] = g[j]
        return 0
    for j in range(m):
        tmp[j] = s[j] * s[j] * g[j]
    gemv(c'T', m, n, 1.0, Phi, m, tmp, 1, 0.0, p, 1)           # Phi D g
    potrs(c'L', n, 1, L, n, p, n)                              # p = P Phi D g
    gemv(c'N', m, n, 1.0, Phi, m, p, 1, 0.0, tmp, 1)           # Phi^T p
    for j in range(m):
        dh[j] = g[j] - tmp[j]
        e[j] = s[j] * s[j] * dh[j]
    dlam[0] = -dot(n, p, 1, a, 1)
    for i in range(n):
        for j in range(m):
            G[i * m + j] = a[i] * e[j] - p[i] * wv[j]
    return tries


def heldout_grad(
    const floating[:, ::1] Phi,          # IN  (N, m) packed support design
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[:, ::1] Phi_q,        # IN  (N_q, m) packed query design
    const floating[::1] y_q,             # IN  (N_q,)
    const long long[::1] q_offsets,      # IN  (T+1,)
    const floating[::1] h,               # IN  (m,)
    const floating[::1] s,               # IN  (m,)
    double lam,
    double scale,                        # IN  weight of each task's mean query loss (e.g. 1/T)
    floating[:, ::1] G,                  # OUT (N, m) dL/dPhi
    floating[:, ::1] G_q,                # OUT (N_q, m) dL/dPhi_q
    floating[::1] loss,                  # OUT (T,) per-task weighted loss
    floating[::1] dlam,                  # OUT (T,) per-task dL/dlam
    floating[:, ::1] dh,                 # OUT (T, m) per-task dL/dh
    int n_threads=1,
):
    """Held-out (support -> query) squared loss of every task and its gradients (dual solves).
    Tasks with no query points contribute zero.  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, i
    cdef Py_ssize_t nmax = max_task_size(offsets), nqmax = max_task_size(q_offsets)
    cdef Py_ssize_t wsize = nmax * m + nmax * nmax + 4 * nmax + 4 * m + nqmax + 1
    cdef int retries = 0, n, nq
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                n_failed += 1
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            nq = <int> (q_offsets[t + 1] - q_offsets[t])
            if nq == 0:
                _zero_task_grad(<int> m, offsets[t + 1] - offsets[t], &G[0, 0] + offsets[t] * m,
                                &loss[t], &dlam[t], &dh[t, 0])
                continue
            retries += _query_grad_one(
                n, <int> m, nq, &Phi[offsets[t], 0] if n > 0 else NULL,
                &y[offsets[t]] if n > 0 else NULL, &Phi_q[q_offsets[t], 0], &y_q[q_offsets[t]],
                &h[0], &s[0], <floating> lam, <floating> scale,
                &G[offsets[t], 0] if n > 0 else NULL, &G_q[q_offsets[t], 0], &loss[t],
                &dlam[t], &dh[t, 0], work)
        free(work)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of heldout_grad")
    return retries


cdef int _loo_grad_one(int n, int m, const floating* Phi, const floating* y, const floating* h,
                       const floating* s, floating lam, floating scale, floating* G,
                       floating* loss, floating* dlam, floating* dh, floating* work) noexcept nogil:
    """LOO loss scale * sum_i e_i^2 / n of one task (e_i = a_i / P_ii, a = P r0) and its
    gradients: G = 2 B Phi D - q h^T, dL/dlam = tr B, dL/dh = -Phi^T q, where u_i = 2 c e_i / P_ii,
    q = P u and B = P diag(u e) P - (q a^T + a q^T)/2.  work: n*m + 3*n*n + 5*n entries."""
    cdef floating* Psi = work
    cdef floating* P = Psi + n * m
    cdef floating* B = P + n * n
    cdef floating* T1 = B + n * n
    cdef floating* a = T1 + n * n
    cdef floating* ev = a + n
    cdef floating* u = ev + n
    cdef floating* qv = u + n
    cdef floating* tmp = qv + n
    cdef int i, j, tries
    cdef floating c = scale / n, acc = 0, tr = 0
    tries = _dual_setup(n, m, Phi, y, h, s, lam, Psi, a, P)
    potri(c'L', n, P, n)
    symmetrise(c'L', n, P)
    for i in range(n):
        tmp[i] = a[i]
    gemv(c'N', n, n, 1.0, P, n, tmp, 1, 0.0, a, 1)             # a = P r0
    for i in range(n):
        ev[i] = a[i] / P[i * n + i]
        acc = acc + ev[i] * ev[i]
        u[i] = 2 * c * ev[i] / P[i * n + i]
    loss[0] = c * acc
    gemv(c'N', n, n, 1.0, P, n, u, 1, 0.0, qv, 1)              # q = P u
    # T1 = diag(u e) P ; B = P T1 - sym(q a^T)
    for j in range(n):
        for i in range(n):
            T1[j * n + i] = u[i] * ev[i] * P[j * n + i]
    gemm(c'N', c'N', n, n, n, 1.0, P, n, T1, n, 0.0, B, n)
    for j in range(n):
        for i in range(n):
            B[j * n + i] -= 0.5 * (qv[i] * a[j] + a[i] * qv[j])
    for i in range(n):
        tr = tr + B[i * n + i]
    dlam[0] = tr
    # G (row-major n x m) = 2 B Psi S - q h^T ; in col-major G^T = 2 S Psi^T B - h q^T
    gemm(c'N', c'N', m, n, n, 2.0, Psi, m, B, n, 0.0, G, m)
    for i in range(n):
        for j in range(m):
            G[i * m + j] = G[i * m + j] * s[j] - qv[i] * h[j]
    gemv(c'N', m, n, -1.0, Phi, m, qv, 1, 0.0, dh, 1)          # dh = -Phi^T q
    return tries


def loo_grad(
    const floating[:, ::1] Phi,          # IN  (N, m) packed support design
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[::1] h,               # IN  (m,)
    const floating[::1] s,               # IN  (m,)
    double lam,
    double scale,                        # IN  weight of each task's mean LOO loss (e.g. 1/T)
    floating[:, ::1] G,                  # OUT (N, m) dL/dPhi
    floating[::1] loss,                  # OUT (T,)
    floating[::1] dlam,                  # OUT (T,)
    floating[:, ::1] dh,                 # OUT (T, m)
    int n_threads=1,
):
    """Leave-one-out squared loss of every task's support set and its gradients (dual).
    Empty tasks contribute zero; a task with one point is
    scored on predicting it from the prior mean.  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, i
    cdef Py_ssize_t nmax = max_task_size(offsets)
    cdef Py_ssize_t wsize = nmax * m + 3 * nmax * nmax + 5 * nmax + m + 1
    cdef int retries = 0, n
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                n_failed += 1
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            if n == 0:
                _zero_task_grad(<int> m, offsets[t + 1] - offsets[t], &G[0, 0] + offsets[t] * m,
                                &loss[t], &dlam[t], &dh[t, 0])
                continue
            retries += _loo_grad_one(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &h[0],
                                     &s[0], <floating> lam, <floating> scale,
                                     &G[offsets[t], 0], &loss[t], &dlam[t], &dh[t, 0], work)
        free(work)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of loo_grad")
    return retries


# ---------------------------------------------------------------------------- diagonal metric
def envelope_grad(
    const floating[:, ::1] Phi,          # IN  (N, m)
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[::1] h,               # IN  (m,)
    const floating[::1] s,               # IN  (m,) prior scale, D = diag(s^2)
    double lam,
    floating[::1] value,                 # OUT (T,) r0^T P r0 with P = (Phi D Phi^T + lam I)^{-1}
    floating[:, ::1] dd,                 # OUT (T, m) d value / d D_jj = -(phi_j^T P r0)^2
    int n_threads=1,
):
    """The GLS / Moreau-envelope objective of every task and its gradient in the diagonal metric
    (docs/derivations.md 1.5).  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, j
    cdef Py_ssize_t nmax = max_task_size(offsets)
    cdef Py_ssize_t wsize = nmax * m + nmax * nmax + 2 * nmax + m + 1
    cdef int retries = 0, n
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    cdef floating* work
    cdef floating* Psi
    cdef floating* L
    cdef floating* a
    cdef floating* r0
    cdef floating* pg
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                n_failed += 1
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            if n == 0:
                value[t] = 0
                for j in range(m):
                    dd[t, j] = 0
                continue
            Psi = work
            L = Psi + n * m
            a = L + n * n
            r0 = a + n
            pg = r0 + n
            retries += _dual_setup(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &h[0], &s[0],
                                   <floating> lam, Psi, r0, L)
            for j in range(n):
                a[j] = r0[j]
            potrs(c'L', n, 1, L, n, a, n)
            value[t] = dot(n, r0, 1, a, 1)
            gemv(c'N', <int> m, n, 1.0, &Phi[offsets[t], 0], <int> m, a, 1, 0.0, pg, 1)
            for j in range(m):
                dd[t, j] = -pg[j] * pg[j]
        free(work)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of envelope_grad")
    return retries
