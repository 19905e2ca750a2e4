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

from metafast._kernels._rowblocks cimport max_task_size
from metafast._kernels._linalg cimport (
    dot, gemv, gemm, jittered_cholesky, sum_log_diag, potrs, potri, symmetrise, syrk, trsv, trsm,
)

cdef double LOG_2PI = 1.8378770664093453


# ---------------------------------------------------------------------------- small helpers
cdef inline void _copy(int n, const floating* src, floating* dst) noexcept nogil:
    """dst[:] = src[:]"""
    memcpy(dst, src, n * sizeof(floating))


cdef int _dual_factor(int n, int m, const floating* PhiT, const floating* Sigma, bint sigma_diag,
                      floating s2, floating* Bt, floating* C) noexcept nogil:
    """Bt = Sigma Phi^T (m x n), C = chol_L(Phi Sigma Phi^T + s2 I) (n x n, lower).

    Returns the jittered_cholesky status: jitter rounds used (0 normally), -1 when it failed.
    """
    cdef int i, k
    if sigma_diag:
        for k in range(n):
            for i in range(m):
                Bt[k * m + i] = Sigma[i * m + i] * PhiT[k * m + i]
    else:
        gemm(c'N', c'N', m, n, m, 1.0, Sigma, m, PhiT, m, 0.0, Bt, m)
    gemm(c'T', c'N', n, n, m, 1.0, PhiT, m, Bt, m, 0.0, C, n)     # C = Phi Bt = (Phi^T)^T Bt
    for i in range(n):
        C[i * n + i] += s2
    return jittered_cholesky(c'L', n, C)


cdef int _primal_factor(int n, int m, const floating* PhiT, const floating* Sigma_inv,
                        floating s2, floating* A) noexcept nogil:
    """A = chol_L(Sigma^{-1} + Phi^T Phi / s2) (m x m, lower); jittered_cholesky status."""
    _copy(m * m, Sigma_inv, A)
    syrk(c'L', c'N', m, n, 1.0 / s2, PhiT, m, 1.0, A, m)
    return jittered_cholesky(c'L', m, A)


# ---------------------------------------------------------------------------- E-step (whitened)
# The E-step works in whitened coordinates: with Sigma = U U^T, w = mu + U v and v ~ N(0, I).  The
# caller passes Phi, U and r = y - Phi mu; each block of tasks forms its whitened design
# Phi_w = Phi U with one GEMM into per-thread scratch (cache-resident, never a second N x m array
# in memory: the E-step streams the design once), then per task only an n x n (dual) or m x m
# (primal) Cholesky remains.

cdef void _whiten(int rows, int m, const floating* Phi, const floating* U, bint u_diag,
                  floating* Pw) noexcept nogil:
    """Pw = Phi U for ``rows`` row-major rows (U row-major m x m; diagonal: a column scaling).

    Row-major C = A U is column-major C^T = U^T A^T: one GEMM with U and A read as stored.
    """
    cdef int i, j
    if rows == 0:
        return
    if u_diag:
        for i in range(rows):
            for j in range(m):
                Pw[i * m + j] = Phi[i * m + j] * U[j * m + j]
    else:
        gemm(c'N', c'N', m, rows, m, 1.0, U, m, Phi, m, 0.0, Pw, m)


cdef int _white_dual_factor(int n, int m, const floating* PhiT, floating s2, floating* C) noexcept nogil:
    """C = chol_L(Phi_w Phi_w^T + s2 I); jittered_cholesky status."""
    cdef int i
    syrk(c'L', c'T', n, m, 1.0, PhiT, m, 0.0, C, n)
    for i in range(n):
        C[i * n + i] += s2
    return jittered_cholesky(c'L', n, C)


