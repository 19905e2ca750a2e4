# Shared inline helpers for the row-blocked kernels (the tile families of _families.pyx.tp,
# _bspline, _tasksum), and the per-task scratch size of the learner kernels.
#
# The recurrence families evaluate BLOCK rows at a time into a small per-thread "tile"
# (n_basis x BLOCK doubles, column-major inside the block so the inner loop over the rows of
# the block is contiguous and vectorises).  The tile lives in L1 cache: the (n, m) design
# matrix is never materialised by the fused sums.

from cython cimport floating


cdef enum:
    BLOCK = 8             # rows evaluated together (inner vectorised loop length)
    CHUNK_BLOCKS = 64     # blocks per deterministic reduction chunk (gradients)


cdef inline Py_ssize_t max_task_size(const long long[::1] offsets) noexcept nogil:
    """The most rows any packed task has (0 without tasks): what per-task scratch is sized for."""
    cdef Py_ssize_t t, best = 0
    for t in range(offsets.shape[0] - 1):
        if offsets[t + 1] - offsets[t] > best:
            best = offsets[t + 1] - offsets[t]
    return best


cdef inline Py_ssize_t task_of_row(const long long* offsets, Py_ssize_t n_tasks,
                                   Py_ssize_t row) noexcept nogil:
    """Index t of the packed task holding `row`: the largest t with offsets[t] <= row.

    offsets has n_tasks + 1 entries, starts at 0, never decreases and ends above `row`, so
    empty tasks (repeated offsets) are skipped.  This is the one way the kernels find a row's
    task: a loop over consecutive rows calls it once per task it meets (rows row..offsets[t+1]-1
    all belong to t), not once per row.
    """
    cdef Py_ssize_t lo = 0, hi = n_tasks, mid
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offsets[mid] <= row:
            lo = mid
        else:
            hi = mid
    return lo


cdef inline void tile_to_rows(const double* tile, Py_ssize_t m, Py_ssize_t i0, Py_ssize_t nb,
                              floating[:, ::1] Phi) noexcept nogil:
    """Phi[i0 + r, j] = tile[j * BLOCK + r] for the nb valid rows of the block."""
    cdef Py_ssize_t r, j
    for r in range(nb):
        for j in range(m):
            Phi[i0 + r, j] = <floating> tile[j * BLOCK + r]


cdef inline void tile_dot_weights(const double* tile, Py_ssize_t m, Py_ssize_t i0, Py_ssize_t nb,
                                  const floating[:, ::1] W, floating[:, ::1] out) noexcept nogil:
    """out[i0 + r, o] = sum_j tile[j, r] * W[j, o] (accumulated in double)."""
    cdef double acc[BLOCK]
    cdef double w
    cdef Py_ssize_t r, j, o
    for o in range(W.shape[1]):
        for r in range(BLOCK):
            acc[r] = 0.0
        for j in range(m):
            w = W[j, o]
            for r in range(BLOCK):
                acc[r] = acc[r] + w * tile[j * BLOCK + r]
        for r in range(nb):
            out[i0 + r, o] = <floating> acc[r]


cdef inline void tile_dot_task_weights(const double* tile, Py_ssize_t m, Py_ssize_t i0,
                                       Py_ssize_t nb, const long long* offsets,
                                       const floating[:, ::1] W,
                                       floating[::1] out) noexcept nogil:
    """out[i0 + r] = sum_j tile[j, r] * W[t, j] where t is the task holding row i0 + r."""
    cdef double acc
    cdef Py_ssize_t r = 0, j, t, end
    while r < nb:
        t = task_of_row(offsets, W.shape[0], i0 + r)
        end = min(<Py_ssize_t> offsets[t + 1] - i0, nb)
        while r < end:
            acc = 0.0
            for j in range(m):
                acc = acc + tile[j * BLOCK + r] * W[t, j]
            out[i0 + r] = <floating> acc
            r += 1
