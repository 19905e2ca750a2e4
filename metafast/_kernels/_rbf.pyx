"""Gaussian RBF kernels: design matrix, fused weighted sums (one weight matrix or one weight vector
per packed task) and the gradient of sum(G * Phi) with respect to centres and length scales.

    Phi_ij = exp(-0.5 * sum_q ((x_iq - c_jq) * s_jq)^2),   s = 1 / length scale, shape (m, d)

A general (m, d) matrix of inverse length scales covers one shared scale, one per centre and one
per input dimension (ARD).  Work is split into fixed row blocks (or one centre per iteration for
the gradient), each computed by one thread in a fixed order, so results do not depend on the
thread count.  The arithmetic is in C (_feature_blocks.h), vectorised by the compiler.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from metafast._kernels._features cimport (
    mf_rbf_design_rows_d, mf_rbf_design_rows_f, mf_rbf_wsum_rows_d, mf_rbf_wsum_rows_f,
    mf_rbf_vjp_center_d, mf_rbf_vjp_center_f,
)

cdef enum:
    DESIGN_ROWS = 32     # rows per parallel work item of the design matrix
    SUM_ROWS = 256       # rows per block of the fused sums (scratch: SUM_ROWS * (d + 1 + k))
    VJP_ROWS = 512       # rows per block of the gradient (scratch: VJP_ROWS * (2 + 3 d))

SUM_BLOCK = SUM_ROWS     # exported: callers cut packed tasks into segments of at most this size


def rbf_design(
    const floating[:, ::1] X,        # IN  (n, d) inputs
    const floating[:, ::1] Ct,       # IN  (d, m) centres, transposed
    const floating[:, ::1] St,       # IN  (d, m) inverse length scales, transposed
    floating[:, ::1] out,            # OUT (n, m) design matrix
    int n_threads,
):
    """out[i, j] = exp(-0.5 * sum_q ((X[i, q] - Ct[q, j]) * St[q, j])**2)."""
    cdef int64_t n = X.shape[0], d = X.shape[1], m = Ct.shape[1]
    cdef int64_t n_blocks = (n + DESIGN_ROWS - 1) // DESIGN_ROWS
    cdef int64_t blk, r0, nr
    if n == 0 or m == 0:
        return
    with nogil:
        for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
            r0 = blk * DESIGN_ROWS
            nr = min(DESIGN_ROWS, n - r0)
            if floating is double:
                mf_rbf_design_rows_d(&X[r0, 0], nr, d, &Ct[0, 0], &St[0, 0], m, &out[r0, 0])
            else:
                mf_rbf_design_rows_f(&X[r0, 0], nr, d, &Ct[0, 0], &St[0, 0], m, &out[r0, 0])


def rbf_weighted_sum(
    const floating[:, ::1] X,        # IN  (n, d) inputs
    const floating[:, ::1] C,        # IN  (m, d) centres
    const floating[:, ::1] S,        # IN  (m, d) inverse length scales
    const floating[:, ::1] W,        # IN  (m, k) weights
    floating[:, ::1] out,            # OUT (n, k) Phi(X) @ W
    int n_threads,
):
    """out = Phi(X) @ W without forming Phi: blocks of SUM_ROWS rows, one column at a time."""
    cdef int64_t n = X.shape[0], d = X.shape[1], m = C.shape[0], k = W.shape[1]
    cdef int64_t n_blocks = (n + SUM_ROWS - 1) // SUM_ROWS
    cdef int64_t blk, r0, nr
    cdef floating *scratch
    if n == 0 or k == 0:
        return
    if m == 0:
        out[:, :] = 0
        return
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * SUM_ROWS * (d + 1 + k))
        for blk in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            r0 = blk * SUM_ROWS
            nr = min(SUM_ROWS, n - r0)
            if floating is double:
                mf_rbf_wsum_rows_d(&X[r0, 0], nr, d, &C[0, 0], &S[0, 0], m, &W[0, 0], k,
                                   &out[r0, 0], scratch)
            else:
                mf_rbf_wsum_rows_f(&X[r0, 0], nr, d, &C[0, 0], &S[0, 0], m, &W[0, 0], k,
                                   &out[r0, 0], scratch)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of rbf_weighted_sum")


def rbf_weighted_sum_tasks(
    const floating[:, ::1] X,        # IN  (N, d) packed inputs of all tasks
    const int64_t[::1] seg_start,    # IN  (S,) first row of each segment (<= SUM_BLOCK rows)
    const int64_t[::1] seg_task,     # IN  (S,) task of each segment
    const int64_t[::1] seg_stop,     # IN  (S,) one past the last row of each segment
    const floating[:, ::1] C,        # IN  (m, d) centres
    const floating[:, ::1] S,        # IN  (m, d) inverse length scales
    const floating[:, ::1] W,        # IN  (T, m) one weight vector per task
    floating[::1] out,               # OUT (N,) out[i] = Phi(X[i]) . W[task of row i]
    int n_threads,
):
    """Per-task fused weighted sums over packed rows, cut into single-task segments."""
    cdef int64_t n_seg = seg_start.shape[0], d = X.shape[1], m = C.shape[0]
    cdef int64_t s, r0, nr, t
    cdef floating *scratch
    if n_seg == 0:
        return
    if m == 0:
        out[:] = 0
        return
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * SUM_ROWS * (d + 2))
        for s in prange(n_seg, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            r0 = seg_start[s]
            nr = seg_stop[s] - r0
            t = seg_task[s]
            if nr > 0:
                if floating is double:
                    mf_rbf_wsum_rows_d(&X[r0, 0], nr, d, &C[0, 0], &S[0, 0], m, &W[t, 0], 1,
                                       &out[r0], scratch)
                else:
                    mf_rbf_wsum_rows_f(&X[r0, 0], nr, d, &C[0, 0], &S[0, 0], m, &W[t, 0], 1,
                                       &out[r0], scratch)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of rbf_weighted_sum_tasks")


def rbf_vjp(
    const floating[:, ::1] Xt,       # IN  (d, n) inputs, transposed
    const floating[:, ::1] G,        # IN  (n, m) cotangent dL/dPhi
    const floating[:, ::1] C,        # IN  (m, d) centres
    const floating[:, ::1] S,        # IN  (m, d) inverse length scales
    floating[:, ::1] grad_c,         # OUT (m, d) d/dC sum(G * Phi)
    floating[:, ::1] grad_l,         # OUT (m, d) d/dlog(l) sum(G * Phi), per (centre, dimension)
    int n_threads,
):
    """Gradients of sum(G * Phi) for every centre (one centre per parallel iteration).

    grad_l[j, q] is with respect to log of the length scale of centre j in dimension q; callers
    sum it over the axes their parametrisation shares (all, per centre, or per dimension).
    """
    cdef int64_t d = Xt.shape[0], n = Xt.shape[1], m = C.shape[0]
    cdef int64_t j
    cdef floating *scratch
    if m == 0 or d == 0:
        return
    if n == 0:
        grad_c[:, :] = 0
        grad_l[:, :] = 0
        return
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * VJP_ROWS * (2 + 3 * d))
        for j in prange(m, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            if floating is double:
                mf_rbf_vjp_center_d(&Xt[0, 0], n, d, &G[0, 0], m, j, &C[j, 0], &S[j, 0],
                                    &grad_c[j, 0], &grad_l[j, 0], scratch, VJP_ROWS)
            else:
                mf_rbf_vjp_center_f(&Xt[0, 0], n, d, &G[0, 0], m, j, &C[j, 0], &S[j, 0],
                                    &grad_c[j, 0], &grad_l[j, 0], scratch, VJP_ROWS)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of rbf_vjp")