cdef int _white_task_estep(
    int n, int m, const floating* PhiT, const floating* r, floating s2, bint diag_stats,
    floating* v, floating* Vt, floating* Dloc, double* acc_s, double* logp_out,
    floating* W, floating* z,
) noexcept nogil:
    """One task's whitened E-step.

    Posterior of v: N(v_t, S'_t).  Dual tasks write V_t^T = Phi_w^T L^{-T} (m x n) to ``Vt`` (the
    caller subtracts V^T V for the block in one syrk; S'_t = I - V^T V); primal tasks add S'_t to
    Dloc themselves.  acc_s += [log p_t, noise statistic, dual?, n].  Returns the jitter status.
    """
    cdef int i, status
    cdef double quad, logp, noise_stat, trinv, s2d = s2
    memset(v, 0, m * sizeof(floating))
    if n == 0:
        acc_s[2] += 1
        logp_out[0] = 0
        return 0
    if n < m:
        status = _white_dual_factor(n, m, PhiT, s2, W)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        _copy(n, r, z)
        trsv(c'L', c'N', c'N', n, W, n, z, 1)                       # z = L^{-1} r
        quad = dot(n, z, 1, z, 1)
        logp = -0.5 * quad - sum_log_diag(n, W) - 0.5 * n * LOG_2PI
        _copy(m * n, PhiT, Vt)
        trsm(c'R', c'L', c'T', c'N', m, n, 1.0, W, n, Vt, m)         # Vt = Phi_w^T L^{-T}
        gemv(c'N', m, n, 1.0, Vt, m, z, 1, 0.0, v, 1)               # v_t = V^T z
        trsv(c'L', c'T', c'N', n, W, n, z, 1)                       # a = C^{-1} r
        noise_stat = s2d * s2d * dot(n, z, 1, z, 1)                 # ||y - Phi m_t||^2 = s2^2 ||a||^2
        potri(c'L', n, W, n)
        trinv = 0
        for i in range(n):
            trinv += W[i * n + i]
        noise_stat += s2d * (n - s2d * trinv)                       # tr(Phi S Phi^T)
        acc_s[2] += 1
    else:
        memset(W, 0, m * m * sizeof(floating))
        for i in range(m):
            W[i * m + i] = 1.0
        syrk(c'L', c'N', m, n, 1.0 / s2, PhiT, m, 1.0, W, m)
        status = jittered_cholesky(c'L', m, W)
        if status < 0:
            logp_out[0] = -INFINITY
            return status
        gemv(c'N', m, n, 1.0 / s2, PhiT, m, r, 1, 0.0, v, 1)
        potrs(c'L', m, 1, W, m, v, m)                                # v_t = A^{-1} Phi_w^T r / s2
        _copy(n, r, z)
        gemv(c'T', m, n, -1.0, PhiT, m, v, 1, 1.0, z, 1)
        noise_stat = dot(n, z, 1, z, 1)
        quad = dot(m, v, 1, v, 1)
        logp = -0.5 * (noise_stat / s2d + quad + 2.0 * sum_log_diag(m, W) + n * (LOG_2PI + log(s2d)))
        potri(c'L', m, W, m)                                         # S'_t = A^{-1}
        trinv = 0
        for i in range(m):
            trinv += W[i * m + i]
        noise_stat += s2d * (m - trinv)
        if diag_stats:
            for i in range(m):
                Dloc[i * m + i] += W[i * m + i]
        else:
            for i in range(m * m):
                Dloc[i] += W[i]
    acc_s[0] += logp
    acc_s[1] += noise_stat
    acc_s[3] += n
    logp_out[0] = logp
    return status


