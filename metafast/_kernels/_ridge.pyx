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
# scale of Psi in float32) is retried with a growing jitter; the number of retries is returned.

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.math cimport sqrt, fabs

from metafast._kernels._linalg cimport dot, gemv, gemm, syrk, trsm, potrf, potrs, potri

import numpy as np

cdef int _NO_MEMORY = 1 << 28  # added to the retry count when a thread's scratch malloc fails


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
        r0[i] = y[i] - dot(m, &Phi[i * m], 1, h, 1)


cdef inline void _symmetrise_lower(int n, floating* A) noexcept nogil:
    """Copy the lower triangle (column-major) of A to its upper triangle."""
    cdef int i, j
    for j in range(n):
        for i in range(j + 1, n):
            A[i * n + j] = A[j * n + i]


cdef int _chol_dual(int n, int m, const floating* Psi, floating lam, floating* K) noexcept nogil:
    """K = chol(Psi Psi^T + lam I) (lower, column-major n x n); returns the jitter retries."""
    cdef int i, info, tries = 0
    cdef floating shift = lam, scale = 0
    while True:
        syrk(c'L', c'T', n, m, 1.0, Psi, m, 0.0, K, n)
        if tries == 0:
            for i in range(n):
                scale = scale + K[i * n + i]
            scale = scale / n if n > 0 else 1.0
            if scale <= 0:
                scale = 1.0
        for i in range(n):
            K[i * n + i] += shift
        info = potrf(c'L', n, K, n)
        if info == 0 or tries >= 12:
            return tries
        tries += 1
        shift = lam + scale * (1e-7 if floating is float else 1e-13) * (10.0 ** (tries - 1))


cdef int _chol_primal(int n, int m, const floating* Psi, floating lam, floating* A) noexcept nogil:
    """A = chol(Psi^T Psi + lam I) (lower, column-major m x m); returns the jitter retries."""
    cdef int i, info, tries = 0
    cdef floating shift = lam, scale = 0
    while True:
        syrk(c'L', c'N', m, n, 1.0, Psi, m, 0.0, A, m)
        if tries == 0:
            for i in range(m):
                scale = scale + A[i * m + i]
            scale = scale / m if m > 0 else 1.0
            if scale <= 0:
                scale = 1.0
        for i in range(m):
            A[i * m + i] += shift
        info = potrf(c'L', m, A, m)
        if info == 0 or tries >= 12:
            return tries
        tries += 1
        shift = lam + scale * (1e-7 if floating is float else 1e-13) * (10.0 ** (tries - 1))


cdef int _solve_one(int n, int m, const floating* Phi, const floating* y, const floating* h,
                    const floating* s, floating lam, floating* w, floating* loo,
                    floating* work) noexcept nogil:
    """Biased ridge weights w (m,) of one task, and its LOO residuals loo (n,) unless NULL.

    work: n*m + max(n, m)^2 + n*m + 2*(n + m) entries.  Returns the Cholesky jitter retries.
    """
    cdef floating* Psi = work
    cdef floating* F = Psi + n * m                 # factor (n x n dual, m x m primal)
    cdef int big = n if n > m else m
    cdef floating* V = F + big * big               # primal LOO: L^{-1} Psi^T (m x n)
    cdef floating* r0 = V + n * m
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
        tries = _chol_dual(n, m, Psi, lam, F)
        potrs(c'L', n, 1, F, n, r0, n)                     # r0 <- alpha
        gemv(c'N', m, n, 1.0, Psi, m, r0, 1, 0.0, u, 1)    # u = Psi^T alpha
        if loo != NULL:
            potri(c'L', n, F, n)                            # lower triangle of K^{-1}
            for i in range(n):
                loo[i] = r0[i] / F[i * n + i]               # e_i = alpha_i / (K^{-1})_ii
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


