"""Exact meta-gradients of MAML-family learners on models linear in the weights (squared loss).

Per task t the inner loss is L_in(w) = ||Phi w - y||^2 / (2 n) on its inner rows and the outer
(meta) loss L_out(w) = ||Phi_o w - y_o||^2 / (2 n_o) on its outer rows.  Inner methods:

- gradient descent (MAML, first-order MAML, Meta-SGD, Reptile), k steps from w_0 with
  per-coordinate rates a (MAML: all equal):  w_{j+1} = w_j - a * g_j,  g_j = Phi^T (Phi w_j - y) / n;
- proximal (iMAML):  w* = argmin L_in(w) + lam/2 ||w - w_0||^2 = (A + lam I)^{-1} (b + lam w_0),
  through the dual n x n system (Woodbury) when a task has fewer rows than basis functions.

Outputs per task (never summed here, so results do not depend on the thread count):

- MAML / Meta-SGD: v_k = dL_out/dw_k, then backwards v_j = (I - A diag(a)) v_{j+1}; the gradient
  with respect to w_0 is v_0 (second order included) and with respect to a is -sum_j v_{j+1} * g_j;
- first-order MAML: v_k;   Reptile: w_0 - w_k;   iMAML: lam (A + lam I)^{-1} v (implicit gradient);
- optionally dL/dPhi for the inner and outer rows (for a learnable basis, through design_vjp).

``prange`` over tasks with explicit ``n_threads``; per-thread scratch is allocated inside the
parallel block and freed there; a failed allocation marks the thread's tasks with status -3 so
the caller raises MemoryError after the block.  BLAS only through _linalg (column-major: a
C-ordered (n, m) design is the (m, n) column-major matrix PhiT).
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from metafast._kernels._linalg cimport axpy, dot, gemv, potrf, potrs, syrk

cdef enum:
    MAML = 0          # also Meta-SGD (the rates vector is then learned)
    FOMAML = 1
    REPTILE = 2
    IMAML = 3
    OK = 0
    SINGULAR = -1
    NO_MEMORY = -3

METHOD_MAML = MAML
METHOD_FOMAML = FOMAML
METHOD_REPTILE = REPTILE
METHOD_IMAML = IMAML
STATUS_SINGULAR = SINGULAR
STATUS_NO_MEMORY = NO_MEMORY


# ------------------------------------------------------------------------------- small helpers
cdef inline void _residual(const floating* PhiT, const floating* y, int n, int m, const floating* w,
                           floating* r) noexcept nogil:
    """r = Phi w - y."""
    if n == 0:
        return
    gemv(c'T', m, n, 1.0, PhiT, m, w, 1, 0.0, r, 1)
    axpy(n, -1.0, y, 1, r, 1)


cdef inline floating _loss_and_grad(const floating* PhiT, const floating* y, int n, int m,
                                    const floating* w, floating* r, floating* g) noexcept nogil:
    """r = Phi w - y, g = Phi^T r / n; returns ||r||^2 / (2 n) (0 and g = 0 when n = 0)."""
    if n == 0:
        memset(g, 0, m * sizeof(floating))
        return 0.0
    _residual(PhiT, y, n, m, w, r)
    gemv(c'N', m, n, 1.0 / n, PhiT, m, r, 1, 0.0, g, 1)
    return dot(n, r, 1, r, 1) / (2.0 * n)


cdef inline void _add_outer(floating* G, int n, int m, floating alpha, const floating* a,
                            const floating* b) noexcept nogil:
    """G[i, :] += alpha * a[i] * b for the n rows of the C-ordered (n, m) block G."""
    cdef int i, q
    cdef floating s
    for i in range(n):
        s = alpha * a[i]
        for q in range(m):
            G[i * m + q] += s * b[q]


cdef void _gd_forward(const floating* PhiT, const floating* y, int n, int m, const floating* w0,
                      const floating* rates, int k, floating* Wit, floating* Git,
                      floating* r) noexcept nogil:
    """Iterates Wit[j] (j = 0..k, rows of m) and inner gradients Git[j] (j < k)."""
    cdef int j, q
    memcpy(Wit, w0, m * sizeof(floating))
    for j in range(k):
        _loss_and_grad(PhiT, y, n, m, &Wit[j * m], r, &Git[j * m])
        for q in range(m):
            Wit[(j + 1) * m + q] = Wit[j * m + q] - rates[q] * Git[j * m + q]


cdef int _prox_factor(const floating* PhiT, int n, int m, floating lam, floating* F) noexcept nogil:
    """Cholesky factor (upper) for solves with M = Phi^T Phi / n + lam I: of M itself when n >= m,
    else of the dual C = Phi Phi^T + n lam I (n x n, Woodbury), so a solve costs O(min(n, m)^3)."""
    cdef int q, dim = m if n >= m else n
    memset(F, 0, dim * dim * sizeof(floating))
    if n >= m:
        syrk(c'U', c'N', m, n, 1.0 / n, PhiT, m, 0.0, F, m)
        for q in range(m):
            F[q * m + q] += lam
    else:
        syrk(c'U', c'T', n, m, 1.0, PhiT, m, 0.0, F, n)
        for q in range(n):
            F[q * n + q] += n * lam
    if dim > 0 and potrf(c'U', dim, F, dim) != 0:
        return SINGULAR
    return OK


cdef void _prox_apply(const floating* PhiT, int n, int m, floating lam, const floating* F, floating* x,
                      floating* tmp) noexcept nogil:
    """x = M^{-1} x with _prox_factor's F; primal potrs, or (x - Phi^T C^{-1} Phi x) / lam."""
    cdef int q
    if n >= m:
        potrs(c'U', m, 1, F, m, x, m)
        return
    if n > 0:
        gemv(c'T', m, n, 1.0, PhiT, m, x, 1, 0.0, tmp, 1)
        potrs(c'U', n, 1, F, n, tmp, n)
        gemv(c'N', m, n, -1.0, PhiT, m, tmp, 1, 1.0, x, 1)
    for q in range(m):
        x[q] /= lam


