"""Per-task, per-component kernels for a mixture-of-Gaussians prior over basis weights.

Model: w_t ~ sum_c pi_c N(mu_c, Sigma_c), y_t | w_t ~ N(Phi_t w_t, s2 I).  For task t and
component c everything is done in the n x n dual form (n = the task's number of points):

    A_tc  = Phi_t L_c                    (L_c the lower Cholesky factor of Sigma_c)
    C_tc  = A_tc A_tc^T + s2 I = L_tc L_tc^T
    z_tc  = L_tc^{-1} (y_t - Phi_t mu_c),    a_tc = C_tc^{-1} (y_t - Phi_t mu_c)
    log N(y_t; Phi_t mu_c, C_tc) = -(|z|^2 + log|C_tc| + n log 2 pi) / 2
    posterior:  m_tc = mu_c + Sigma_c u_tc,   u_tc = Phi_t^T a_tc
                S_tc = Sigma_c - Sigma_c P_tc Sigma_c,   P_tc = Phi_t^T C_tc^{-1} Phi_t

The EM sufficient statistics per component are r-weighted sums of u_tc and of
G_tc = u_tc u_tc^T - P_tc (the M-step turns them into mu_c, Sigma_c), and the noise statistic
||y - Phi m_tc||^2 + tr(Phi S_tc Phi^T) = s2^2 |a|^2 + n s2 - s2^2 tr(C_tc^{-1}).

Memory layout: a task's rows of the C-ordered packed design (n, m) are, read column-major, the
m x n matrix Phi_t^T (leading dimension m); a C-ordered lower factor L_c is, read column-major,
the upper factor U_c = L_c^T.  Accumulators are per *block* of tasks (the blocks are fixed by the
caller, independent of the thread count), so results are identical for any n_threads.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.math cimport log, exp, sqrt, INFINITY

from metafast._kernels._rowblocks cimport max_task_size
from metafast._kernels._linalg cimport (
    dot, gemv, gemm, jittered_cholesky, sum_log_diag, potri, symmetrise, syrk, trmm, trsv, trsm,
)

cdef double LOG_2PI = 1.8378770664093453


cdef int _factor(int n, int m,
                 const floating* Pt,      # IN  (m x n, ld m) Phi_t^T
                 const floating* U,       # IN  (m x m, ld m) upper factor U = L^T of Sigma_c
                 const floating* mu,      # IN  (m,)
                 const floating* y,       # IN  (n,)
                 double s2,               # IN  noise variance
                 floating* At,            # OUT (m x n, ld m) A^T = L^T Phi_t^T
                 floating* Cm,            # OUT (n x n, ld n) lower Cholesky factor of C_tc
                 floating* z,             # OUT (n,) L_tc^{-1} (y - Phi_t mu_c)
                 double* loglik,          # OUT log N(y_t; Phi_t mu_c, C_tc)
                 ) noexcept nogil:
    """Factor one task under one component; returns the number of jitter retries (-1: failed)."""
    memcpy(At, Pt, m * n * sizeof(floating))
    trmm(c'L', c'U', c'N', c'N', m, n, <floating> 1.0, U, m, At, m)
    return _factor_At(n, m, Pt, mu, y, s2, At, Cm, z, loglik)


cdef int _factor_At(int n, int m, const floating* Pt, const floating* mu, const floating* y, double s2,
                    const floating* At,   # IN  (m x n, ld m) A^T = L^T Phi_t^T, already computed
                    floating* Cm, floating* z, double* loglik) noexcept nogil:
    """_factor given A^T (so A^T of many tasks can come from one level-3 call)."""
    cdef int i, status
    syrk(c'L', c'T', n, m, <floating> 1.0, At, m, <floating> 0.0, Cm, n)
    for i in range(n):
        Cm[i + i * n] = Cm[i + i * n] + <floating> s2
    status = jittered_cholesky(c'L', n, Cm)
    if status < 0:
        loglik[0] = -INFINITY
        return status
    memcpy(z, y, n * sizeof(floating))
    gemv(c'T', m, n, <floating> -1.0, Pt, m, mu, 1, <floating> 1.0, z, 1)
    trsv(c'L', c'N', c'N', n, Cm, n, z, 1)
    loglik[0] = -0.5 * (dot(n, z, 1, z, 1) + 2.0 * sum_log_diag(n, Cm) + n * LOG_2PI)
    return status


cdef double _normalise(int n_comp, const floating* log_w, const double* ll, floating* resp) noexcept nogil:
    """resp_c = pi_c N_c / sum_k pi_k N_k, by log-sum-exp; returns log sum_k pi_k N_k.

    (A return value, not an out-pointer: a prange variable only written through a pointer would
    be shared between threads.)"""
    cdef int c
    cdef double mx = -INFINITY, s = 0.0, v, log_ev
    for c in range(n_comp):
        v = log_w[c] + ll[c]
        if v > mx:
            mx = v
    if mx == -INFINITY:
        for c in range(n_comp):
            resp[c] = 0
        return -INFINITY
    for c in range(n_comp):
        s = s + exp(log_w[c] + ll[c] - mx)
    log_ev = mx + log(s)
    for c in range(n_comp):
        resp[c] = <floating> exp(log_w[c] + ll[c] - log_ev)
    return log_ev


cdef void _accumulate(int n, int m, const floating* Pt, const floating* Cm, const floating* z,
                      double s2, double r,
                      floating* a, floating* Cinv,   # scratch (n,), (n x n)
                      floating* Xs,                  # OUT (m x n, ld m) sqrt(r) Phi^T L_tc^{-T}
                      floating* us,                  # OUT (m,) sqrt(r) u
                      floating* sum_u, double* noise) noexcept nogil:
    """This task's share of the component statistics: sum_u += r u, noise += r (s2^2 |a|^2 + n s2
    - s2^2 tr C^{-1}), and the columns Xs, us whose outer products give r (u u^T - P) later."""
    cdef int i
    cdef double tr = 0.0, sr = sqrt(r)
    memcpy(a, z, n * sizeof(floating))
    trsv(c'L', c'T', c'N', n, Cm, n, a, 1)                          # a = C^{-1} r
    gemv(c'N', m, n, <floating> sr, Pt, m, a, 1, <floating> 0.0, us, 1)   # sqrt(r) Phi^T a
    memcpy(Xs, Pt, m * n * sizeof(floating))
    trsm(c'R', c'L', c'T', c'N', m, n, <floating> sr, Cm, n, Xs, m)  # sqrt(r) Phi^T L^{-T}
    for i in range(m):
        sum_u[i] = sum_u[i] + <floating> (sr * us[i])
    memcpy(Cinv, Cm, n * n * sizeof(floating))
    potri(c'L', n, Cinv, n)
    for i in range(n):
        tr = tr + Cinv[i + i * n]
    noise[0] = noise[0] + r * (s2 * s2 * dot(n, a, 1, a, 1) + n * s2 - s2 * s2 * tr)


def em_step(
    const floating[:, ::1] Phi,            # IN  (N, m) packed support design of all tasks
    const floating[::1] y,                 # IN  (N,)
    const long long[::1] offsets,          # IN  (T+1,) task row ranges
    const floating[:, :, ::1] chol,        # IN  (C, m, m) lower Cholesky factors of Sigma_c
    const floating[:, ::1] means,          # IN  (C, m)
    const floating[::1] log_weights,       # IN  (C,) log pi_c (-inf allowed, not all)
    double noise_var,                      # IN  s2 > 0
    const long long[::1] block_offsets,    # IN  (B+1,) task ranges of the accumulation blocks
    floating[:, ::1] log_lik,              # OUT (T, C) log N(y_t; Phi_t mu_c, C_tc)
    floating[:, ::1] resp,                 # OUT (T, C) responsibilities
    floating[::1] log_ev,                  # OUT (T,) log sum_c pi_c N(y_t; ...)
    int[::1] n_jitter,                     # OUT (T,) jitter retries (max over c; -1 failed)
    floating[:, ::1] sum_r,                # OUT (B, C) sum_t r_tc (zeroed by the caller)
    floating[:, :, ::1] sum_u,             # OUT (B, C, m) sum_t r_tc u_tc (zeroed)
    floating[:, :, :, ::1] sum_G,          # OUT (B, C, m, m) sum_t r_tc G_tc, one triangle (zeroed)
    floating[::1] sum_noise,               # OUT (B,) sum_t sum_c r_tc noise_tc (zeroed)
    double resp_floor,                     # IN  r_tc below this adds nothing to sum_u/G/noise
    bint accumulate,                       # IN  False: E-step outputs only
    int chunk_rows,                        # IN  rows per level-3 call (tasks are never split)
    int n_threads,
):
    """One E-step (responsibilities, log evidence) and the M-step statistics over all tasks.

    Inside a block, tasks go in chunks of about chunk_rows rows: A^T = L_c^T Phi^T of the whole
    chunk is one trmm per component, and the chunk's r-weighted outer products are two syrk per
    component, so the O(n m^2) work runs as large level-3 calls."""
    cdef int n_tasks = offsets.shape[0] - 1, m = Phi.shape[1], n_comp = means.shape[0]
    cdef int n_blocks = block_offsets.shape[0] - 1
    cdef int b, t, t0, t1, c, n, n_max = 0, tries, worst, rows_max, rows, n_x, n_u
    cdef long long start, cstart
    cdef double r, lev, noise
    cdef floating* At_all
    cdef floating* Cm_all
    cdef floating* z_all
    cdef floating* a
    cdef floating* Cinv
    cdef floating* Xs
    cdef floating* Us
    cdef int* n_xc
    cdef int* n_uc
    cdef double* ll
    if n_tasks == 0 or n_comp == 0:
        return
    n_max = max(<int> max_task_size(offsets), 1)
    chunk_rows = max(chunk_rows, 1)
    rows_max = max(chunk_rows, n_max) + n_max    # a chunk stops once it reaches chunk_rows
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        At_all = <floating*> malloc(n_comp * m * rows_max * sizeof(floating))
        Cm_all = <floating*> malloc(n_comp * n_max * n_max * sizeof(floating))
        z_all = <floating*> malloc(n_comp * n_max * sizeof(floating))
        a = <floating*> malloc(n_max * sizeof(floating))
        Cinv = <floating*> malloc(n_max * n_max * sizeof(floating))
        Xs = <floating*> malloc(n_comp * m * rows_max * sizeof(floating))
        Us = <floating*> malloc(n_comp * m * rows_max * sizeof(floating))
        n_xc = <int*> malloc(n_comp * sizeof(int))
        n_uc = <int*> malloc(n_comp * sizeof(int))
        ll = <double*> malloc(n_comp * sizeof(double))
        for b in prange(n_blocks, schedule="dynamic"):
            if (At_all == NULL or Cm_all == NULL or z_all == NULL or a == NULL or Cinv == NULL or Xs == NULL
                    or Us == NULL or n_xc == NULL or n_uc == NULL or ll == NULL):
                n_failed += 1
                continue
            noise = 0.0
            t0 = <int> block_offsets[b]
            while t0 < block_offsets[b + 1]:
                # the chunk [t0, t1): whole tasks, about chunk_rows rows
                t1 = t0
                cstart = offsets[t0]
                while t1 < block_offsets[b + 1] and (t1 == t0 or offsets[t1 + 1] - cstart <= chunk_rows):
                    t1 = t1 + 1
                rows = <int> (offsets[t1] - cstart)
                for c in range(n_comp):
                    n_xc[c] = 0
                    n_uc[c] = 0
                    if rows > 0:
                        memcpy(At_all + c * m * rows_max, &Phi[cstart, 0], m * rows * sizeof(floating))
                        trmm(c'L', c'U', c'N', c'N', m, rows, <floating> 1.0, &chol[c, 0, 0], m,
                             At_all + c * m * rows_max, m)
                for t in range(t0, t1):
                    start = offsets[t]
                    n = <int> (offsets[t + 1] - start)
                    worst = 0
                    for c in range(n_comp):
                        if n == 0:
                            ll[c] = 0.0
                            continue
                        tries = _factor_At(n, m, &Phi[start, 0], &means[c, 0], &y[start], noise_var,
                                           At_all + c * m * rows_max + (start - cstart) * m,
                                           Cm_all + c * n_max * n_max, z_all + c * n_max, &ll[c])
                        if tries < 0 or worst < 0:
                            worst = -1
                        elif tries > worst:
                            worst = tries
                    for c in range(n_comp):
                        log_lik[t, c] = <floating> ll[c]
                    n_jitter[t] = worst
                    lev = _normalise(n_comp, &log_weights[0], ll, &resp[t, 0])
                    log_ev[t] = <floating> lev
                    if not accumulate:
                        continue
                    for c in range(n_comp):
                        r = resp[t, c]
                        sum_r[b, c] = sum_r[b, c] + <floating> r
                        if n == 0 or r <= 0.0 or r < resp_floor or ll[c] == -INFINITY:
                            continue
                        n_x = n_xc[c]
                        n_u = n_uc[c]
                        _accumulate(n, m, &Phi[start, 0], Cm_all + c * n_max * n_max, z_all + c * n_max,
                                    noise_var, r, a, Cinv, Xs + c * m * rows_max + n_x * m,
                                    Us + c * m * rows_max + n_u * m, &sum_u[b, c, 0], &noise)
                        n_xc[c] = n_x + n
                        n_uc[c] = n_u + 1
                if accumulate:
                    for c in range(n_comp):
                        if n_xc[c] > 0:
                            syrk(c'U', c'N', m, n_xc[c], <floating> -1.0, Xs + c * m * rows_max, m,
                                 <floating> 1.0, &sum_G[b, c, 0, 0], m)
                            syrk(c'U', c'N', m, n_uc[c], <floating> 1.0, Us + c * m * rows_max, m,
                                 <floating> 1.0, &sum_G[b, c, 0, 0], m)
                t0 = t1
            sum_noise[b] = <floating> noise
        free(At_all)
        free(Cm_all)
        free(z_all)
        free(a)
        free(Cinv)
        free(Xs)
        free(Us)
        free(n_xc)
        free(n_uc)
        free(ll)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of em_step")


cdef inline void _posterior_mean(int n, int m, const floating* Cm, floating* z, const floating* At,
                                 const floating* L, const floating* mu, floating* v,
                                 floating* out) noexcept nogil:
    """A task's posterior mean under one component, m_tc = mu_c + L (A^T C^{-1} r), from
    ``_factor``'s At, Cm and z (n > 0 rows; z is overwritten, v is m scratch entries)."""
    cdef int i
    trsv(c'L', c'T', c'N', n, Cm, n, z, 1)
    gemv(c'N', m, n, <floating> 1.0, At, m, z, 1, <floating> 0.0, v, 1)
    for i in range(m):
        out[i] = mu[i]
    gemv(c'T', m, m, <floating> 1.0, L, m, v, 1, <floating> 1.0, out, 1)