cdef inline Py_ssize_t _max_size(const long long[::1] offsets) noexcept nogil:
    cdef Py_ssize_t t, best = 0
    for t in range(offsets.shape[0] - 1):
        if offsets[t + 1] - offsets[t] > best:
            best = offsets[t + 1] - offsets[t]
    return best


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
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, nmax = _max_size(offsets)
    cdef Py_ssize_t big = nmax if nmax > m else m
    cdef Py_ssize_t wsize = 2 * nmax * m + big * big + 2 * (nmax + m) + 1
    cdef bint want_loo = loo.shape[0] > 0
    cdef int retries = 0, n
    cdef floating* work
    cdef floating* loo_ptr
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                retries += _NO_MEMORY
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            loo_ptr = &loo[offsets[t]] if (want_loo and n > 0) else NULL
            retries += _solve_one(n, <int> m, &Phi[offsets[t], 0] if n > 0 else NULL,
                                  &y[offsets[t]] if n > 0 else NULL, &h[0], &s[0],
                                  <floating> lam, &W[t, 0], loo_ptr, work)
        free(work)
    if retries >= _NO_MEMORY:
        raise MemoryError("metafast: could not allocate the per-thread scratch of solve_tasks")
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
    cdef int big = n if n > m else m
    cdef floating* work
    cdef int tries = 0
    work = <floating*> malloc((2 * n * m + big * big + 2 * (n + m) + 1) * sizeof(floating))
    if work == NULL:
        raise MemoryError("metafast: could not allocate the scratch of adapt_predict")
    with nogil:
        tries = _solve_one(n, m, &Phi[0, 0] if n > 0 else NULL, &y[0] if n > 0 else NULL,
                           &h[0], &s[0], <floating> lam, &w[0], NULL, work)
        if nq > 0:
            gemv(c'T', m, nq, 1.0, &Phi_q[0, 0], m, &w[0], 1, 0.0, &pred[0], 1)
    free(work)
    return tries