cdef int _prox_solve(const floating* PhiT, const floating* y, int n, int m, const floating* w0,
                     floating lam, floating* F, floating* tmp, floating* w) noexcept nogil:
    """w = argmin ||Phi w - y||^2 / (2n) + lam/2 ||w - w0||^2 = M^{-1} (Phi^T y / n + lam w0)."""
    cdef int q
    if _prox_factor(PhiT, n, m, lam, F) != OK:
        return SINGULAR
    if n > 0:
        gemv(c'N', m, n, 1.0 / n, PhiT, m, y, 1, 0.0, w, 1)
    else:
        memset(w, 0, m * sizeof(floating))
    for q in range(m):
        w[q] += lam * w0[q]
    _prox_apply(PhiT, n, m, lam, F, w, tmp)
    return OK


# ------------------------------------------------------------------------------- one task
cdef int _task_meta_grad(
    int method, int k, floating lam,
    const floating* PhiT, const floating* y, int n,          # inner rows
    const floating* PhiqT, const floating* yq, int nq,       # outer rows
    int m, const floating* w0, const floating* rates,
    floating* loss, floating* gw, floating* ga,              # outputs (ga: MAML only)
    floating* Gin, floating* Gout,                           # dL/dPhi blocks or NULL
    floating* Wit, floating* Git, floating* v, floating* u, floating* r, floating* p,
    floating* M,
) noexcept nogil:
    cdef int j, q
    cdef floating* wk
    memset(ga, 0, m * sizeof(floating))
    if Gin != NULL and n > 0:
        memset(Gin, 0, n * m * sizeof(floating))
    if Gout != NULL and nq > 0:
        memset(Gout, 0, nq * m * sizeof(floating))

    if method == IMAML:
        wk = Wit
        if _prox_solve(PhiT, y, n, m, w0, lam, M, r, wk) != OK:
            return SINGULAR
    else:
        _gd_forward(PhiT, y, n, m, w0, rates, k, Wit, Git, r)
        wk = &Wit[k * m]

    if method == REPTILE and nq == 0:
        # no outer rows: the loss (and the basis gradient) are those after adaptation
        loss[0] = _loss_and_grad(PhiT, y, n, m, wk, r, v)
        if Gin != NULL and n > 0:
            _add_outer(Gin, n, m, 1.0 / n, r, wk)
    else:
        loss[0] = _loss_and_grad(PhiqT, yq, nq, m, wk, p, v)     # v = dL_out / dw_k
        if Gout != NULL and nq > 0:
            _add_outer(Gout, nq, m, 1.0 / nq, p, wk)

    if method == REPTILE:
        for q in range(m):
            gw[q] = w0[q] - wk[q]
        return OK
    if method == FOMAML:
        memcpy(gw, v, m * sizeof(floating))
        return OK
    if method == IMAML:
        memcpy(u, v, m * sizeof(floating))
        _prox_apply(PhiT, n, m, lam, M, u, r)                      # z = (A + lam I)^{-1} v
        for q in range(m):
            gw[q] = lam * u[q]
        if Gin != NULL and n > 0:
            _residual(PhiT, y, n, m, wk, r)
            gemv(c'T', m, n, 1.0, PhiT, m, u, 1, 0.0, p, 1)      # p = Phi z
            _add_outer(Gin, n, m, -1.0 / n, r, u)
            _add_outer(Gin, n, m, -1.0 / n, p, wk)
        return OK

    # MAML / Meta-SGD: exact reverse pass through the k inner steps
    for j in range(k - 1, -1, -1):
        for q in range(m):
            u[q] = rates[q] * v[q]
            ga[q] -= v[q] * Git[j * m + q]
        if n == 0:
            continue
        gemv(c'T', m, n, 1.0, PhiT, m, u, 1, 0.0, p, 1)           # p = Phi u
        if Gin != NULL:
            _residual(PhiT, y, n, m, &Wit[j * m], r)
            _add_outer(Gin, n, m, -1.0 / n, r, u)
            _add_outer(Gin, n, m, -1.0 / n, p, &Wit[j * m])
        gemv(c'N', m, n, -1.0 / n, PhiT, m, p, 1, 1.0, v, 1)      # v -= Phi^T p / n
    memcpy(gw, v, m * sizeof(floating))
    return OK


