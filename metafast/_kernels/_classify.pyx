"""Per-task kernels of few-shot classification on a basis (MetaClassifier), over packed tasks.

Every function works on all tasks of a packed, *whitened* design at once: rows offsets[t]:offsets[t+1]
of ``Phi_w`` = Phi U (Sigma = U U^T) belong to task t, whose labels are the codes 0..n_classes[t]-1.
With w_c = mu_c + U v_c and v_c ~ N(0, I), the latent class scores of a task are
f_c = Phi_w v_c ~ N(0, K), K = Phi_w Phi_w^T (n x n): the dual form, so a task with fewer points
than basis functions costs O(C n^3), never O(m^3).

- ``logistic_laplace``: MAP of multinomial logistic regression for every task by Newton's method
  in the dual (Rasmussen & Williams 2006, Algorithm 3.3, with a prior mean offset on the logits and
  step halving so the objective never increases), its Laplace log evidence, and the EM statistic
  G_t = B_t Phi_w,t with B_t = sum_c [a_c a_c^T - (K + W^{-1})^{-1}_cc]: the whitened second moment
  of the Laplace posterior is then sum_t (C_t I + Phi_w^T G) (see ``learners._logistic``).
  Tasks marked ``primal`` (the caller's choice: many rows, few basis functions) are solved in the
  whitened weights V (m x C) instead: Newton on 1/2 |V|^2 + NLL with the full (mC x mC) Hessian
  H = I + sum_i (diag(p_i) - p_i p_i^T) (x) phi_i phi_i^T, O(C^2 n m^2 + (Cm)^3) per step instead of
  O(C n^3); they return A = Y - P (the dual coefficients at the MAP), log q = -Psi - 1/2 log|H|,
  and their m x m second-moment statistic sum_c [v_c v_c^T + (H^{-1})_cc] - C I in ``Qp[slot]``.
- ``ridge_estep``: the same quantities for one-hot least squares (Gaussian likelihood), in closed
  form: one Cholesky of K + s2 I per task shared by all classes.
- ``task_logits``: query scores Phi_w,q Phi_w,s^T A of every task.
- ``prototype_sqdist``: squared distances under a diagonal metric from every row to its task's
  class prototypes.

Storage: packed row-major (rows, k) blocks are read by BLAS as column-major (k, rows) matrices;
per-task scratch is column-major.  Outputs are per task or per row, so results do not depend on
the thread count.  Softmax and log-sum-exp subtract the row maximum.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, sqrt, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from metafast._kernels._linalg cimport (
    dot, gemv, gemm, jittered_cholesky, sum_log_diag, potrf, potrs, potri, symmetrise, syrk, trsm,
)

cdef double LOG_2PI = 1.8378770664093453
cdef int MAX_HALVINGS = 30


# ---------------------------------------------------------------------------- small helpers
cdef double _softmax_rows(int n, int C, const floating* F, const floating* B0, long ldb,
                          const long long* codes, floating* P) noexcept nogil:
    """P = softmax(F + B0) row-wise (column-major (n, C)); returns the negative log likelihood
    sum_i [lse_i - z_{i, y_i}].  B0 is row-major with leading dimension ldb (NULL: no offset)."""
    cdef int i, c
    cdef double mx, s, z, nll = 0
    for i in range(n):
        mx = -INFINITY
        for c in range(C):
            z = F[i + c * n] + (B0[i * ldb + c] if B0 != NULL else 0.0)
            if z > mx:
                mx = z
        s = 0
        for c in range(C):
            z = F[i + c * n] + (B0[i * ldb + c] if B0 != NULL else 0.0)
            P[i + c * n] = exp(z - mx)
            s += P[i + c * n]
        for c in range(C):
            P[i + c * n] = P[i + c * n] / s
        nll += mx + log(s) - (F[i + codes[i] * n] + (B0[i * ldb + codes[i]] if B0 != NULL else 0.0))
    return nll


cdef double _objective(int n, int C, const floating* F, const floating* A, const floating* B0, long ldb,
                       const long long* codes, floating* P) noexcept nogil:
    """Psi(f) = 1/2 a^T f + sum_i [lse(f_i + b_i) - (f + b)_{i, y_i}] (f = K a); fills P."""
    return 0.5 * dot(n * C, A, 1, F, 1) + _softmax_rows(n, C, F, B0, ldb, codes, P)


cdef int _curvature(int n, int C, const floating* K, const floating* P, floating* E, floating* M,
                    floating* L, double* logdet) noexcept nogil:
    """E_c = D_c^{1/2} (I + D_c^{1/2} K D_c^{1/2})^{-1} D_c^{1/2} for every class (D_c = diag(pi_c)),
    M = chol_L(sum_c E_c); logdet = sum_c log|L_c| + log|M| (half the log-determinant of I + K W).
    Returns 0, or -1 when a factorisation failed (non-finite input)."""
    cdef int i, j, c
    cdef floating* Ec
    cdef double ld = 0
    memset(M, 0, n * n * sizeof(floating))
    for c in range(C):
        Ec = &E[c * n * n]
        for j in range(n):
            for i in range(j, n):
                L[i + j * n] = sqrt(P[i + c * n] * P[j + c * n]) * K[i + j * n]
            L[j + j * n] += 1.0
        if potrf(c'L', n, L, n) != 0:
            return -1
        ld += sum_log_diag(n, L)
        potri(c'L', n, L, n)
        for j in range(n):
            for i in range(j, n):
                Ec[i + j * n] = sqrt(P[i + c * n] * P[j + c * n]) * L[i + j * n]
        symmetrise(c'L', n, Ec)
        for i in range(n * n):
            M[i] += Ec[i]
    # sum_c E_c is positive definite in exact arithmetic (its eigenvalues are >= min_c of E_c's
    # with sum_c pi_c = 1); jitter only guards against round-off when K is huge
    if jittered_cholesky(c'L', n, M) < 0:
        return -1
    logdet[0] = ld + sum_log_diag(n, M)
    return 0


cdef int _newton_direction(int n, int C, const floating* K, const floating* F, const floating* P,
                           const long long* codes, const floating* E, const floating* M,
                           floating* Bv, floating* Cv, floating* x, floating* Anew, floating* Fnew) noexcept nogil:
    """The full Newton step of R&W Algorithm 3.3: (Anew, Fnew = K Anew) from the current F."""
    cdef int i, c
    cdef double s
    for i in range(n):
        s = 0
        for c in range(C):
            s += P[i + c * n] * F[i + c * n]
        for c in range(C):
            Bv[i + c * n] = P[i + c * n] * (F[i + c * n] - s) - P[i + c * n] + (1.0 if codes[i] == c else 0.0)
    memset(x, 0, n * sizeof(floating))
    for c in range(C):
        gemv(c'N', n, n, 1.0, K, n, &Bv[c * n], 1, 0.0, &Fnew[c * n], 1)               # K b_c
        gemv(c'N', n, n, 1.0, &E[c * n * n], n, &Fnew[c * n], 1, 0.0, &Cv[c * n], 1)   # c_c = E_c K b_c
        for i in range(n):
            x[i] += Cv[i + c * n]
    if potrs(c'L', n, 1, M, n, x, n) != 0:                                              # (sum E)^{-1} sum c
        return -1
    for c in range(C):
        for i in range(n):
            Anew[i + c * n] = Bv[i + c * n] - Cv[i + c * n]
        gemv(c'N', n, n, 1.0, &E[c * n * n], n, x, 1, 1.0, &Anew[c * n], 1)
        gemv(c'N', n, n, 1.0, K, n, &Anew[c * n], 1, 0.0, &Fnew[c * n], 1)
    return 0


cdef int _laplace_task(
    int n, int m, int C, const floating* PhiT, const floating* B0, long ldb, const long long* codes,
    int max_iter, double tol, bint warm, floating* A_io, long lda, floating* GT, double* logq,
    floating* K, floating* E, floating* M, floating* L, floating* F, floating* A, floating* P,
    floating* Bv, floating* Cv, floating* x, floating* Anew, floating* Fnew, floating* Ft, floating* At,
) noexcept nogil:
    """One task: Newton to the MAP, then the Laplace evidence and (GT != NULL) the EM statistic.
    Returns the number of Newton steps, or -1 on a numerical failure."""
    cdef int i, c, it, h, steps = 0
    cdef double psi, psi_t, step, slack, logdet = 0
    cdef bint done = False, stale = True
    syrk(c'L', c'T', n, m, 1.0, PhiT, m, 0.0, K, n)
    symmetrise(c'L', n, K)
    for c in range(C):
        for i in range(n):
            A[i + c * n] = A_io[i * lda + c] if warm else 0.0
    for c in range(C):
        gemv(c'N', n, n, 1.0, K, n, &A[c * n], 1, 0.0, &F[c * n], 1)
    psi = _objective(n, C, F, A, B0, ldb, codes, P)
    if psi != psi:
        return -1
    for it in range(max_iter + 1):
        if stale:                               # the curvature of the current P (once per accepted step)
            if _curvature(n, C, K, P, E, M, L, &logdet) != 0:
                return -1
            stale = False
        if done or it == max_iter:
            break
        if _newton_direction(n, C, K, F, P, codes, E, M, Bv, Cv, x, Anew, Fnew) != 0:
            return -1
        slack = (1e-14 if floating is double else 1e-6) * (1.0 + (psi if psi > 0 else -psi))
        step = 1.0
        for h in range(MAX_HALVINGS):
            for i in range(n * C):
                Ft[i] = F[i] + step * (Fnew[i] - F[i])
                At[i] = A[i] + step * (Anew[i] - A[i])
            psi_t = _objective(n, C, Ft, At, B0, ldb, codes, Bv)      # Bv: scratch probabilities
            if psi_t <= psi:
                break
            if psi_t <= psi + slack:            # within round-off of the optimum: halving cannot help
                psi_t = psi
                break
            step = 0.5 * step
        else:
            psi_t = psi                                                 # no decrease: at the optimum
        if psi_t < psi:
            memcpy(F, Ft, n * C * sizeof(floating))
            memcpy(A, At, n * C * sizeof(floating))
            memcpy(P, Bv, n * C * sizeof(floating))
            steps += 1
            stale = True
        done = (psi - psi_t) <= tol * (1.0 + (psi_t if psi_t > 0 else -psi_t))
        psi = psi_t
    logq[0] = -psi - logdet
    for c in range(C):
        for i in range(n):
            A_io[i * lda + c] = A[i + c * n]
    if GT != NULL:
        # B = A A^T - sum_c E_c + sum_c E_c M^{-T} M^{-1} E_c, then G^T = Phi_w^T B
        gemm(c'N', c'T', n, n, C, 1.0, A, n, A, n, 0.0, L, n)
        for c in range(C):
            for i in range(n * n):
                L[i] -= E[c * n * n + i]
            trsm(c'L', c'L', c'N', c'N', n, n, 1.0, M, n, &E[c * n * n], n)    # E_c <- M^{-1} E_c
            syrk(c'L', c'T', n, n, 1.0, &E[c * n * n], n, 1.0, L, n)
        symmetrise(c'L', n, L)   # the syrk updates wrote the lower triangle only
        gemm(c'N', c'N', m, n, n, 1.0, PhiT, m, L, n, 0.0, GT, m)
    return steps

# ---------------------------------------------------------------------------- primal Newton
cdef double _primal_objective(int n, int m, int C, const floating* PhiT, const floating* V, const floating* B0,
                              long ldb, const long long* codes, floating* Z, floating* P) noexcept nogil:
    """Psi(V) = 1/2 |V|^2 + NLL(Phi V + B0); fills Z = Phi V (n, C) and P = softmax (column-major)."""
    gemm(c'T', c'N', n, C, m, 1.0, PhiT, m, V, m, 0.0, Z, n)
    return 0.5 * dot(m * C, V, 1, V, 1) + _softmax_rows(n, C, Z, B0, ldb, codes, P)


cdef int _primal_hessian(int n, int m, int C, const floating* PhiT, const floating* P, floating* S,
                         floating* H, double* logdet) noexcept nogil:
    """Lower triangle of H = I + sum_i J_i (x) phi_i phi_i^T (class-major blocks, leading dim mC),
    Cholesky-factored in place; logdet = sum log diag (half log|H|).  S: (m, n) scratch."""
    cdef int i, j, c, d, mc = m * C
    cdef double w
    for d in range(C):
        for c in range(d, C):
            for i in range(n):
                w = P[i + c * n] * ((1.0 if c == d else 0.0) - P[i + d * n])
                for j in range(m):
                    S[j + i * m] = <floating> w * PhiT[j + i * m]
            gemm(c'N', c'T', m, m, n, 1.0, S, m, PhiT, m, 0.0, &H[c * m + d * m * mc], mc)
    for i in range(mc):
        H[i + i * mc] += 1.0
    if potrf(c'L', mc, H, mc) != 0:
        return -1
    logdet[0] = sum_log_diag(mc, H)
    return 0


cdef void _warm_v(int n, int m, int C, const floating* PhiT, const floating* A_io, long lda, floating* Acol,
                  floating* V) noexcept nogil:
    """V = Phi^T A from the row-major warm start A (copied column-major into Acol (n, C))."""
    cdef int i, c
    for c in range(C):
        for i in range(n):
            Acol[i + c * n] = A_io[i * lda + c]
    gemm(c'N', c'N', m, C, n, 1.0, PhiT, m, Acol, n, 0.0, V, m)


cdef int _primal_task(
    int n, int m, int C, const floating* PhiT, const floating* B0, long ldb, const long long* codes,
    int max_iter, double tol, bint warm, floating* A_io, long lda, floating* Q, double* logq,
    floating* H, floating* S, floating* V, floating* Vt, floating* D, floating* Z, floating* P, floating* Pt,
) noexcept nogil:
    """One task in the primal (see the module docstring); Q (m, m) or NULL.  Returns the number of
    Newton steps, or -1 on a numerical failure."""
    cdef int i, j, c, it, h, steps = 0, mc = m * C
    cdef double psi, psi_t, step, decrement, slack, logdet = 0
    cdef bint done = False, accepted, stale = True
    if warm:
        _warm_v(n, m, C, PhiT, A_io, lda, Z, V)
    else:
        memset(V, 0, mc * sizeof(floating))
    psi = _primal_objective(n, m, C, PhiT, V, B0, ldb, codes, Z, P)
    if psi != psi:
        return -1
    for it in range(max_iter + 1):
        if stale:                               # the Hessian of the current P (once per accepted step)
            if _primal_hessian(n, m, C, PhiT, P, S, H, &logdet) != 0:
                return -1
            stale = False
        if done or it == max_iter:
            break
        # gradient D = V + Phi^T (P - Y), then D <- H^{-1} D
        for c in range(C):
            for i in range(n):
                Z[i + c * n] = P[i + c * n] - (1.0 if codes[i] == c else 0.0)
        memcpy(D, V, mc * sizeof(floating))
        gemm(c'N', c'N', m, C, n, 1.0, PhiT, m, Z, n, 1.0, D, m)
        memcpy(Vt, D, mc * sizeof(floating))
        if potrs(c'L', mc, 1, H, mc, D, mc) != 0:
            return -1
        decrement = dot(mc, Vt, 1, D, 1)                # g^T H^{-1} g: twice the predicted decrease
        # a step is accepted if Psi does not increase beyond round-off: near the optimum the
        # decrease (~ decrement / 2) is below the resolution of Psi, and the last full Newton step
        # is what brings the gradient to round-off (so that A = Y - P is the dual vector)
        slack = (1e-14 if floating is double else 1e-6) * (1.0 + (psi if psi > 0 else -psi))
        step = 1.0
        accepted = False
        for h in range(MAX_HALVINGS):
            for i in range(mc):
                Vt[i] = V[i] - step * D[i]
            psi_t = _primal_objective(n, m, C, PhiT, Vt, B0, ldb, codes, Z, Pt)
            if psi_t <= psi + slack:
                accepted = True
                break
            step = 0.5 * step
        if accepted:
            memcpy(V, Vt, mc * sizeof(floating))
            memcpy(P, Pt, n * C * sizeof(floating))
            steps += 1
            psi = psi_t
            stale = True
        done = (not accepted) or 0.5 * decrement <= tol * (1.0 + (psi if psi > 0 else -psi))
    logq[0] = -psi - logdet
    for i in range(n):
        for c in range(C):
            A_io[i * lda + c] = (1.0 if codes[i] == c else 0.0) - P[i + c * n]
    if Q != NULL:
        # Q = sum_c [v_c v_c^T + (H^{-1})_cc] - C I
        potri(c'L', mc, H, mc)
        for j in range(m):
            for i in range(j, m):
                Q[i + j * m] = -C if i == j else 0.0
        for c in range(C):
            for j in range(m):
                for i in range(j, m):
                    Q[i + j * m] += H[(c * m + i) + (c * m + j) * mc] + V[i + c * m] * V[j + c * m]
        symmetrise(c'L', m, Q)
    return steps



cdef int _laplace_slot(
    long long t, const floating[:, ::1] Phi_w, const floating[:, ::1] B0, const long long[::1] codes,
    const long long[::1] offsets, const long long[::1] n_classes, const long long[::1] primal, int max_iter,
    double tol, bint warm, bint want_stats, floating[:, ::1] A, floating[:, ::1] G, floating[:, :, ::1] Qp,
    double[::1] logq, int[::1] status, long long nmax, floating* buf,
) noexcept nogil:
    """Task t of logistic_laplace with the given scratch (NULL scratch: status -2); returns status[t]."""
    cdef long long off = offsets[t]
    cdef int n = <int> (offsets[t + 1] - off)
    cdef int C = <int> n_classes[t]
    cdef int m = <int> Phi_w.shape[1]
    cdef int Cmax = <int> A.shape[1]
    cdef long long S = nmax * Cmax
    cdef int i
    cdef const floating *b0p = NULL
    cdef floating *gp = NULL
    cdef floating *K
    cdef floating *M
    cdef floating *L
    cdef floating *E
    cdef floating *vec
    cdef floating *pv
    cdef long long mc = <long long> m * n_classes[t]
    logq[t] = 0
    if buf == NULL:
        status[t] = -2
        return -2
    K, M, L = buf, &buf[nmax * nmax], &buf[2 * nmax * nmax]
    E, vec = &buf[3 * nmax * nmax], &buf[(3 + Cmax) * nmax * nmax]
    pv = &buf[mc * mc + m * n]                    # primal layout: H (mc, mc), S (m, n), vectors
    status[t] = 0
    if n == 0:
        return 0
    if C < 2:
        for i in range(n):
            memset(&A[off + i, 0], 0, Cmax * sizeof(floating))
            if want_stats:
                memset(&G[off + i, 0], 0, m * sizeof(floating))
        return 0
    if B0.shape[0] > 0:
        b0p = &B0[off, 0]
    if primal[t] >= 0:
        if want_stats:
            memset(&G[off, 0], 0, n * m * sizeof(floating))
        status[t] = _primal_task(
            n, m, C, &Phi_w[off, 0], b0p, B0.shape[1], &codes[off], max_iter, tol, warm, &A[off, 0], Cmax,
            &Qp[primal[t], 0, 0] if want_stats else NULL, &logq[t], buf, &buf[mc * mc], pv, &pv[mc],
            &pv[2 * mc], &pv[3 * mc], &pv[3 * mc + n * C], &pv[3 * mc + 2 * n * C])
        return status[t]
    if want_stats:
        gp = &G[off, 0]
    status[t] = _laplace_task(
        n, m, C, &Phi_w[off, 0], b0p, B0.shape[1], &codes[off], max_iter, tol, warm, &A[off, 0], Cmax,
        gp, &logq[t], K, E, M, L, vec, &vec[S], &vec[2 * S], &vec[3 * S], &vec[4 * S], &vec[9 * S],
        &vec[5 * S], &vec[6 * S], &vec[7 * S], &vec[8 * S])
    return status[t]


def logistic_laplace(
    const floating[:, ::1] Phi_w, const floating[:, ::1] B0, const long long[::1] codes,
    const long long[::1] offsets, const long long[::1] n_classes, const long long[::1] primal, int max_iter,
    double tol, bint warm, bint want_stats, int n_threads,
    floating[:, ::1] A, floating[:, ::1] G, floating[:, :, ::1] Qp, double[::1] logq, int[::1] status,
):
    """MAP dual coefficients A (N, Cmax) of every task's multinomial logistic regression.

    Phi_w (N, m) whitened design; B0 (N, Cmax) prior-mean logits Phi mu (or shape (0, Cmax): none);
    codes (N,) labels 0..n_classes[t]-1; ``warm`` starts from the given A.  Outputs: A, G (N, m) =
    B_t Phi_w,t (only if want_stats), logq (T,) Laplace log evidence, status (T,) Newton steps or
    -1 (failure) or -2 (no scratch memory).  Tasks with fewer than two classes get A = 0, G = 0,
    logq = 0.  primal (T,): -1 for the dual path, else the task's slot in Qp (n_primal, m, m)
    (or shape (0, m, m) without want_stats); primal tasks get G = 0 and Qp[slot] = their m x m
    second-moment statistic (see the module docstring).
    """
    cdef Py_ssize_t T = offsets.shape[0] - 1
    cdef int m = <int> Phi_w.shape[1]
    cdef int Cmax = <int> A.shape[1]
    cdef long long t, n, nmax = 0, n_failed = 0
    cdef long long size, size_p, mc
    cdef floating *buf
    if T <= 0:
        return 0
    if primal.shape[0] != T:
        raise ValueError(f"primal must have one entry per task ({T}); got {primal.shape[0]}")
    size_p = 0
    for t in range(T):
        n = offsets[t + 1] - offsets[t]
        if primal[t] >= 0:
            if want_stats and primal[t] >= Qp.shape[0]:
                raise ValueError(f"task {t}: primal slot {primal[t]} is outside Qp ({Qp.shape[0]} slots)")
            mc = <long long> m * n_classes[t]
            size_p = max(size_p, mc * mc + m * n + 3 * mc + 3 * n * n_classes[t])
        elif n > nmax:
            nmax = n
    nmax = nmax if nmax > 0 else 1
    size = (3 + Cmax) * nmax * nmax + 9 * nmax * Cmax + nmax      # dual: K, M, L, E and the vectors
    size = max(size, size_p)
    if n_threads <= 1 or T == 1:
        # serial path: no OpenMP region for one task or one thread
        with nogil:
            buf = <floating*> malloc(size * sizeof(floating))
            for t in range(T):
                if _laplace_slot(t, Phi_w, B0, codes, offsets, n_classes, primal, max_iter, tol, warm,
                                 want_stats, A, G, Qp, logq, status, nmax, buf) < 0:
                    n_failed += 1
            free(buf)
    else:
        with nogil, parallel(num_threads=n_threads):
            buf = <floating*> malloc(size * sizeof(floating))
            for t in prange(T, schedule='dynamic'):
                if buf == NULL:                 # counted here, raised as MemoryError below
                    status[t] = -2
                    n_failed += 1
                elif _laplace_slot(t, Phi_w, B0, codes, offsets, n_classes, primal, max_iter, tol, warm,
                                   want_stats, A, G, Qp, logq, status, nmax, buf) < 0:
                    n_failed += 1
            free(buf)
    for t in range(T):
        if status[t] == -2:
            raise MemoryError("could not allocate the per-thread scratch of logistic_laplace")
    return n_failed


# ---------------------------------------------------------------------------- ridge head
def ridge_estep(
    const floating[:, ::1] Phi_w, const floating[:, ::1] R, const long long[::1] offsets,
    const long long[::1] n_classes, double s2, int n_threads,
    floating[:, ::1] A, floating[:, ::1] G, floating[::1] cinv_diag, double[::1] logp,
    double[::1] noise, int[::1] status,
):
    """Closed-form E-step of one-hot least squares, y_c = Phi w_c + N(0, s2), w_c ~ N(mu_c, Sigma).

    R (N, Cmax) residual targets Y - Phi mu.  Per task, with C = chol(K + s2 I): A = C^{-1} R,
    G = (A A^T - n_classes C^{-1}) Phi_w, cinv_diag = diag(C^{-1}) (for leave-one-out
    predictions), logp (T,) log evidence, noise (T,) the noise statistic
    sum_c ||r_c - Phi m_c||^2 + tr(Phi S Phi^T), status (T,) jitter rounds or -1 / -2.
    """
    cdef Py_ssize_t T = offsets.shape[0] - 1
    cdef int m = <int> Phi_w.shape[1]
    cdef int Cmax = <int> A.shape[1]
    cdef long long t, off, nmax = 0
    cdef int n, C, i, c
    cdef double quad, trinv
    cdef floating *K
    cdef floating *Ac
    if T <= 0:
        return
    for t in range(T):
        if offsets[t + 1] - offsets[t] > nmax:
            nmax = offsets[t + 1] - offsets[t]
    nmax = nmax if nmax > 0 else 1
    with nogil, parallel(num_threads=n_threads):
        K = <floating*> malloc(nmax * nmax * sizeof(floating))
        Ac = <floating*> malloc(nmax * Cmax * sizeof(floating))
        for t in prange(T, schedule='dynamic'):
            off = offsets[t]
            n = <int> (offsets[t + 1] - off)
            C = <int> n_classes[t]
            logp[t] = 0
            noise[t] = 0
            if K == NULL or Ac == NULL:
                status[t] = -2
                continue
            status[t] = 0
            if n == 0:
                continue
            syrk(c'L', c'T', n, m, 1.0, &Phi_w[off, 0], m, 0.0, K, n)
            for i in range(n):
                K[i + i * n] += <floating> s2
            status[t] = jittered_cholesky(c'L', n, K)
            if status[t] < 0:
                continue
            for c in range(C):
                for i in range(n):
                    Ac[i + c * n] = R[off + i, c]
            potrs(c'L', n, C, K, n, Ac, n)
            quad = 0
            for c in range(C):
                for i in range(n):
                    quad = quad + R[off + i, c] * Ac[i + c * n]
            logp[t] = -0.5 * quad - C * (sum_log_diag(n, K) + 0.5 * n * LOG_2PI)
            potri(c'L', n, K, n)
            symmetrise(c'L', n, K)
            trinv = 0
            for i in range(n):
                cinv_diag[off + i] = K[i + i * n]
                trinv = trinv + K[i + i * n]
            noise[t] = s2 * s2 * dot(n * C, Ac, 1, Ac, 1) + C * s2 * (n - s2 * trinv)
            for i in range(n * n):
                K[i] = -C * K[i]
            gemm(c'N', c'T', n, n, C, 1.0, Ac, n, Ac, n, 1.0, K, n)
            gemm(c'N', c'N', m, n, n, 1.0, &Phi_w[off, 0], m, K, n, 0.0, &G[off, 0], m)
            for i in range(n):
                memset(&A[off + i, 0], 0, Cmax * sizeof(floating))
                for c in range(C):
                    A[off + i, c] = Ac[i + c * n]
        free(K)
        free(Ac)
    for t in range(T):
        if status[t] == -2:
            raise MemoryError("could not allocate the per-thread scratch of ridge_estep")


# ---------------------------------------------------------------------------- prediction
def task_logits(
    const floating[:, ::1] Phi_ws, const floating[:, ::1] A, const long long[::1] s_offsets,
    const long long[::1] n_classes, const floating[:, ::1] Phi_wq, const long long[::1] q_offsets, int n_threads,
    floating[:, ::1] out,
):
    """out (Nq, Cmax) = Phi_w,q (Phi_w,s^T A) per task (columns >= n_classes[t] set to 0): the
    data part of every query row's class scores (add Phi_q mu_c for a prior mean)."""
    cdef Py_ssize_t T = s_offsets.shape[0] - 1
    cdef int m = <int> Phi_ws.shape[1]
    cdef int Cmax = <int> A.shape[1]
    cdef long long t, so, qo
    cdef int ns, nq, C, i
    cdef int failed = 0
    cdef floating *V
    if T <= 0:
        return
    with nogil, parallel(num_threads=n_threads):
        V = <floating*> malloc(m * Cmax * sizeof(floating))
        for t in prange(T, schedule='dynamic'):
            so = s_offsets[t]
            qo = q_offsets[t]
            ns = <int> (s_offsets[t + 1] - so)
            nq = <int> (q_offsets[t + 1] - qo)
            C = <int> n_classes[t]
            for i in range(nq):
                memset(&out[qo + i, 0], 0, Cmax * sizeof(floating))
            if V == NULL:
                failed += 1
                continue
            if nq == 0 or ns == 0 or C == 0:
                continue
            gemm(c'N', c'T', m, C, ns, 1.0, &Phi_ws[so, 0], m, &A[so, 0], Cmax, 0.0, V, m)
            gemm(c'T', c'N', C, nq, m, 1.0, V, m, &Phi_wq[qo, 0], m, 0.0, &out[qo, 0], Cmax)
        free(V)
    if failed:
        raise MemoryError("could not allocate the per-thread scratch of task_logits")


def prototype_sqdist(
    const floating[:, ::1] Phi, const long long[::1] offsets, const floating[:, ::1] P,
    const long long[::1] p_offsets, const floating[::1] metric, int n_threads, floating[:, ::1] out,
):
    """out[i, c] = sum_j metric_j (Phi[i, j] - P[p_offsets[t] + c, j])^2 for row i of task t and its
    classes c < p_offsets[t+1] - p_offsets[t]; other columns are set to 0."""
    cdef Py_ssize_t T = offsets.shape[0] - 1
    cdef int m = <int> Phi.shape[1]
    cdef int Cmax = <int> out.shape[1]
    cdef long long t, i, po
    cdef int c, j, C
    cdef double s, d
    if T <= 0:
        return
    with nogil:
        for t in prange(T, schedule='dynamic', num_threads=n_threads):
            po = p_offsets[t]
            C = <int> (p_offsets[t + 1] - po)
            for i in range(offsets[t], offsets[t + 1]):
                for c in range(Cmax):
                    if c < C:
                        s = 0
                        for j in range(m):
                            d = Phi[i, j] - P[po + c, j]
                            s = s + metric[j] * d * d
                        out[i, c] = s
                    else:
                        out[i, c] = 0