def em_stats(
    const floating[:, ::1] Phi,          # IN  (N, m) packed design
    const floating[:, ::1] U,            # IN  (m, m) whitening factor, Sigma = U U^T
    bint u_diag,                         # IN  U is diagonal: the whitening scales the columns
    const floating[::1] r,               # IN  (N,) residual at the prior mean, y - Phi mu
    const long long[::1] offsets,        # IN  (T+1,) task boundaries
    double noise_var,                    # IN  s2 > 0
    bint diag_stats,                     # IN  only the diagonal of the second-moment sum is needed
    int block_size,                      # IN  tasks per accumulation block (fixed, thread-independent)
    int n_threads,                       # IN
    floating[:, ::1] v_out,              # OUT (T, m) whitened posterior means v_t (m_t = mu + U v_t)
    double[::1] logp,                    # OUT (T,) log evidence log p(y_t) per task
    int[::1] status,                     # OUT (T,) jitter rounds per task, -1 when it failed
    double[:, :, ::1] acc_D,             # OUT (n_blocks, m, m) per block sum of S'_t + v_t v_t^T - [dual] I
    double[:, ::1] acc_m,                # OUT (n_blocks, m) per block sum of v_t
    double[:, ::1] acc_s,                # OUT (n_blocks, 4) per block [log p, noise stat, n dual, n points]
):
    """Whitened E-step over all packed tasks (see above); block sums are zeroed here.

    Symmetric sums are written in the column-major lower triangle (row-major upper triangle).
    """
    cdef int m = Phi.shape[1]
    cdef int n_tasks = offsets.shape[0] - 1
    cdef int n_blocks = acc_m.shape[0]
    cdef int b, t, t0, t1, n, i, j, k, nmax = 0, max_rows = 0, rows, block_rows
    cdef long long off, row0
    cdef floating *Pw
    cdef floating *W
    cdef floating *z
    cdef floating *Vbuf
    cdef floating *vbuf
    cdef floating *Dloc
    cdef floating s2 = <floating> noise_var
    cdef double acc
    nmax = <int> max_task_size(offsets)
    for b in range(n_blocks):
        t0 = b * block_size
        t1 = min(t0 + block_size, n_tasks)
        max_rows = max(max_rows, <int> (offsets[t1] - offsets[t0]))
    acc_D[...] = 0
    acc_m[...] = 0
    acc_s[...] = 0
    if n_tasks == 0:
        return
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        Pw = <floating*> malloc((m * max_rows + 1) * sizeof(floating))
        W = <floating*> malloc(m * m * sizeof(floating))
        z = <floating*> malloc((nmax + 1) * sizeof(floating))
        Vbuf = <floating*> malloc((m * max_rows + 1) * sizeof(floating))
        vbuf = <floating*> malloc(m * block_size * sizeof(floating))
        Dloc = <floating*> malloc(m * m * sizeof(floating))
        for b in prange(n_blocks, schedule='dynamic'):
            if (Pw == NULL or W == NULL or z == NULL or Vbuf == NULL
                    or vbuf == NULL or Dloc == NULL):
                n_failed += 1
                continue
            t0 = b * block_size
            t1 = min(t0 + block_size, n_tasks)
            row0 = offsets[t0]
            block_rows = <int> (offsets[t1] - row0)
            _whiten(block_rows, m, &Phi[row0, 0], &U[0, 0], u_diag, Pw)
            memset(Dloc, 0, m * m * sizeof(floating))
            rows = 0
            for t in range(t0, t1):
                off = offsets[t]
                n = <int> (offsets[t + 1] - off)
                status[t] = _white_task_estep(
                    n, m, &Pw[(off - row0) * m], &r[off],
                    s2, diag_stats, &vbuf[(t - t0) * m], &Vbuf[rows * m], Dloc, &acc_s[b, 0], &logp[t],
                    W, z)
                if n > 0 and n < m:
                    rows = rows + n
                _copy(m, &vbuf[(t - t0) * m], &v_out[t, 0])
            # Dloc += sum v v^T - sum V^T V over the block, in two calls
            if diag_stats:
                for i in range(m):
                    acc = 0
                    for k in range(t1 - t0):
                        acc = acc + vbuf[k * m + i] * vbuf[k * m + i]
                    for k in range(rows):
                        acc = acc - Vbuf[k * m + i] * Vbuf[k * m + i]
                    acc_D[b, i, i] += acc + Dloc[i * m + i]
            else:
                syrk(c'L', c'N', m, t1 - t0, 1.0, vbuf, m, 1.0, Dloc, m)
                if rows > 0:
                    syrk(c'L', c'N', m, rows, -1.0, Vbuf, m, 1.0, Dloc, m)
                for j in range(m):
                    for i in range(j, m):
                        acc_D[b, j, i] += Dloc[j * m + i]
            for k in range(t1 - t0):
                for i in range(m):
                    acc_m[b, i] += vbuf[k * m + i]
        free(Pw)
        free(W)
        free(z)
        free(Vbuf)
        free(vbuf)
        free(Dloc)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of em_stats")


