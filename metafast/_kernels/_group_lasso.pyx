"""Multi-task group lasso by block coordinate descent over packed tasks, and task correlations.

    min_W  sum_t 1/(2 n_t) ||y_t - Phi_t w_t||^2  +  lam * sum_j ||W[j, :]||_2

Task t owns rows offsets[t]:offsets[t+1] of the packed data.  The design is stored transposed,
PhiT (m, N), so column j of every task is one contiguous stretch of PhiT[j].  The residual
R = y - (per-task Phi_t w_t) is cached (float64) and updated after every block.

Block j couples the tasks only through ||W[j, :]||.  With a_t = phi_tj . r_t / n_t + L_tj w_tj
(r_t the residual including column j's current term) and L_tj = ||phi_tj||^2 / n_t, the exact
block minimiser is zero when ||a|| <= lam, else w_tj = a_t s / (L_tj s + lam) where s = ||w_j||
solves sum_t (a_t / (L_tj s + lam))^2 = 1 (a decreasing convex function of s: Newton from the
left, s0 = (||a|| - lam) / max_t L_tj, converges monotonically).  A column that is zero in a
task has L_tj = a_t = 0 there and simply gets w_tj = 0: no division by zero.

The per-task dot products and residual updates of a block run in parallel over tasks (prange,
explicit thread count); the block solve is serial and its order fixed, so results do not depend
on the thread count.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, fabs
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

cdef enum:
    NEWTON_MAX_ITER = 100


cdef double _block_scale(const double* a, const double* L, int64_t T, double lam,
                         double s) noexcept nogil:
    """Root s of sum_t (a_t / (L_t s + lam))^2 = 1 by Newton from s (left of the root)."""
    cdef int it
    cdef int64_t t
    cdef double f, fp, q, den, s_new
    for it in range(NEWTON_MAX_ITER):
        f = 0.0
        fp = 0.0
        for t in range(T):
            if a[t] != 0.0:
                den = L[t] * s + lam
                q = a[t] / den
                f += q * q
                fp += q * q * L[t] / den
        if fp <= 0.0:          # no task has a non-zero column (cannot happen when ||a|| > lam)
            return s
        # psi = sqrt(f); Newton on psi(s) - 1: s += (psi - 1) * psi / fp
        q = sqrt(f)
        s_new = s + (q - 1.0) * q / fp
        if fabs(s_new - s) <= 1e-15 * fabs(s_new) + 1e-300:
            return s_new
        s = s_new
    return s


cdef inline void _track_block(double change2, double wnorm2, double* max_change,
                              double* max_norm) noexcept nogil:
    """Keep the largest block change and block norm of a sweep (from their squares)."""
    cdef double change = sqrt(change2), wnorm = sqrt(wnorm2)
    if change > max_change[0]:
        max_change[0] = change
    if wnorm > max_norm[0]:
        max_norm[0] = wnorm


cdef inline double _task_dot(const floating* col, const double* R, int64_t lo,
                            int64_t hi) noexcept nogil:
    """sum_{i in [lo, hi)} col[i] * R[i], accumulated in double."""
    cdef double acc = 0.0
    cdef int64_t i
    for i in range(lo, hi):
        acc = acc + col[i] * R[i]
    return acc


cdef inline void _task_axpy(double d, const floating* col, double* R, int64_t lo,
                            int64_t hi) noexcept nogil:
    """R[lo:hi] -= d * col[lo:hi]."""
    cdef int64_t i
    for i in range(lo, hi):
        R[i] = R[i] - d * col[i]


def task_correlations(
    const floating[:, ::1] PhiT,      # IN  (m, N) design, transposed
    const double[::1] R,              # IN  (N,) residuals (or targets)
    const int64_t[::1] offsets,       # IN  (T+1,) task boundaries in the packed rows
    const double[::1] scale,          # IN  (T,) per-task factor (1 / n_t, or 1)
    double[:, ::1] out,               # OUT (m, T) out[j, t] = scale[t] * phi_tj . r_t
    int n_threads,
):
    """Per-task correlations of every column with the residual; parallel over columns."""
    cdef int64_t m = PhiT.shape[0], T = offsets.shape[0] - 1
    cdef int64_t j, t
    if m == 0 or T == 0:
        return
    with nogil:
        for j in prange(m, num_threads=n_threads, schedule="static"):
            for t in range(T):
                out[j, t] = scale[t] * _task_dot(&PhiT[j, 0], &R[0], offsets[t], offsets[t + 1])


def bcd_sweeps(
    const floating[:, ::1] PhiT,      # IN  (m, N) design, transposed
    const int64_t[::1] offsets,       # IN  (T+1,) task boundaries
    const double[::1] inv_n,          # IN  (T,) 1 / n_t (0 for an empty task)
    const double[:, ::1] L,           # IN  (m, T) ||phi_tj||^2 / n_t
    const double[::1] L_max,          # IN  (m,) max_t L[j, t]
    double[:, ::1] W,                 # IN/OUT (m, T) weights, warm start
    double[::1] R,                    # IN/OUT (N,) residual y - Phi W, consistent with W
    const int64_t[::1] active,        # IN  (A,) columns to sweep, in this order
    double lam,                       # IN  penalty > 0
    int max_sweeps,                   # IN  sweep limit
    double tol,                       # IN  stop when max ||dW_j|| <= tol * max ||W_j||
    int n_threads,
):
    """Cyclic block coordinate descent over the ``active`` columns.

    Returns (sweeps done, last max block change, last max block norm).
    """
    cdef int64_t T = offsets.shape[0] - 1, A = active.shape[0]
    cdef int64_t k, j, t
    cdef int sweep = 0
    cdef double norm_a, s, d, change, wnorm, max_change = 0.0, max_norm = 0.0
    cdef double *a = <double *> malloc(sizeof(double) * (T + 1))
    cdef double *delta = <double *> malloc(sizeof(double) * (T + 1))
    cdef double *Lj = <double *> malloc(sizeof(double) * (T + 1))
    if a == NULL or delta == NULL or Lj == NULL:
        free(a)
        free(delta)
        free(Lj)
        raise MemoryError("group lasso: no memory for the per-task block buffers")
    with nogil:
        while sweep < max_sweeps:
            sweep += 1
            max_change = 0.0
            max_norm = 0.0
            for k in range(A):
                j = active[k]
                if n_threads > 1:
                    for t in prange(T, num_threads=n_threads, schedule="static"):
                        a[t] = (inv_n[t] * _task_dot(&PhiT[j, 0], &R[0], offsets[t], offsets[t + 1])
                                + L[j, t] * W[j, t])
                else:  # no parallel region at all: cheaper for small problems
                    for t in range(T):
                        a[t] = (inv_n[t] * _task_dot(&PhiT[j, 0], &R[0], offsets[t], offsets[t + 1])
                                + L[j, t] * W[j, t])
                for t in range(T):
                    Lj[t] = L[j, t]
                norm_a = 0.0
                for t in range(T):
                    norm_a += a[t] * a[t]
                norm_a = sqrt(norm_a)
                change = 0.0
                wnorm = 0.0
                if norm_a <= lam or L_max[j] <= 0.0:
                    for t in range(T):
                        delta[t] = -W[j, t]
                        W[j, t] = 0.0
                        change += delta[t] * delta[t]
                else:
                    s = _block_scale(a, Lj, T, lam, (norm_a - lam) / L_max[j])
                    for t in range(T):
                        d = a[t] * s / (Lj[t] * s + lam) if a[t] != 0.0 else 0.0
                        delta[t] = d - W[j, t]
                        W[j, t] = d
                        change += delta[t] * delta[t]
                        wnorm += d * d
                if change > 0.0 and n_threads > 1:
                    for t in prange(T, num_threads=n_threads, schedule="static"):
                        if delta[t] != 0.0:
                            _task_axpy(delta[t], &PhiT[j, 0], &R[0], offsets[t], offsets[t + 1])
                elif change > 0.0:
                    for t in range(T):
                        if delta[t] != 0.0:
                            _task_axpy(delta[t], &PhiT[j, 0], &R[0], offsets[t], offsets[t + 1])
                _track_block(change, wnorm, &max_change, &max_norm)
            if max_change <= tol * max_norm:
                break
    free(a)
    free(delta)
    free(Lj)
    return sweep, max_change, max_norm


def gram_bcd_sweeps(
    const double[:, ::1] G,           # IN  (A, A) Gram of the active columns, X_A^T X_A / n
    double[:, ::1] W,                 # IN/OUT (A, T) weights of the active columns, warm start
    double[:, ::1] H,                 # IN/OUT (A, T) correlations X_A^T R / n, consistent with W
    double lam,                       # IN  penalty > 0
    int max_sweeps,                   # IN  sweep limit
    double tol,                       # IN  stop when max ||dW_j|| <= tol * max ||W_j||
):
    """Cyclic block coordinate descent when every task shares one design ("covariance mode").

    All tasks then share L_j = G_jj, so the block minimiser is closed form: w_j = a (1 - lam /
    ||a||)_+ / L_j with a = H_j + L_j w_j.  A block change d updates the cached correlations of
    the active columns, H -= G[:, j] d^T (A T operations instead of touching the n T residuals).

    Returns (sweeps done, last max block change, last max block norm).
    """
    cdef int64_t A = W.shape[0], T = W.shape[1]
    cdef int64_t i, j, t
    cdef int sweep = 0
    cdef double Ljj, norm_a, shrink, d, g, change, wnorm, max_change = 0.0, max_norm = 0.0
    cdef double *delta = <double *> malloc(sizeof(double) * (T + 1))
    if delta == NULL:
        raise MemoryError("group lasso: no memory for the block change buffer")
    with nogil:
        while sweep < max_sweeps:
            sweep += 1
            max_change = 0.0
            max_norm = 0.0
            for j in range(A):
                Ljj = G[j, j]
                norm_a = 0.0
                if Ljj > 0.0:
                    for t in range(T):
                        d = H[j, t] + Ljj * W[j, t]
                        norm_a += d * d
                    norm_a = sqrt(norm_a)
                shrink = (1.0 - lam / norm_a) / Ljj if norm_a > lam else 0.0
                change = 0.0
                wnorm = 0.0
                for t in range(T):
                    d = (H[j, t] + Ljj * W[j, t]) * shrink
                    delta[t] = d - W[j, t]
                    W[j, t] = d
                    change += delta[t] * delta[t]
                    wnorm += d * d
                if change > 0.0:
                    for i in range(A):
                        g = G[i, j]
                        if g != 0.0:
                            for t in range(T):
                                H[i, t] = H[i, t] - g * delta[t]
                _track_block(change, wnorm, &max_change, &max_norm)
            if max_change <= tol * max_norm:
                break
    free(delta)
    return sweep, max_change, max_norm