cdef int64_t _max_size(const int64_t[::1] off) noexcept nogil:
    cdef int64_t t, best = 0
    for t in range(off.shape[0] - 1):
        if off[t + 1] - off[t] > best:
            best = off[t + 1] - off[t]
    return best


# ------------------------------------------------------------------------------- entry points
cdef inline const floating* _rows(const floating[:, ::1] A) noexcept nogil:
    """Pointer to A's first row, or NULL when A has no rows (never dereferenced then)."""
    return &A[0, 0] if A.shape[0] > 0 and A.shape[1] > 0 else NULL


cdef inline const floating* _vec(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


def _check_method(int method, int inner_steps):
    if method < MAML or method > IMAML:
        raise ValueError(f"unknown method code {method}")
    if inner_steps < 0:
        raise ValueError(f"inner_steps must be >= 0; got {inner_steps}")


def _check_shapes(int64_t m, Phi_rows, y_rows, off_last, name):
    if Phi_rows != y_rows or off_last != Phi_rows:
        raise ValueError(f"{name}: {Phi_rows} design rows, {y_rows} targets and offsets ending at "
                         f"{off_last} do not match")


def meta_grad(
    int method,                        # IN  METHOD_*
    int inner_steps,                   # IN  k (gradient-descent methods)
    double lam,                        # IN  proximal strength (iMAML)
    const floating[:, ::1] Phi,        # IN  (N, m) inner rows of all tasks
    const floating[::1] y,             # IN  (N,)
    const int64_t[::1] off,            # IN  (T+1,) inner offsets
    const floating[:, ::1] Phiq,       # IN  (Nq, m) outer rows
    const floating[::1] yq,            # IN  (Nq,)
    const int64_t[::1] qoff,           # IN  (T+1,) outer offsets
    const floating[::1] w0,            # IN  (m,) initial weights
    const floating[::1] rates,         # IN  (m,) inner learning rates
    floating[::1] loss,                # OUT (T,) outer loss per task
    floating[:, ::1] grad_w,           # OUT (T, m) d loss / d w0 (Reptile: w0 - w_k)
    floating[:, ::1] grad_rates,       # OUT (T, m) d loss / d rates (MAML / Meta-SGD; else 0)
    floating[:, ::1] G,                # OUT (N, m) d loss / d Phi, or (0, m) to skip
    floating[:, ::1] Gq,               # OUT (Nq, m) d loss / d Phiq, or (0, m) to skip
    int[::1] status,                   # OUT (T,) 0 ok, -1 singular, -3 no memory
    int n_threads,
):
    """Per-task meta-loss and meta-gradients of a meta-batch (see the module docstring)."""
    cdef int64_t T = off.shape[0] - 1, m = Phi.shape[1], t, n, nq
    cdef int k = inner_steps if method != IMAML else 0
    cdef bint with_g = G.shape[0] > 0
    cdef bint with_gq = Gq.shape[0] > 0
    cdef int64_t nmax, scratch_size
    cdef floating *scratch
    cdef const floating *P0
    cdef const floating *Q0
    cdef const floating *y0
    cdef const floating *yq0
    _check_method(method, inner_steps)
    _check_shapes(m, Phi.shape[0], y.shape[0], off[T], "inner rows")
    _check_shapes(m, Phiq.shape[0], yq.shape[0], qoff[qoff.shape[0] - 1], "outer rows")
    if (qoff.shape[0] != T + 1 or Phiq.shape[1] != m or w0.shape[0] != m or rates.shape[0] != m
            or loss.shape[0] != T or grad_w.shape[0] != T or grad_w.shape[1] != m
            or grad_rates.shape[0] != T or grad_rates.shape[1] != m or status.shape[0] != T
            or (with_g and (G.shape[0] != Phi.shape[0] or G.shape[1] != m))
            or (with_gq and (Gq.shape[0] != Phiq.shape[0] or Gq.shape[1] != m))):
        raise ValueError("meta_grad: inconsistent array shapes")
    if T == 0 or m == 0:
        return
    nmax = max(_max_size(off), _max_size(qoff), 1)
    scratch_size = (2 * k + 4) * m + 2 * nmax + m * m
    P0, Q0, y0, yq0 = _rows(Phi), _rows(Phiq), _vec(y), _vec(yq)
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * scratch_size)
        for t in prange(T, schedule="dynamic", chunksize=8):
            if scratch == NULL:
                status[t] = NO_MEMORY
                continue
            n = off[t + 1] - off[t]
            nq = qoff[t + 1] - qoff[t]
            status[t] = _task_meta_grad(
                method, k, <floating> lam,
                P0 + off[t] * m if n > 0 else NULL, y0 + off[t] if n > 0 else NULL, <int> n,
                Q0 + qoff[t] * m if nq > 0 else NULL, yq0 + qoff[t] if nq > 0 else NULL, <int> nq,
                <int> m, &w0[0], &rates[0], &loss[t], &grad_w[t, 0], &grad_rates[t, 0],
                &G[off[t], 0] if with_g and n > 0 else NULL,
                &Gq[qoff[t], 0] if with_gq and nq > 0 else NULL,
                scratch, scratch + (k + 1) * m, scratch + (2 * k + 1) * m,
                scratch + (2 * k + 2) * m, scratch + (2 * k + 3) * m,
                scratch + (2 * k + 3) * m + nmax, scratch + (2 * k + 3) * m + 2 * nmax)
        free(scratch)


