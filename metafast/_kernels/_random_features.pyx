"""Random projection feature kernels (random Fourier features and random ReLU features).

    Phi_ij = act(b_j + sum_q x_iq Om_jq),   act = scale * cos  (ACT_COS, random Fourier features)
                                            act = max(0, .)    (ACT_RELU, random ReLU features)

Design matrix, fused weighted sums (one weight matrix, or one weight vector per packed task) and,
for the Fourier features, the gradient of sum(G * Phi) with respect to log length scales.  Fixed
row blocks (or one feature per iteration for the gradient), each computed by one thread in a fixed
order: results do not depend on the thread count.  Arithmetic in C (_feature_blocks.h).
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from metafast._kernels._features cimport (
    MF_ACT_COS, MF_ACT_RELU,
    mf_proj_design_rows_d, mf_proj_design_rows_f, mf_proj_wsum_rows_d, mf_proj_wsum_rows_f,
    mf_rff_vjp_feature_d, mf_rff_vjp_feature_f,
)

cdef enum:
    DESIGN_ROWS = 32
    SUM_ROWS = 256
    VJP_ROWS = 512

SUM_BLOCK = SUM_ROWS
ACT_COS = MF_ACT_COS
ACT_RELU = MF_ACT_RELU


cdef int _check_act(int act) except -1:
    if act != MF_ACT_COS and act != MF_ACT_RELU:
        raise ValueError(f"unknown activation code {act}")
    return 0


def proj_design(
    const floating[:, ::1] X,        # IN  (n, d) inputs
    const floating[:, ::1] OmT,      # IN  (d, m) projection, transposed
    const floating[::1] b,           # IN  (m,) offsets
    int act,                         # IN  ACT_COS or ACT_RELU
    double scale,                    # IN  factor of the cosine (unused for ReLU)
    floating[:, ::1] out,            # OUT (n, m) design matrix
    int n_threads,
):
    """out[i, j] = act(b[j] + X[i] . OmT[:, j])."""
    cdef int64_t n = X.shape[0], d = X.shape[1], m = OmT.shape[1]
    cdef int64_t n_blocks = (n + DESIGN_ROWS - 1) // DESIGN_ROWS
    cdef int64_t blk, r0, nr
    _check_act(act)
    if n == 0 or m == 0:
        return
    with nogil:
        for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
            r0 = blk * DESIGN_ROWS
            nr = min(DESIGN_ROWS, n - r0)
            if floating is double:
                mf_proj_design_rows_d(&X[r0, 0], nr, d, &OmT[0, 0], &b[0], m, act, scale,
                                      &out[r0, 0])
            else:
                mf_proj_design_rows_f(&X[r0, 0], nr, d, &OmT[0, 0], &b[0], m, act,
                                      <float> scale, &out[r0, 0])


def proj_weighted_sum(
    const floating[:, ::1] X,        # IN  (n, d) inputs
    const floating[:, ::1] Om,       # IN  (m, d) projection
    const floating[::1] b,           # IN  (m,) offsets
    int act,                         # IN  ACT_COS or ACT_RELU
    double scale,                    # IN  factor of the cosine
    const floating[:, ::1] W,        # IN  (m, k) weights
    floating[:, ::1] out,            # OUT (n, k) Phi(X) @ W
    int n_threads,
):
    """out = Phi(X) @ W without forming Phi: blocks of SUM_ROWS rows, one column at a time."""
    cdef int64_t n = X.shape[0], d = X.shape[1], m = Om.shape[0], k = W.shape[1]
    cdef int64_t n_blocks = (n + SUM_ROWS - 1) // SUM_ROWS
    cdef int64_t blk, r0, nr
    cdef floating *scratch
    _check_act(act)
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
                mf_proj_wsum_rows_d(&X[r0, 0], nr, d, &Om[0, 0], &b[0], m, act, scale,
                                    &W[0, 0], k, &out[r0, 0], scratch)
            else:
                mf_proj_wsum_rows_f(&X[r0, 0], nr, d, &Om[0, 0], &b[0], m, act,
                                    <float> scale, &W[0, 0], k, &out[r0, 0], scratch)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of proj_weighted_sum")


def proj_weighted_sum_tasks(
    const floating[:, ::1] X,        # IN  (N, d) packed inputs of all tasks
    const int64_t[::1] seg_start,    # IN  (S,) first row of each segment (<= SUM_BLOCK rows)
    const int64_t[::1] seg_task,     # IN  (S,) task of each segment
    const int64_t[::1] seg_stop,     # IN  (S,) one past the last row of each segment
    const floating[:, ::1] Om,       # IN  (m, d) projection
    const floating[::1] b,           # IN  (m,) offsets
    int act,                         # IN  ACT_COS or ACT_RELU
    double scale,                    # IN  factor of the cosine
    const floating[:, ::1] W,        # IN  (T, m) one weight vector per task
    floating[::1] out,               # OUT (N,) out[i] = Phi(X[i]) . W[task of row i]
    int n_threads,
):
    """Per-task fused weighted sums over packed rows, cut into single-task segments."""
    cdef int64_t n_seg = seg_start.shape[0], d = X.shape[1], m = Om.shape[0]
    cdef int64_t s, r0, nr, t
    cdef floating *scratch
    _check_act(act)
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
                    mf_proj_wsum_rows_d(&X[r0, 0], nr, d, &Om[0, 0], &b[0], m, act, scale,
                                        &W[t, 0], 1, &out[r0], scratch)
                else:
                    mf_proj_wsum_rows_f(&X[r0, 0], nr, d, &Om[0, 0], &b[0], m, act,
                                        <float> scale, &W[t, 0], 1, &out[r0], scratch)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of proj_weighted_sum_tasks")


def rff_vjp(
    const floating[:, ::1] Xt,       # IN  (d, n) inputs, transposed
    const floating[:, ::1] G,        # IN  (n, m) cotangent dL/dPhi
    const floating[:, ::1] Om,       # IN  (m, d) frequencies eps / l
    const floating[::1] b,           # IN  (m,) phases
    double scale,                    # IN  factor of the cosine
    floating[:, ::1] grad,           # OUT (m, d) grad[j, q] = d sum(G * Phi[:, j]) / d log l_q
    int n_threads,
):
    """Per-feature gradients of sum(G * Phi) with respect to log length scale q (one feature per
    parallel iteration); callers sum over j (and over q for one shared length scale)."""
    cdef int64_t d = Xt.shape[0], n = Xt.shape[1], m = Om.shape[0]
    cdef int64_t j
    cdef floating *scratch
    if m == 0 or d == 0:
        return
    if n == 0:
        grad[:, :] = 0
        return
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * VJP_ROWS * (2 + d))
        for j in prange(m, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            if floating is double:
                mf_rff_vjp_feature_d(&Xt[0, 0], n, d, &G[0, 0], m, j, &Om[j, 0], b[j], scale,
                                     &grad[j, 0], scratch, VJP_ROWS)
            else:
                mf_rff_vjp_feature_f(&Xt[0, 0], n, d, &G[0, 0], m, j, &Om[j, 0], b[j],
                                     <float> scale, &grad[j, 0], scratch, VJP_ROWS)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of rff_vjp")
