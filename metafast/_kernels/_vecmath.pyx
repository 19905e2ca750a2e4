"""The vectorised exp / cos / sin of _vecmath.h on whole arrays (for accuracy tests)."""

from cython cimport floating
from libc.stdint cimport int64_t

from metafast._kernels._features cimport (
    mf_exp_block_d, mf_exp_block_f, mf_trig_block_d, mf_trig_block_f,
)


def vexp(const floating[::1] x, floating[::1] out):     # IN x (n,), OUT out (n,) = exp(x)
    """out = exp(x) with the kernels' vectorised exp."""
    cdef int64_t n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is double:
            mf_exp_block_d(&x[0], &out[0], n)
        else:
            mf_exp_block_f(&x[0], &out[0], n)


def vcos(const floating[::1] x, floating[::1] out):     # IN x (n,), OUT out (n,) = cos(x)
    """out = cos(x) with the kernels' vectorised cos (libm beyond the reduction limit)."""
    cdef int64_t n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is double:
            mf_trig_block_d(&x[0], &out[0], n, 0)
        else:
            mf_trig_block_f(&x[0], &out[0], n, 0)


def vsin(const floating[::1] x, floating[::1] out):     # IN x (n,), OUT out (n,) = sin(x)
    """out = sin(x) with the kernels' vectorised sin (libm beyond the reduction limit)."""
    cdef int64_t n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is double:
            mf_trig_block_d(&x[0], &out[0], n, 3)
        else:
            mf_trig_block_f(&x[0], &out[0], n, 3)