def adapt_tasks(
    int method,                        # IN  METHOD_*
    int inner_steps,                   # IN  k
    double lam,                        # IN  proximal strength (iMAML)
    const floating[:, ::1] Phi,        # IN  (N, m) support rows of all tasks
    const floating[::1] y,             # IN  (N,)
    const int64_t[::1] off,            # IN  (T+1,)
    const floating[::1] w0,            # IN  (m,)
    const floating[::1] rates,         # IN  (m,)
    floating[:, ::1] W,                # OUT (T, m) adapted weights
    int[::1] status,                   # OUT (T,) 0 ok, -1 singular, -3 no memory
    int n_threads,
):
    """The adapted weights of every task: k gradient steps from w0, or the proximal solution."""
    cdef int64_t T = off.shape[0] - 1, m = Phi.shape[1], t, n
    cdef int k = inner_steps if method != IMAML else 0
    cdef int64_t nmax, scratch_size
    cdef floating *scratch
    cdef const floating *P0
    cdef const floating *y0
    _check_method(method, inner_steps)
    _check_shapes(m, Phi.shape[0], y.shape[0], off[T], "support rows")
    if (w0.shape[0] != m or rates.shape[0] != m or W.shape[0] != T or W.shape[1] != m
            or status.shape[0] != T):
        raise ValueError("adapt_tasks: inconsistent array shapes")
    if T == 0 or m == 0:
        return
    nmax = max(_max_size(off), 1)
    scratch_size = (2 * k + 1) * m + nmax + m * m
    P0, y0 = _rows(Phi), _vec(y)
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * scratch_size)
        for t in prange(T, schedule="dynamic", chunksize=16):
            if scratch == NULL:
                status[t] = NO_MEMORY
                continue
            n = off[t + 1] - off[t]
            if method == IMAML:
                status[t] = _prox_solve(P0 + off[t] * m if n > 0 else NULL, y0 + off[t] if n > 0 else NULL,
                                        <int> n, <int> m, &w0[0], <floating> lam,
                                        scratch + (2 * k + 1) * m + nmax, scratch + (2 * k + 1) * m, &W[t, 0])
            else:
                _gd_forward(P0 + off[t] * m if n > 0 else NULL, y0 + off[t] if n > 0 else NULL,
                            <int> n, <int> m, &w0[0], &rates[0], k, scratch, scratch + (k + 1) * m,
                            scratch + (2 * k + 1) * m)
                memcpy(&W[t, 0], scratch + k * m, m * sizeof(floating))
                status[t] = OK
        free(scratch)