def posterior(
    const floating[:, ::1] Phi,            # IN  (N, m) packed support design
    const floating[::1] y,                 # IN  (N,)
    const long long[::1] offsets,          # IN  (T+1,)
    const floating[:, :, ::1] chol,        # IN  (C, m, m) lower Cholesky factors of Sigma_c
    const floating[:, ::1] means,          # IN  (C, m)
    const floating[::1] log_weights,       # IN  (C,)
    double noise_var,                      # IN
    floating[:, ::1] resp,                 # OUT (T, C) posterior component probabilities
    floating[::1] log_ev,                  # OUT (T,)
    floating[:, :, ::1] post_means,        # OUT (T, C, m) m_tc
    floating[:, :, :, ::1] post_covs,      # OUT (T, C, m, m) S_tc (only if want_cov; else (1,1,1,1))
    int[::1] n_jitter,                     # OUT (T,)
    bint want_cov,
    int n_threads,
):
    """Per task: component probabilities and every component's weight posterior N(m_tc, S_tc)."""
    cdef int n_tasks = offsets.shape[0] - 1, m = Phi.shape[1], n_comp = means.shape[0]
    cdef int t, c, n, n_max = 0, i, j, tries, worst
    cdef long long start
    cdef double lev
    cdef floating* At
    cdef floating* Cm
    cdef floating* z
    cdef floating* v
    cdef floating* Z
    cdef floating* S
    cdef double* ll
    if n_tasks == 0 or n_comp == 0:
        return
    n_max = max(<int> max_task_size(offsets), 1)
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        At = <floating*> malloc(m * n_max * sizeof(floating))
        Cm = <floating*> malloc(n_max * n_max * sizeof(floating))
        z = <floating*> malloc(n_max * sizeof(floating))
        v = <floating*> malloc(m * sizeof(floating))
        Z = <floating*> malloc(m * n_max * sizeof(floating))
        ll = <double*> malloc(n_comp * sizeof(double))
        for t in prange(n_tasks, schedule="dynamic"):
            if (At == NULL or Cm == NULL or z == NULL or v == NULL
                    or Z == NULL or ll == NULL):
                n_failed += 1
                continue
            start = offsets[t]
            n = <int> (offsets[t + 1] - start)
            worst = 0
            for c in range(n_comp):
                if n == 0:
                    ll[c] = 0.0
                    for i in range(m):
                        post_means[t, c, i] = means[c, i]
                    if want_cov:
                        for i in range(m):
                            for j in range(m):
                                post_covs[t, c, i, j] = 0
                        # Sigma_c = L L^T from the factor
                        syrk(c'U', c'T', m, m, <floating> 1.0, &chol[c, 0, 0], m, <floating> 0.0,
                             &post_covs[t, c, 0, 0], m)
                        symmetrise(c'U', m, &post_covs[t, c, 0, 0])
                    continue
                tries = _factor(n, m, &Phi[start, 0], &chol[c, 0, 0], &means[c, 0], &y[start],
                                noise_var, At, Cm, z, &ll[c])
                if tries < 0 or worst < 0:
                    worst = -1
                    for i in range(m):
                        post_means[t, c, i] = means[c, i]
                    continue
                elif tries > worst:
                    worst = tries
                _posterior_mean(n, m, Cm, z, At, &chol[c, 0, 0], &means[c, 0], v, &post_means[t, c, 0])
                if want_cov:
                    # S = L (I - A^T C^{-1} A) L^T = Sigma - (L A^T L_C^{-T})(...)^T
                    trsm(c'R', c'L', c'T', c'N', m, n, <floating> 1.0, Cm, n, At, m)
                    gemm(c'T', c'N', m, n, m, <floating> 1.0, &chol[c, 0, 0], m, At, m,
                         <floating> 0.0, Z, m)
                    S = &post_covs[t, c, 0, 0]
                    syrk(c'U', c'T', m, m, <floating> 1.0, &chol[c, 0, 0], m, <floating> 0.0, S, m)
                    syrk(c'U', c'N', m, n, <floating> -1.0, Z, m, <floating> 1.0, S, m)
                    symmetrise(c'U', m, S)
            n_jitter[t] = worst
            lev = _normalise(n_comp, &log_weights[0], ll, &resp[t, 0])
            log_ev[t] = <floating> lev
        free(At)
        free(Cm)
        free(z)
        free(v)
        free(Z)
        free(ll)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of posterior")