# ---------------------------------------------------------------------------- predictive
cdef int _task_condition(
    int n, int m, const floating* PhiT, const floating* y,
    const floating* mu, const floating* Sigma, const floating* Sigma_inv, const floating* h,
    floating s2, bint sigma_diag, floating* mt, floating* W1, floating* W2, floating* v1,
) noexcept nogil:
    """Posterior mean m_t of one task from its n support rows (n may be 0).

    Leaves the factor the predictive and the posterior covariance need: dual (0 < n < m)
    W1 = V^T = Sigma Phi^T L^{-T} (m x n); primal (n >= m) W1 = chol_L(A) (m x m).
    Returns the jitter rounds, or -1 when the factorisation failed.
    """
    cdef int status = 0
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
    return status


cdef void _task_predictive(
    int n, int nq, int m, const floating* PhiqT, const floating* Sigma, floating s2, bint sigma_diag,
    const floating* mt, const floating* W1, floating* pmean, floating* pvar, floating* Q,
) noexcept nogil:
    """Predictive mean phi^T m_t and variance (noise included) at nq query rows, from the
    posterior left by ``_task_condition``.  Q: scratch of m * nq."""
    cdef int i, k
    cdef double acc
    if nq == 0:
        return
    gemv(c'T', m, nq, 1.0, PhiqT, m, mt, 1, 0.0, pmean, 1)
    if n >= m:
        # var = s2 + ||L_A^{-1} phi||^2
        _copy(m * nq, PhiqT, Q)
        trsm(c'L', c'L', c'N', c'N', m, nq, 1.0, W1, m, Q, m)
        for k in range(nq):
            pvar[k] = s2 + dot(m, &Q[k * m], 1, &Q[k * m], 1)
        return
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


cdef int _task_predict(
    int n, int nq, int m, const floating* PhiT, const floating* y, const floating* PhiqT,
    const floating* mu, const floating* Sigma, const floating* Sigma_inv, const floating* h,
    floating s2, bint sigma_diag, floating* mt, floating* pmean, floating* pvar,
    floating* W1, floating* W2, floating* v1, floating* Q,
) noexcept nogil:
    """Posterior of one task from its support rows and the predictive mean/variance at its query rows."""
    cdef int status = _task_condition(n, m, PhiT, y, mu, Sigma, Sigma_inv, h, s2, sigma_diag, mt, W1, W2, v1)
    if status >= 0:
        _task_predictive(n, nq, m, PhiqT, Sigma, s2, sigma_diag, mt, W1, pmean, pvar, Q)
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
    nmax = <int> max_task_size(offsets)
    nqmax = <int> max_task_size(q_offsets)
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        W1 = <floating*> malloc(m * m * sizeof(floating))
        W2 = <floating*> malloc(m * m * sizeof(floating))
        v1 = <floating*> malloc((nmax + m + 1) * sizeof(floating))
        Q = <floating*> malloc((m * nqmax + 1) * sizeof(floating))
        for t in prange(n_tasks, schedule='dynamic', chunksize=16):
            if W1 == NULL or W2 == NULL or v1 == NULL or Q == NULL:
                n_failed += 1
                continue
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
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of predict_tasks")


# ---------------------------------------------------------------------------- one task (adapt)
# MetaBayes.adapt / adapt_predict and BayesTaskRegressor.predict: one task per call, no threads,
# float64 only (a plain double signature: no fused-type dispatch on this latency-bound path).
# The prior is in standardised target units (y / y_scale); inputs and outputs are in the units of y.