# ---------------------------------------------------------------------------- meta statistics
cdef int _stats_one(int n, int m, const floating* Phi, const floating* y, const floating* s,
                    floating lam, floating* M, floating* b, floating* Q, floating* q,
                    floating* sq, floating* work) noexcept nogil:
    """Add one task's GLS statistics (M += Phi^T G Phi, b += Phi^T G y, G = (Phi D Phi^T +
    lam I)^{-1}) and its LOO quadratic (Q += F^T F / n, q += F^T f / n, sq += f.f / n, where the
    LOO residuals at prior mean h are f - F h) to the m x m / m / 1 accumulators.

    work: 3*n*m + max(n, m)^2 + 2*m*m + 3*(n + m) entries.  Returns the jitter retries.
    """
    cdef floating* Psi = work
    cdef floating* Z = Psi + n * m                 # n x m workspace (col-major m x n)
    cdef floating* Fm = Z + n * m                  # LOO design F, col-major m x n
    cdef int big = n if n > m else m
    cdef floating* L = Fm + n * m                  # factor
    cdef floating* C = L + big * big               # m x m
    cdef floating* Y = C + m * m                   # m x m
    cdef floating* zy = Y + m * m                  # n (+ m)
    cdef floating* f = zy + n + m                  # n
    cdef floating* c = f + n + m                   # m (+ n)
    cdef int i, j, k, tries
    cdef floating inv_n = 1.0 / n, inv_lam = 1.0 / lam, lev, si, floor, pii
    _scaled_design(n, m, Phi, s, Psi)
    if n <= m:
        tries = _chol_dual(n, m, Psi, lam, L)
        # Z = L^{-1} Phi  (col-major: Phi^T L^{-T}, i.e. solve from the right)
        for i in range(n * m):
            Z[i] = Phi[i]
        trsm(c'R', c'L', c'T', c'N', m, n, 1.0, L, n, Z, m)
        for i in range(n):
            zy[i] = y[i]
        trsm(c'L', c'L', c'N', c'N', n, 1, 1.0, L, n, zy, n)
        syrk(c'L', c'N', m, n, 1.0, Z, m, 1.0, M, m)          # M += Z^T Z
        gemv(c'N', m, n, 1.0, Z, m, zy, 1, 1.0, b, 1)         # b += Z^T zy
        # LOO: e = E (y - Phi h), E = diag(P_ii)^{-1} P, P = K^{-1}
        potri(c'L', n, L, n)
        _symmetrise_lower(n, L)
        # F^T = Phi^T P diag(1/P_ii): col-major m x n = (Phi^T)(P) then scale columns
        gemm(c'N', c'N', m, n, n, 1.0, Phi, m, L, n, 0.0, Fm, m)
        for i in range(n):
            f[i] = dot(n, &L[i * n], 1, y, 1)
            pii = L[i * n + i]
            for j in range(m):
                Fm[i * m + j] /= pii
            f[i] /= pii
    else:
        tries = _chol_primal(n, m, Psi, lam, L)
        # C = Phi^T Phi, c = Phi^T y
        syrk(c'L', c'N', m, n, 1.0, Phi, m, 0.0, C, m)
        _symmetrise_lower(m, C)
        gemv(c'N', m, n, 1.0, Phi, m, y, 1, 0.0, c, 1)
        # Y = L^{-1} S C ; zy = L^{-1} S c
        for j in range(m):
            for i in range(m):
                Y[j * m + i] = s[i] * C[j * m + i]
            zy[j] = s[j] * c[j]
        trsm(c'L', c'L', c'N', c'N', m, m, 1.0, L, m, Y, m)
        trsm(c'L', c'L', c'N', c'N', m, 1, 1.0, L, m, zy, m)
        # M += (C - Y^T Y) / lam ;  b += (c - Y^T zy) / lam
        syrk(c'L', c'T', m, m, -inv_lam, Y, m, 1.0, M, m)
        for j in range(m):
            for i in range(j, m):
                M[j * m + i] += inv_lam * C[j * m + i]
        gemv(c'T', m, m, -inv_lam, Y, m, zy, 1, 1.0, b, 1)
        for j in range(m):
            b[j] += inv_lam * c[j]
        # LOO: e = diag(1/(1 - S_ii)) (I - Psi A^{-1} Psi^T) (y - Phi h).  V = L^{-1} Psi^T.
        for i in range(n * m):
            Z[i] = Psi[i]
        trsm(c'L', c'L', c'N', c'N', m, n, 1.0, L, m, Z, m)
        # F^T = Phi^T - Y^T V  (col-major m x n);  f = y - V^T zy
        for i in range(n * m):
            Fm[i] = Phi[i]
        gemm(c'T', c'N', m, n, m, -1.0, Y, m, Z, m, 1.0, Fm, m)
        for i in range(n):
            f[i] = y[i] - dot(m, &Z[i * m], 1, zy, 1)
            lev = dot(m, &Z[i * m], 1, &Z[i * m], 1)
            si = dot(m, &Psi[i * m], 1, &Psi[i * m], 1)
            floor = lam / (lam + si)
            lev = 1 - lev
            if lev < floor:
                lev = floor
            for j in range(m):
                Fm[i * m + j] /= lev
            f[i] /= lev
    syrk(c'L', c'N', m, n, inv_n, Fm, m, 1.0, Q, m)          # Q += F^T F / n
    gemv(c'N', m, n, inv_n, Fm, m, f, 1, 1.0, q, 1)          # q += F^T f / n
    sq[0] += inv_n * dot(n, f, 1, f, 1)
    return tries


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
):
    """Closed-form statistics of the GLS prior mean and of the LOO score, summed over tasks
    (empty tasks skipped).  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], nmax = _max_size(offsets)
    cdef Py_ssize_t bs = task_blocks(T), nb = (T + bs - 1) // bs, blk, t, i, j
    cdef Py_ssize_t big = nmax if nmax > m else m
    cdef Py_ssize_t wsize = 3 * nmax * m + big * big + 2 * m * m + 3 * (nmax + m) + 1
    cdef Py_ssize_t slot = 2 * m * m + 2 * m + 1
    cdef int retries = 0, n
    cdef floating* work
    cdef floating* acc
    dtype = np.float64 if floating is double else np.float32
    slots_arr = np.zeros((max(nb, 1), slot), dtype=dtype)
    cdef floating[:, ::1] slots = slots_arr
    if T > 0:
        with nogil, parallel(num_threads=n_threads):
            work = <floating*> malloc(wsize * sizeof(floating))
            for blk in prange(nb, schedule='dynamic'):
                if work == NULL:
                    retries += _NO_MEMORY
                    continue
                acc = &slots[blk, 0]
                for t in range(blk * bs, min(T, (blk + 1) * bs)):
                    n = <int> (offsets[t + 1] - offsets[t])
                    if n > 0:
                        retries += _stats_one(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]],
                                              &s[0], <floating> lam, acc, acc + m * m,
                                              acc + m * m + m, acc + 2 * m * m + m,
                                              acc + 2 * m * m + 2 * m, work)
            free(work)
    if retries >= _NO_MEMORY:
        raise MemoryError("metafast: could not allocate the per-thread scratch of meta_stats")
    total = slots_arr[0].copy()
    for blk in range(1, nb):
        total += slots_arr[blk]
    Mt = total[:m * m].reshape(m, m)          # column-major lower == row-major upper
    Mt = np.triu(Mt) + np.triu(Mt, 1).T
    Qt = total[m * m + m:2 * m * m + m].reshape(m, m)
    Qt = np.triu(Qt) + np.triu(Qt, 1).T
    np.asarray(M)[...] = Mt
    np.asarray(b)[...] = total[m * m:m * m + m]
    np.asarray(Q)[...] = Qt
    np.asarray(q)[...] = total[2 * m * m + m:2 * m * m + 2 * m]
    sq[0] = total[2 * m * m + 2 * m]
    return retries


# ---------------------------------------------------------------------------- gradients
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
        _scaled_design(n, m, Phi, s, Psi)
        _prior_residual(n, m, Phi, y, h, a)
        tries = _chol_dual(n, m, Psi, lam, L)
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
    cdef Py_ssize_t nmax = _max_size(offsets), nqmax = _max_size(q_offsets)
    cdef Py_ssize_t wsize = nmax * m + nmax * nmax + 4 * nmax + 4 * m + nqmax + 1
    cdef int retries = 0, n, nq
    cdef floating* work
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                retries += _NO_MEMORY
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            nq = <int> (q_offsets[t + 1] - q_offsets[t])
            if nq == 0:
                loss[t] = 0
                dlam[t] = 0
                for i in range(m):
                    dh[t, i] = 0
                for i in range(offsets[t] * m, offsets[t + 1] * m):
                    (&G[0, 0])[i] = 0
                continue
            retries += _query_grad_one(
                n, <int> m, nq, &Phi[offsets[t], 0] if n > 0 else NULL,
                &y[offsets[t]] if n > 0 else NULL, &Phi_q[q_offsets[t], 0], &y_q[q_offsets[t]],
                &h[0], &s[0], <floating> lam, <floating> scale,
                &G[offsets[t], 0] if n > 0 else NULL, &G_q[q_offsets[t], 0], &loss[t],
                &dlam[t], &dh[t, 0], work)
        free(work)
    if retries >= _NO_MEMORY:
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
    _scaled_design(n, m, Phi, s, Psi)
    _prior_residual(n, m, Phi, y, h, a)
    tries = _chol_dual(n, m, Psi, lam, P)
    potri(c'L', n, P, n)
    _symmetrise_lower(n, P)
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
    Tasks with fewer than 2 points contribute zero.  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, i
    cdef Py_ssize_t nmax = _max_size(offsets)
    cdef Py_ssize_t wsize = nmax * m + 3 * nmax * nmax + 5 * nmax + m + 1
    cdef int retries = 0, n
    cdef floating* work
    if T == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(wsize * sizeof(floating))
        for t in prange(T, schedule='static'):
            if work == NULL:
                retries += _NO_MEMORY
                continue
            n = <int> (offsets[t + 1] - offsets[t])
            if n < 2:
                loss[t] = 0
                dlam[t] = 0
                for i in range(m):
                    dh[t, i] = 0
                for i in range(offsets[t] * m, offsets[t + 1] * m):
                    (&G[0, 0])[i] = 0
                continue
            retries += _loo_grad_one(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &h[0],
                                     &s[0], <floating> lam, <floating> scale,
                                     &G[offsets[t], 0], &loss[t], &dlam[t], &dh[t, 0], work)
        free(work)
    if retries >= _NO_MEMORY:
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
    (algorithms.md 1.5).  Returns the jitter retries."""
    cdef Py_ssize_t T = offsets.shape[0] - 1, m = Phi.shape[1], t, j
    cdef Py_ssize_t nmax = _max_size(offsets)
    cdef Py_ssize_t wsize = nmax * m + nmax * nmax + 2 * nmax + m + 1
    cdef int retries = 0, n
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
                retries += _NO_MEMORY
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
            _scaled_design(n, <int> m, &Phi[offsets[t], 0], &s[0], Psi)
            _prior_residual(n, <int> m, &Phi[offsets[t], 0], &y[offsets[t]], &h[0], r0)
            retries += _chol_dual(n, <int> m, Psi, <floating> lam, L)
            for j in range(n):
                a[j] = r0[j]
            potrs(c'L', n, 1, L, n, a, n)
            value[t] = dot(n, r0, 1, a, 1)
            gemv(c'N', <int> m, n, 1.0, &Phi[offsets[t], 0], <int> m, a, 1, 0.0, pg, 1)
            for j in range(m):
                dd[t, j] = -pg[j] * pg[j]
        free(work)
    if retries >= _NO_MEMORY:
        raise MemoryError("metafast: could not allocate the per-thread scratch of envelope_grad")
    return retries