def predict(
    const floating[:, ::1] Phi_s,          # IN  (N_s, m) packed support design
    const floating[::1] y_s,               # IN  (N_s,)
    const long long[::1] s_offsets,        # IN  (T+1,)
    const floating[:, ::1] Phi_q,          # IN  (N_q, m) packed query design
    const long long[::1] q_offsets,        # IN  (T+1,)
    const floating[:, :, ::1] chol,        # IN  (C, m, m)
    const floating[:, ::1] means,          # IN  (C, m)
    const floating[::1] log_weights,       # IN  (C,)
    double noise_var,                      # IN
    floating[:, ::1] resp,                 # OUT (T, C) component probabilities given the support
    floating[:, ::1] comp_mean,            # OUT (N_q, C) per-component predictive means
    floating[:, ::1] comp_var,             # OUT (N_q, C) per-component predictive variances
    int[::1] n_jitter,                     # OUT (T,)
    int row_block,                         # IN  query rows handled at once (scratch size)
    int n_threads,
):
    """Per-component predictive N(phi^T m_tc, s2 + phi^T S_tc phi) of every packed query row."""
    cdef int n_tasks = s_offsets.shape[0] - 1, m = Phi_s.shape[1], n_comp = means.shape[0]
    cdef int t, c, n, nq, n_max = 0, i, j, k, q0, qb, tries, worst
    cdef long long start, qstart
    cdef double lev, qq, kk, var
    cdef floating* At
    cdef floating* Cm
    cdef floating* z
    cdef floating* v
    cdef floating* mt
    cdef floating* Qt
    cdef floating* K
    cdef double* ll
    if n_tasks == 0 or n_comp == 0:
        return
    n_max = max(<int> max_task_size(s_offsets), 1)
    row_block = max(row_block, 1)
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        At = <floating*> malloc(m * n_max * sizeof(floating))
        Cm = <floating*> malloc(n_max * n_max * sizeof(floating))
        z = <floating*> malloc(n_max * sizeof(floating))
        v = <floating*> malloc(m * sizeof(floating))
        mt = <floating*> malloc(m * sizeof(floating))
        Qt = <floating*> malloc(m * row_block * sizeof(floating))
        K = <floating*> malloc(n_max * row_block * sizeof(floating))
        ll = <double*> malloc(n_comp * sizeof(double))
        for t in prange(n_tasks, schedule="dynamic"):
            if (At == NULL or Cm == NULL or z == NULL or v == NULL or mt == NULL
                    or Qt == NULL or K == NULL or ll == NULL):
                n_failed += 1
                continue
            start = s_offsets[t]
            n = <int> (s_offsets[t + 1] - start)
            qstart = q_offsets[t]
            nq = <int> (q_offsets[t + 1] - qstart)
            worst = 0
            for c in range(n_comp):
                if n > 0:
                    tries = _factor(n, m, &Phi_s[start, 0], &chol[c, 0, 0], &means[c, 0], &y_s[start],
                                    noise_var, At, Cm, z, &ll[c])
                    if tries < 0 or worst < 0:
                        worst = -1
                    elif tries > worst:
                        worst = tries
                else:
                    ll[c] = 0.0
                    tries = 0
                if n > 0 and tries >= 0:
                    _posterior_mean(n, m, Cm, z, At, &chol[c, 0, 0], &means[c, 0], v, mt)
                else:                           # no support rows, or a failed factor: the prior mean
                    for i in range(m):
                        mt[i] = means[c, i]
                q0 = 0
                while q0 < nq:
                    qb = min(row_block, nq - q0)
                    # means: phi^T m_tc for the block
                    gemv(c'T', m, qb, <floating> 1.0, &Phi_q[qstart + q0, 0], m, mt, 1,
                         <floating> 0.0, &comp_mean[qstart + q0, c], n_comp)
                    # variances: s2 + |L^T phi|^2 - |L_C^{-1} A L^T phi|^2
                    memcpy(Qt, &Phi_q[qstart + q0, 0], m * qb * sizeof(floating))
                    trmm(c'L', c'U', c'N', c'N', m, qb, <floating> 1.0, &chol[c, 0, 0], m, Qt, m)
                    if n > 0 and tries >= 0:
                        gemm(c'T', c'N', n, qb, m, <floating> 1.0, At, m, Qt, m, <floating> 0.0, K, n)
                        trsm(c'L', c'L', c'N', c'N', n, qb, <floating> 1.0, Cm, n, K, n)
                    for j in range(qb):
                        qq = dot(m, Qt + j * m, 1, Qt + j * m, 1)
                        kk = 0.0
                        if n > 0 and tries >= 0:
                            kk = dot(n, K + j * n, 1, K + j * n, 1)
                        var = noise_var + qq - kk
                        if var < noise_var:
                            var = noise_var
                        comp_var[qstart + q0 + j, c] = <floating> var
                    q0 = q0 + qb
            n_jitter[t] = worst
            lev = _normalise(n_comp, &log_weights[0], ll, &resp[t, 0])
        free(At)
        free(Cm)
        free(z)
        free(v)
        free(mt)
        free(Qt)
        free(K)
        free(ll)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of predict")