cdef int QUERY_BLOCK = 256   # query rows per block: the m x block scratch stays small


cdef void _posterior_cov(int n, int m, const double* Sigma, const double* W1, double* S) noexcept nogil:
    """S = posterior covariance (m x m, both triangles) from the factor _task_condition left in W1:
    Sigma - V^T V when n < m (Sigma when n = 0), A^{-1} from chol(A) otherwise."""
    if n >= m:
        _copy(m * m, W1, S)
        potri(c'L', m, S, m)
    else:
        _copy(m * m, Sigma, S)
        if n > 0:
            syrk(c'L', c'N', m, n, -1.0, W1, m, 1.0, S, m)
    symmetrise(c'L', m, S)


cdef void _predict_from_cov(int nq, int m, const double* PhiqT, const double* coef, const double* S,
                            double s2, bint with_std, double* pmean, double* pstd, double* Q) noexcept nogil:
    """pmean = Phi_q coef; pstd = sqrt(max(phi^T S phi, 0) + s2), in blocks of QUERY_BLOCK rows
    (Q: m * QUERY_BLOCK scratch)."""
    cdef int k, k0 = 0, kb
    cdef double var
    if nq == 0:
        return
    gemv(c'T', m, nq, 1.0, PhiqT, m, coef, 1, 0.0, pmean, 1)
    if not with_std:
        return
    while k0 < nq:
        kb = min(QUERY_BLOCK, nq - k0)
        gemm(c'N', c'N', m, kb, m, 1.0, S, m, &PhiqT[k0 * m], m, 0.0, Q, m)
        for k in range(kb):
            var = dot(m, &Q[k * m], 1, &PhiqT[(k0 + k) * m], 1)
            pstd[k0 + k] = sqrt((var if var > 0 else 0.0) + s2)
        k0 += kb


cdef class OneTaskPrior:
    """A fitted prior in float64 for the one-task kernels, in standardised target units (y /
    y_scale).  Built once per fitted prior, so a call does not re-acquire six buffers."""
    cdef const double[::1] mu              # (m,)
    cdef const double[:, ::1] Sigma        # (m, m)
    cdef const double[:, ::1] Sigma_inv    # (m, m)
    cdef const double[::1] h               # (m,) Sigma^{-1} mu
    cdef readonly double noise_var
    cdef readonly bint sigma_diag
    cdef readonly double y_scale
    cdef readonly int m

    def __init__(self, const double[::1] mu, const double[:, ::1] Sigma, const double[:, ::1] Sigma_inv,
                 const double[::1] h, double noise_var, bint sigma_diag, double y_scale):
        cdef int m = mu.shape[0]
        if not (Sigma.shape[0] == Sigma.shape[1] == Sigma_inv.shape[0] == Sigma_inv.shape[1] == h.shape[0] == m):
            raise ValueError("OneTaskPrior: mu, Sigma, Sigma_inv and h must have shapes (m,), (m, m), (m, m), (m,)")
        if not (noise_var > 0 and y_scale > 0):
            raise ValueError("OneTaskPrior: noise_var and y_scale must be > 0")
        self.mu, self.Sigma, self.Sigma_inv, self.h = mu, Sigma, Sigma_inv, h
        self.noise_var, self.sigma_diag, self.y_scale, self.m = noise_var, sigma_diag, y_scale, m


cdef int _check_shapes(OneTaskPrior prior, int m, int n, int ny) except -1:
    if m != prior.m or ny != n:
        raise ValueError(f"one-task kernel: design has {m} columns for a prior of {prior.m}, "
                         f"or y has {ny} values for {n} rows")
    return 0


cdef bint _all_finite(int n, const double* y) noexcept nogil:
    cdef int i
    for i in range(n):
        if not (y[i] - y[i] == 0):      # false for NaN and +-inf
            return False
    return True


