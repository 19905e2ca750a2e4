"""Per-task weighted sums over packed tasks, given a block of design-matrix rows."""

from cython cimport floating

from metafast._kernels._rowblocks cimport task_of_row


def rows_dot_task_weights(
    const floating[:, ::1] Phi,           # IN  (b, m) design rows start..start+b of the packed X
    const long long[::1] offsets,         # IN  (T+1,) task boundaries in the packed rows
    const floating[:, ::1] W,             # IN  (T, m) one weight vector per task
    Py_ssize_t start,                     # IN  packed index of Phi's first row
    floating[::1] out,                    # OUT (b,) out[i] = Phi[i] . W[task of row start+i]
):
    """out[i] = Phi[i] @ W[t(start + i)], where t(r) is the task whose rows contain r."""
    cdef Py_ssize_t b = Phi.shape[0], m = Phi.shape[1], n_tasks = W.shape[0]
    cdef Py_ssize_t i = 0, j, t, end
    cdef floating acc
    with nogil:
        while i < b:
            t = task_of_row(&offsets[0], n_tasks, start + i)
            end = min(<Py_ssize_t> offsets[t + 1] - start, b)
            while i < end:
                acc = 0
                for j in range(m):
                    acc = acc + Phi[i, j] * W[t, j]
                out[i] = acc
                i += 1
