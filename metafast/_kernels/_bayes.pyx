"""Per-task kernels of hierarchical Bayesian linear regression over packed tasks (MetaBayes).

Model: w_t ~ N(mu, Sigma), y_t | w_t ~ N(Phi_t w_t, s2 I).  Every function works on all tasks of a
packed design matrix at once (rows offsets[t]:offsets[t+1] belong to task t), one task per loop
iteration, ``prange`` over fixed blocks of tasks.  Per task:

- dual form when n_t < m: C = Phi Sigma Phi^T + s2 I (n x n), Cholesky C = L L^T, then
  a = C^{-1}(y - Phi mu), posterior mean m_t = mu + Sigma Phi^T a and
  posterior covariance S_t = Sigma - V^T V with V = L^{-1} Phi Sigma;
- primal form otherwise: A = Sigma^{-1} + Phi^T Phi / s2, m_t = A^{-1}(Sigma^{-1} mu + Phi^T y / s2),
  S_t = A^{-1}.

Thread-count invariance: task t always falls in block t // block_size, each block accumulates its
tasks in order into its own slot, and the caller reduces the blocks in a fixed order.  Statistics
are accumulated in float64 whatever the input precision.

Storage convention: a C-ordered (n, m) row block is read by BLAS as the column-major (m, n) matrix
Phi^T; symmetric accumulators are written in their column-major lower triangle (the row-major
upper triangle), which the caller symmetrises.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport log, sqrt, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from metafast._kernels._linalg cimport dot, gemv, gemm, syrk, trsv, trsm, potrf, potrs, potri

cdef double LOG_2PI = 1.8378770664093453
cdef int MAX_JITTER_TRIES = 8


# ---------------------------------------------------------------------------- small helpers
cdef inline void _copy(int n, const floating* src, floating* dst) noexcept nogil:
    """dst[:] = src[:]"""
    memcpy(dst, src, n * sizeof(floating))


cdef inline double _trace_scale(int n, const floating* A) noexcept nogil:
    """mean |diag(A)| of a column-major (n, n) matrix, at least 1e-300 (scale for jitter)."""
    cdef double s = 0
    cdef int i
    for i in range(n):
        s += A[i * n + i] if A[i * n + i] > 0 else -A[i * n + i]
    s /= n
    return s if s > 1e-300 else 1e-300


cdef int _dual_factor(int n, int m, const floating* PhiT, const floating* Sigma, bint sigma_diag,
                      floating s2, floating* Bt, floating* C) noexcept nogil:
    """Bt = Sigma Phi^T (m x n), C = chol_L(Phi Sigma Phi^T + s2 I) (n x n, lower).

    Returns the number of jitter rounds used (0 normally), or -1 when C stayed singular.
    """
    cdef int i, k, info, tries
    cdef double jitter = 0, scale
    if sigma_diag:
        for k in range(n):
            for i in range(m):
                Bt[k * m + i] = Sigma[i * m + i] * PhiT[k * m + i]
    else:
        gemm(c'N', c'N', m, n, m, 1.0, Sigma, m, PhiT, m, 0.0, Bt, m)
    for tries in range(MAX_JITTER_TRIES + 1):
        # C = Phi Bt = (Phi^T)^T Bt
        gemm(c'T', c'N', n, n, m, 1.0, PhiT, m, Bt, m, 0.0, C, n)
        if tries == 0:
            scale = _trace_scale(n, C) + s2
        for i in range(n):
            C[i * n + i] += s2 + <floating> jitter
        info = potrf(c'L', n, C, n)
        if info == 0:
            return tries
        jitter = scale * (1e-10 if floating is double else 1e-6) * (10.0 ** tries)
    return -1


cdef int _primal_factor(int n, int m, const floating* PhiT, const floating* Sigma_inv,
                        floating s2, floating* A) noexcept nogil:
    """A = chol_L(Sigma^{-1} + Phi^T Phi / s2) (m x m, lower); jitter rounds or -1 as above."""
    cdef int i, info, tries
    cdef double jitter = 0, scale = 0
    for tries in range(MAX_JITTER_TRIES + 1):
        _copy(m * m, Sigma_inv, A)
        syrk(c'L', c'N', m, n, 1.0 / s2, PhiT, m, 1.0, A, m)
        if tries == 0:
            scale = _trace_scale(m, A)
        for i in range(m):
            A[i * m + i] += <floating> jitter
        info = potrf(c'L', m, A, m)
        if info == 0:
            return tries
        jitter = scale * (1e-10 if floating is double else 1e-6) * (10.0 ** tries)
    return -1


cdef inline double _sum_log_diag(int n, const floating* L) noexcept nogil:
    """sum_i log L_ii (half the log-determinant of L L^T)."""
    cdef double s = 0
    cdef int i
    for i in range(n):
        s += log(L[i * n + i])
    return s


# ---------------------------------------------------------------------------- E-step
cdef int _task_estep(
    int n, int m, const floating* PhiT, const floating* y,
    const floating* mu, const floating* Sigma, const floating* Sigma_inv, const floating* h,
    double logdet_sigma, floating s2, bint sigma_diag, bint diag_stats,
    floating* mt, double* acc_D, double* acc_m, double* acc_s, double* logp_out,
    floating* W1, floating* W2, floating* D, floating* v1,
) noexcept nogil:
    """One task's E-step: posterior mean into mt, its M-step statistics added to the block sums.

    acc_D += S_t + m_t m_t^T (dual tasks: minus Sigma, counted in acc_s[2] instead);
    acc_m += m_t; acc_s += [log p_t, ||y - Phi m_t||^2 + tr(Phi S_t Phi^T), dual?, n].
    Returns the jitter status of the factorisation.
    """
    cdef int i, j, k, status
    cdef double quad, logp, noise_stat, trinv, s2d = s2
    _copy(m, mu, mt)
    if n == 0:
        # no data: S_t = Sigma (counted as a dual task), D = mu mu^T
        memset(D, 0, m * m * sizeof(floating))
        if diag_stats:
            for i in range(m):
                D[i * m + i] = mt[i] * mt[i]
        else:
            syrk(c'L', c'N', m, 1, 1.0, mt, m, 0.0, D, m)
        status = 0
        logp = 0
        noise_stat = 0
        acc_s[2] += 1
    elif n < m:
        status = _dual_factor(n, m, PhiT, Sigma, sigma_diag, s2, W1, W2)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        # z = L^{-1} (y - Phi mu)
        _copy(n, y, v1)
        gemv(c'T', m, n, -1.0, PhiT, m, mu, 1, 1.0, v1, 1)
        trsv(c'L', c'N', c'N', n, W2, n, v1, 1)
        quad = dot(n, v1, 1, v1, 1)
        logp = -0.5 * quad - _sum_log_diag(n, W2) - 0.5 * n * LOG_2PI
        # Vt = Bt L^{-T} = (L^{-1} Phi Sigma)^T ; m_t = mu + Vt z
        trsm(c'R', c'L', c'T', c'N', m, n, 1.0, W2, n, W1, m)
        gemv(c'N', m, n, 1.0, W1, m, v1, 1, 1.0, mt, 1)
        # D = m_t m_t^T - V^T V  (lower triangle)
        if diag_stats:
            for i in range(m):
                quad = 0
                for k in range(n):
                    quad = quad + W1[k * m + i] * W1[k * m + i]
                D[i * m + i] = <floating> (mt[i] * mt[i] - quad)
        else:
            syrk(c'L', c'N', m, n, -1.0, W1, m, 0.0, D, m)
            syrk(c'L', c'N', m, 1, 1.0, mt, m, 1.0, D, m)
        # a = L^{-T} z ; residual y - Phi m_t = s2 a ; tr(Phi S Phi^T) = s2 (n - s2 tr C^{-1})
        trsv(c'L', c'T', c'N', n, W2, n, v1, 1)
        noise_stat = s2d * s2d * dot(n, v1, 1, v1, 1)
        potri(c'L', n, W2, n)
        trinv = 0
        for i in range(n):
            trinv += W2[i * n + i]
        noise_stat += s2d * (n - s2d * trinv)
        acc_s[2] += 1
    else:
        status = _primal_factor(n, m, PhiT, Sigma_inv, s2, W1)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        # m_t = A^{-1} (h + Phi^T y / s2),  h = Sigma^{-1} mu
        _copy(m, h, mt)
        gemv(c'N', m, n, 1.0 / s2, PhiT, m, y, 1, 1.0, mt, 1)
        potrs(c'L', m, 1, W1, m, mt, m)
        # rss = ||y - Phi m_t||^2
        _copy(n, y, v1)
        gemv(c'T', m, n, -1.0, PhiT, m, mt, 1, 1.0, v1, 1)
        noise_stat = dot(n, v1, 1, v1, 1)
        # quad = (m_t - mu)^T Sigma^{-1} (m_t - mu)
        for i in range(m):
            v1[i] = mt[i] - mu[i]
        gemv(c'N', m, m, 1.0, Sigma_inv, m, v1, 1, 0.0, D, 1)
        quad = dot(m, v1, 1, D, 1)
        logp = -0.5 * (noise_stat / s2d + quad + 2.0 * _sum_log_diag(m, W1) + logdet_sigma
                       + n * (LOG_2PI + log(s2d)))
        # S_t = A^{-1} (lower); tr(Phi S Phi^T) = s2 (m - tr(S Sigma^{-1}))
        potri(c'L', m, W1, m)
        trinv = 0
        for j in range(m):
            trinv += W1[j * m + j] * Sigma_inv[j * m + j]
            for i in range(j + 1, m):
                trinv += 2.0 * W1[j * m + i] * Sigma_inv[j * m + i]
        noise_stat += s2d * (m - trinv)
        if diag_stats:
            for i in range(m):
                D[i * m + i] = W1[i * m + i] + mt[i] * mt[i]
        else:
            _copy(m * m, W1, D)
            syrk(c'L', c'N', m, 1, 1.0, mt, m, 1.0, D, m)
    # add this task's statistics to its block
    if diag_stats:
        for i in range(m):
            acc_D[i * m + i] += D[i * m + i]
    else:
        for j in range(m):
            for i in range(j, m):
                acc_D[j * m + i] += D[j * m + i]
    for i in range(m):
        acc_m[i] += mt[i]
    acc_s[0] += logp
    acc_s[1] += noise_stat
    acc_s[3] += n
    logp_out[0] = logp
    return status


def em_stats(
    const floating[:, ::1] Phi,          # IN  (N, m) packed design matrix of all tasks
    const floating[::1] y,               # IN  (N,) packed targets
    const long long[::1] offsets,        # IN  (T+1,) task boundaries
    const floating[::1] mu,              # IN  (m,) prior mean
    const floating[:, ::1] Sigma,        # IN  (m, m) prior covariance (SPD)
    const floating[:, ::1] Sigma_inv,    # IN  (m, m) its inverse (used by primal tasks)
    const floating[::1] h,               # IN  (m,) Sigma^{-1} mu
    double logdet_sigma,                 # IN  log|Sigma|
    double noise_var,                    # IN  s2 > 0
    bint sigma_diag,                     # IN  Sigma is diagonal (cheaper products)
    bint diag_stats,                     # IN  only the diagonal of the second-moment sum is needed
    int block_size,                      # IN  tasks per accumulation block (fixed, thread-independent)
    int n_threads,                       # IN
    floating[:, ::1] means,              # OUT (T, m) posterior means m_t
    double[::1] logp,                    # OUT (T,) log evidence log p(y_t) per task
    int[::1] status,                     # OUT (T,) jitter rounds per task, -1 when it failed
    double[:, :, ::1] acc_D,             # OUT (n_blocks, m, m) per-block sum of D_t (lower, col-major)
    double[:, ::1] acc_m,                # OUT (n_blocks, m) per-block sum of m_t
    double[:, ::1] acc_s,                # OUT (n_blocks, 4) per-block [log p, noise stat, n dual, n points]
):
    """E-step over all packed tasks; block sums zeroed here.  See the module docstring."""
    cdef int m = Phi.shape[1]
    cdef int n_tasks = offsets.shape[0] - 1
    cdef int n_blocks = acc_m.shape[0]
    cdef int b, t, t0, t1, n, nmax = 0
    cdef long long off
    cdef floating *W1
    cdef floating *W2
    cdef floating *D
    cdef floating *v1
    cdef floating s2 = <floating> noise_var
    for t in range(n_tasks):
        if offsets[t + 1] - offsets[t] > nmax:
            nmax = <int> (offsets[t + 1] - offsets[t])
    acc_D[...] = 0
    acc_m[...] = 0
    acc_s[...] = 0
    if n_tasks == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        W1 = <floating*> malloc(m * m * sizeof(floating))
        W2 = <floating*> malloc(m * m * sizeof(floating))
        D = <floating*> malloc(m * m * sizeof(floating))
        v1 = <floating*> malloc((nmax + m + 1) * sizeof(floating))
        for b in prange(n_blocks, schedule='dynamic'):
            t0 = b * block_size
            t1 = min(t0 + block_size, n_tasks)
            for t in range(t0, t1):
                off = offsets[t]
                n = <int> (offsets[t + 1] - off)
                status[t] = _task_estep(
                    n, m, &Phi[off, 0] if n > 0 else &mu[0], &y[off] if n > 0 else &mu[0],
                    &mu[0], &Sigma[0, 0], &Sigma_inv[0, 0], &h[0], logdet_sigma, s2,
                    sigma_diag, diag_stats, &means[t, 0], &acc_D[b, 0, 0], &acc_m[b, 0],
                    &acc_s[b, 0], &logp[t], W1, W2, D, v1)
        free(W1)
        free(W2)
        free(D)
        free(v1)


# ---------------------------------------------------------------------------- predictive
cdef int _task_predict(
    int n, int nq, int m, const floating* PhiT, const floating* y, const floating* PhiqT,
    const floating* mu, const floating* Sigma, const floating* Sigma_inv, const floating* h,
    floating s2, bint sigma_diag, floating* mt, floating* pmean, floating* pvar,
    floating* W1, floating* W2, floating* v1, floating* Q,
) noexcept nogil:
    """Posterior of one task from its support rows and the predictive mean/variance at its query rows."""
    cdef int i, k, status = 0
    cdef double acc
    _copy(m, mu, mt)
    if n > 0 and n < m:
        status = _dual_factor(n, m, PhiT, Sigma, sigma_diag, s2, W1, W2)
        if status < 0:
            return status
        _copy(n, y, v1)
        gemv(c'T', m, n, -1.0, PhiT, m, mu, 1, 1.0, v1, 1)
        trsv(c'L', c'N', c'N', n, W2, n, v1, 1)
        trsm(c'R', c'L', c'T', c'N', m, n, 1.0, W2, n, W1, m)     # W1 = Vt
        gemv(c'N', m, n, 1.0, W1, m, v1, 1, 1.0, mt, 1)
    elif n >= m:
        status = _primal_factor(n, m, PhiT, Sigma_inv, s2, W1)    # W1 = chol(A)
        if status < 0:
            return status
        _copy(m, h, mt)
        gemv(c'N', m, n, 1.0 / s2, PhiT, m, y, 1, 1.0, mt, 1)
        potrs(c'L', m, 1, W1, m, mt, m)
    if nq == 0:
        return status
    # predictive mean phi^T m_t
    gemv(c'T', m, nq, 1.0, PhiqT, m, mt, 1, 0.0, pmean, 1)
    if n >= m:
        # var = s2 + ||L_A^{-1} phi||^2
        _copy(m * nq, PhiqT, Q)
        trsm(c'L', c'L', c'N', c'N', m, nq, 1.0, W1, m, Q, m)
        for k in range(nq):
            pvar[k] = s2 + dot(m, &Q[k * m], 1, &Q[k * m], 1)
        return status
    # var = s2 + phi^T Sigma phi - ||V phi||^2
    if sigma_diag:
        for k in range(nq):
            acc = 0
            for i in range(m):
                acc = acc + Sigma[i * m + i] * PhiqT[k * m + i] * PhiqT[k * m + i]
            pvar[k] = <floating> acc
    else:
        gemm(c'N', c'N', m, nq, m, 1.0, Sigma, m, PhiqT, m, 0.0, Q, m)
        for k in range(nq):
            pvar[k] = dot(m, &Q[k * m], 1, &PhiqT[k * m], 1)
    if n > 0:
        # U = Vt^T Phiq^T (n x nq)
        gemm(c'T', c'N', n, nq, m, 1.0, W1, m, PhiqT, m, 0.0, Q, n)
        for k in range(nq):
            pvar[k] -= dot(n, &Q[k * n], 1, &Q[k * n], 1)
    for k in range(nq):
        if pvar[k] < 0:
            pvar[k] = 0
        pvar[k] += s2
    return status


def predict_tasks(
    const floating[:, ::1] Phi,          # IN  (N_s, m) packed support design
    const floating[::1] y,               # IN  (N_s,) support targets
    const long long[::1] offsets,        # IN  (T+1,) support boundaries
    const floating[:, ::1] Phi_q,        # IN  (N_q, m) packed query design
    const long long[::1] q_offsets,      # IN  (T+1,) query boundaries
    const floating[::1] mu,              # IN  (m,)
    const floating[:, ::1] Sigma,        # IN  (m, m)
    const floating[:, ::1] Sigma_inv,    # IN  (m, m)
    const floating[::1] h,               # IN  (m,) Sigma^{-1} mu
    double noise_var,                    # IN
    bint sigma_diag,                     # IN
    int n_threads,                       # IN
    floating[:, ::1] means,              # OUT (T, m) posterior means
    floating[::1] pred_mean,             # OUT (N_q,) predictive means
    floating[::1] pred_var,              # OUT (N_q,) predictive variances (noise included)
    int[::1] status,                     # OUT (T,) jitter rounds, -1 on failure
):
    """Condition every task on its support rows and predict its query rows, all tasks at once."""
    cdef int m = Phi.shape[1]
    cdef int n_tasks = offsets.shape[0] - 1
    cdef int t, n, nq, nmax = 0, nqmax = 0
    cdef long long off, qoff
    cdef floating *W1
    cdef floating *W2
    cdef floating *v1
    cdef floating *Q
    cdef floating s2 = <floating> noise_var
    for t in range(n_tasks):
        nmax = max(nmax, <int> (offsets[t + 1] - offsets[t]))
        nqmax = max(nqmax, <int> (q_offsets[t + 1] - q_offsets[t]))
    with nogil, parallel(num_threads=n_threads):
        W1 = <floating*> malloc(m * m * sizeof(floating))
        W2 = <floating*> malloc(m * m * sizeof(floating))
        v1 = <floating*> malloc((nmax + m + 1) * sizeof(floating))
        Q = <floating*> malloc((m * nqmax + 1) * sizeof(floating))
        for t in prange(n_tasks, schedule='dynamic', chunksize=16):
            off = offsets[t]
            qoff = q_offsets[t]
            n = <int> (offsets[t + 1] - off)
            nq = <int> (q_offsets[t + 1] - qoff)
            status[t] = _task_predict(
                n, nq, m, &Phi[off, 0] if n > 0 else &mu[0], &y[off] if n > 0 else &mu[0],
                &Phi_q[qoff, 0] if nq > 0 else &mu[0], &mu[0], &Sigma[0, 0], &Sigma_inv[0, 0],
                &h[0], s2, sigma_diag, &means[t, 0],
                &pred_mean[qoff] if nq > 0 else &mu[0], &pred_var[qoff] if nq > 0 else &mu[0],
                W1, W2, v1, Q)
        free(W1)
        free(W2)
        free(v1)
        free(Q)


# ---------------------------------------------------------------------------- gradient w.r.t. Phi
cdef int _task_grad(
    int n, int m, const floating* PhiT, const floating* y,
    const floating* mu, const floating* Sigma, const floating* Sigma_inv, const floating* h,
    double logdet_sigma, floating s2, bint sigma_diag, floating* GT, double* logp_out,
    floating* W1, floating* W2, floating* mt, floating* v1,
) noexcept nogil:
    """G = dlog p_t / dPhi_t = a m_t^T - C^{-1} Phi Sigma, written as G^T (m x n) into GT.

    Dual (n < m): C^{-1} Phi Sigma from the n x n Cholesky.  Primal: a = (y - Phi m_t)/s2 and
    C^{-1} Phi Sigma = Phi S_t / s2 (Woodbury), so no n x n matrix is formed.
    """
    cdef int i, k, status
    cdef double quad
    if n == 0:
        logp_out[0] = 0
        return 0
    _copy(m, mu, mt)
    if n < m:
        status = _dual_factor(n, m, PhiT, Sigma, sigma_diag, s2, W1, W2)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        _copy(n, y, v1)
        gemv(c'T', m, n, -1.0, PhiT, m, mu, 1, 1.0, v1, 1)
        trsv(c'L', c'N', c'N', n, W2, n, v1, 1)
        quad = dot(n, v1, 1, v1, 1)
        logp_out[0] = -0.5 * quad - _sum_log_diag(n, W2) - 0.5 * n * LOG_2PI
        trsv(c'L', c'T', c'N', n, W2, n, v1, 1)                       # v1 = a
        gemv(c'N', m, n, 1.0, W1, m, v1, 1, 1.0, mt, 1)              # m_t = mu + Bt a
        # GT = -Bt C^{-1} + m_t a^T
        _copy(m * n, W1, GT)
        trsm(c'R', c'L', c'T', c'N', m, n, 1.0, W2, n, GT, m)
        trsm(c'R', c'L', c'N', c'N', m, n, -1.0, W2, n, GT, m)
    else:
        status = _primal_factor(n, m, PhiT, Sigma_inv, s2, W1)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        _copy(m, h, mt)
        gemv(c'N', m, n, 1.0 / s2, PhiT, m, y, 1, 1.0, mt, 1)
        potrs(c'L', m, 1, W1, m, mt, m)
        _copy(n, y, v1)
        gemv(c'T', m, n, -1.0, PhiT, m, mt, 1, 1.0, v1, 1)              # residual
        quad = dot(n, v1, 1, v1, 1) / s2
        for i in range(m):
            W2[i] = mt[i] - mu[i]
        gemv(c'N', m, m, 1.0, Sigma_inv, m, W2, 1, 0.0, &W2[m], 1)
        quad = quad + dot(m, W2, 1, &W2[m], 1)
        logp_out[0] = -0.5 * (quad + 2.0 * _sum_log_diag(m, W1) + logdet_sigma
                              + n * (LOG_2PI + log(<double> s2)))
        for k in range(n):
            v1[k] = v1[k] / s2                                         # a
        # GT = -(S Phi^T) / s2 + m_t a^T, S = A^{-1}
        _copy(m * n, PhiT, GT)
        potrs(c'L', m, n, W1, m, GT, m)
        for i in range(m * n):
            GT[i] = -GT[i] / s2
    for k in range(n):
        for i in range(m):
            GT[k * m + i] += mt[i] * v1[k]
    return status


def grad_design(
    const floating[:, ::1] Phi,          # IN  (N, m) packed design
    const floating[::1] y,               # IN  (N,)
    const long long[::1] offsets,        # IN  (T+1,)
    const floating[::1] mu,              # IN  (m,)
    const floating[:, ::1] Sigma,        # IN  (m, m)
    const floating[:, ::1] Sigma_inv,    # IN  (m, m)
    const floating[::1] h,               # IN  (m,) Sigma^{-1} mu
    double logdet_sigma,                 # IN
    double noise_var,                    # IN
    bint sigma_diag,                     # IN
    int n_threads,                       # IN
    floating[:, ::1] G,                  # OUT (N, m) dlog p_t / dPhi_t for every packed row
    double[::1] logp,                    # OUT (T,) log evidence per task
    int[::1] status,                     # OUT (T,)
):
    """Gradient of each task's log evidence with respect to its design rows (algorithms.md 6.2)."""
    cdef int m = Phi.shape[1]
    cdef int n_tasks = offsets.shape[0] - 1
    cdef int t, n, nmax = 0
    cdef long long off
    cdef floating *W1
    cdef floating *W2
    cdef floating *mt
    cdef floating *v1
    cdef floating s2 = <floating> noise_var
    for t in range(n_tasks):
        nmax = max(nmax, <int> (offsets[t + 1] - offsets[t]))
    with nogil, parallel(num_threads=n_threads):
        W1 = <floating*> malloc(m * m * sizeof(floating))
        W2 = <floating*> malloc((m * m + 2 * m) * sizeof(floating))
        mt = <floating*> malloc(m * sizeof(floating))
        v1 = <floating*> malloc((nmax + m + 1) * sizeof(floating))
        for t in prange(n_tasks, schedule='dynamic', chunksize=16):
            off = offsets[t]
            n = <int> (offsets[t + 1] - off)
            status[t] = _task_grad(
                n, m, &Phi[off, 0] if n > 0 else &mu[0], &y[off] if n > 0 else &mu[0],
                &mu[0], &Sigma[0, 0], &Sigma_inv[0, 0], &h[0], logdet_sigma, s2, sigma_diag,
                &G[off, 0] if n > 0 else &mt[0], &logp[t], W1, W2, mt, v1)
        free(W1)
        free(W2)
        free(mt)
        free(v1)