cdef double* _one_task_scratch(int n, int m, int nq):
    """ys (n) | W1 (m*m) | W2 (m*m) | v1 (n) | Q (m * min(nq, QUERY_BLOCK)), or MemoryError."""
    cdef int qb = nq if nq < QUERY_BLOCK else QUERY_BLOCK
    cdef double* work = <double*> malloc((2 * n + 2 * m * m + m * qb + 1) * sizeof(double))
    if work == NULL:
        raise MemoryError("metafast: could not allocate the scratch of a one-task Bayesian kernel")
    return work


cdef int _condition_one(OneTaskPrior prior, const double[:, ::1] Phi, const double[::1] y, double* coef,
                        double* work) noexcept:
    """_task_condition of one task on y / y_scale, in the ``_one_task_scratch`` layout of ``work``
    (ys | W1 | W2 | v1): the jitter rounds, -1 when the factorisation failed, -2 when y holds NaN
    or inf (nothing is computed)."""
    cdef int n = Phi.shape[0], m = Phi.shape[1], i
    cdef double inv = 1.0 / prior.y_scale
    cdef double* ys = work
    cdef double* W1 = ys + n
    cdef double* W2 = W1 + m * m
    cdef double* v1 = W2 + m * m
    with nogil:
        if n > 0 and not _all_finite(n, &y[0]):
            return -2
        for i in range(n):
            ys[i] = y[i] * inv
        return _task_condition(n, m, &Phi[0, 0] if n > 0 else NULL, <const double*> ys, &prior.mu[0],
                               &prior.Sigma[0, 0], &prior.Sigma_inv[0, 0], &prior.h[0], prior.noise_var,
                               prior.sigma_diag, coef, W1, W2, v1)


def adapt_one(
    OneTaskPrior prior,                  # IN  the fitted prior (standardised units)
    const double[:, ::1] Phi,            # IN  (n, m) support design of one task (n may be 0)
    const double[::1] y,                 # IN  (n,) support targets, units of y
    double[::1] coef,                    # OUT (m,) posterior mean of the weights, units of y
    double[:, ::1] cov,                  # OUT (m, m) posterior covariance, units of y squared
):
    """One task's weight posterior N(coef, cov): dual form when n < m, primal otherwise (as
    predict_tasks).  Returns the jitter rounds used, -1 when the factorisation failed, -2 when
    y holds NaN or inf (nothing is computed)."""
    cdef int n = Phi.shape[0], m = Phi.shape[1], i, status
    _check_shapes(prior, m, n, y.shape[0])
    cdef double y_scale = prior.y_scale, c2 = prior.y_scale * prior.y_scale
    cdef double* work = _one_task_scratch(n, m, 0)
    cdef double* W1 = work + n             # the factor _condition_one leaves (see its layout)
    cdef double* S
    status = _condition_one(prior, Phi, y, &coef[0], work)
    with nogil:
        if status >= 0:
            _posterior_cov(n, m, &prior.Sigma[0, 0], W1, &cov[0, 0])
            for i in range(m):
                coef[i] *= y_scale
            S = &cov[0, 0]
            for i in range(m * m):
                S[i] *= c2
    free(work)
    return status


def adapt_predict(
    OneTaskPrior prior,                  # IN  the fitted prior (standardised units)
    const double[:, ::1] Phi,            # IN  (n, m) support design of one task (n may be 0)
    const double[::1] y,                 # IN  (n,) support targets, units of y
    const double[:, ::1] Phi_q,          # IN  (n_q, m) query design (n_q may be 0)
    bint with_std,                       # IN  also the predictive std
    double[::1] coef,                    # OUT (m,) posterior mean of the weights, units of y
    double[::1] pred_mean,               # OUT (n_q,) predictive mean, units of y
    double[::1] pred_std,                # OUT (n_q,) predictive std with noise (untouched unless with_std)
):
    """Condition one task on its support rows and predict its query rows, in one call.

    The std goes through the m x m posterior covariance and one gemm per query block, which for
    a handful of support points is cheaper than the Sigma and V products of predict_tasks.
    Returns the jitter rounds used, -1 when the factorisation failed, -2 when y holds NaN or inf.
    """
    cdef int n = Phi.shape[0], m = Phi.shape[1], nq = Phi_q.shape[0], i, k, status
    _check_shapes(prior, m, n, y.shape[0])
    if Phi_q.shape[1] != m or pred_mean.shape[0] != nq or (with_std and pred_std.shape[0] != nq):
        raise ValueError("adapt_predict: query design or outputs of the wrong shape")
    cdef double y_scale = prior.y_scale
    cdef double* work = _one_task_scratch(n, m, nq)
    cdef double* ys = work
    cdef double* W1 = ys + n
    cdef double* W2 = W1 + m * m
    cdef double* v1 = W2 + m * m
    cdef double* Q = v1 + n
    status = _condition_one(prior, Phi, y, &coef[0], work)
    with nogil:
        if status >= 0:
            if with_std and nq > 0:
                _posterior_cov(n, m, &prior.Sigma[0, 0], W1, W2)     # W2 = S (standardised units)
            _predict_from_cov(nq, m, &Phi_q[0, 0] if nq > 0 else NULL, &coef[0], W2, prior.noise_var, with_std,
                              &pred_mean[0] if nq > 0 else NULL, &pred_std[0] if (nq > 0 and with_std) else NULL, Q)
            for i in range(m):
                coef[i] *= y_scale
            for k in range(nq):
                pred_mean[k] *= y_scale
            if with_std:
                for k in range(nq):
                    pred_std[k] *= y_scale
    free(work)
    return status


def predict_one(
    const double[:, ::1] Phi_q,          # IN  (n_q, m) query design
    const double[::1] coef,              # IN  (m,) posterior mean of the weights
    const double[:, ::1] cov,            # IN  (m, m) posterior covariance (symmetric)
    double noise_var,                    # IN  same units as cov
    bint with_std,                       # IN
    double[::1] pred_mean,               # OUT (n_q,) Phi_q coef
    double[::1] pred_std,                # OUT (n_q,) sqrt(max(phi^T cov phi, 0) + noise_var) (if with_std)
):
    """Posterior predictive of a fitted one-task posterior N(coef, cov)."""
    cdef int nq = Phi_q.shape[0], m = Phi_q.shape[1]
    cdef int qb = nq if nq < QUERY_BLOCK else QUERY_BLOCK
    cdef double* Q
    if nq == 0:
        return
    Q = <double*> malloc((m * qb + 1) * sizeof(double))
    if Q == NULL:
        raise MemoryError("metafast: could not allocate the scratch of predict_one")
    with nogil:
        _predict_from_cov(nq, m, &Phi_q[0, 0], &coef[0], &cov[0, 0], noise_var, with_std,
                          &pred_mean[0], &pred_std[0] if with_std else NULL, Q)
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
        logp_out[0] = -0.5 * quad - sum_log_diag(n, W2) - 0.5 * n * LOG_2PI
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
        logp_out[0] = -0.5 * (quad + 2.0 * sum_log_diag(m, W1) + logdet_sigma
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
    """Gradient of each task's log evidence with respect to its design rows (docs/derivations.md 6.2)."""
    cdef int m = Phi.shape[1]
    cdef int n_tasks = offsets.shape[0] - 1
    cdef int t, n, nmax = 0
    cdef long long off
    cdef floating *W1
    cdef floating *W2
    cdef floating *mt
    cdef floating *v1
    cdef floating s2 = <floating> noise_var
    nmax = <int> max_task_size(offsets)
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        W1 = <floating*> malloc(m * m * sizeof(floating))
        W2 = <floating*> malloc((m * m + 2 * m) * sizeof(floating))
        mt = <floating*> malloc(m * sizeof(floating))
        v1 = <floating*> malloc((nmax + m + 1) * sizeof(floating))
        for t in prange(n_tasks, schedule='dynamic', chunksize=16):
            if W1 == NULL or W2 == NULL or mt == NULL or v1 == NULL:
                n_failed += 1
                continue
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
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of grad_design")
