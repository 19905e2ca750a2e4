"""Learnable neural feature map (the ``mlp`` basis): one or two dense layers.

    H = act(X W1 + b1)              (n, h)     one hidden layer:  Phi = H
    Phi = act(H W2 + b2)            (n, m)     two hidden layers

act is tanh (ACT_TANH) or max(0, .) (ACT_RELU).  Design, fused weighted sum (Phi @ W without
the (n, m) matrix) and the vector-Jacobian product of sum(G * Phi) with respect to W1, b1, W2,
b2.  Work is cut into fixed blocks of ROWS rows; each block's layers are BLAS gemm calls on
per-thread scratch; the gradient of each block is written to its own slot (the caller sums the
slots in block order), so results do not depend on the thread count.  Row-major (r, c) arrays
are column-major (c, r) matrices for BLAS.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport tanh
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from metafast._kernels._linalg cimport gemm

cdef enum:
    TANH = 0
    RELU = 1
    ROWS = 128

ACT_TANH = TANH
ACT_RELU = RELU
BLOCK_ROWS = ROWS


cdef void _layer(const floating* A, int nr, int k, const floating* W, const floating* b, int m, int act,
                 floating* out) noexcept nogil:
    """out (nr, m) = act(A (nr, k) @ W (k, m) + b)."""
    cdef int i, j
    cdef floating z
    for i in range(nr):
        memcpy(&out[i * m], b, m * sizeof(floating))
    gemm(c'N', c'N', m, nr, k, 1.0, W, m, A, k, 1.0, out, m)
    for i in range(nr * m):
        z = out[i]
        if act == TANH:
            out[i] = tanh(z)
        elif z < 0:
            out[i] = 0


cdef void _times_derivative(floating* D, const floating* A, int count, int act) noexcept nogil:
    """D *= act'(z), written with the activation a = act(z): 1 - a^2 (tanh) or [a > 0] (ReLU)."""
    cdef int i
    for i in range(count):
        if act == TANH:
            D[i] *= 1 - A[i] * A[i]
        elif A[i] <= 0:
            D[i] = 0


cdef void _column_sums(const floating* D, int nr, int m, floating* out) noexcept nogil:
    cdef int i, j
    for j in range(m):
        out[j] = 0
    for i in range(nr):
        for j in range(m):
            out[j] += D[i * m + j]


cdef void _forward(const floating* X, int nr, int d, const floating* W1, const floating* b1, int h,
                   const floating* W2, const floating* b2, int m, bint two, int act, floating* H,
                   floating* Phi) noexcept nogil:
    """Phi (nr, m) of nr rows; H (nr, h) holds the first layer (== Phi with one layer)."""
    if two:
        _layer(X, nr, d, W1, b1, h, act, H)
        _layer(H, nr, h, W2, b2, m, act, Phi)
    else:
        _layer(X, nr, d, W1, b1, h, act, Phi)


cdef int _check(const floating[:, ::1] X, const floating[:, ::1] W1, const floating[::1] b1,
                const floating[:, ::1] W2, const floating[::1] b2, int act) except -1:
    if act != TANH and act != RELU:
        raise ValueError(f"unknown activation code {act}")
    if W1.shape[0] != X.shape[1] or b1.shape[0] != W1.shape[1]:
        raise ValueError("mlp kernel: W1 must be (d, h) and b1 (h,)")
    if W2.shape[0] > 0 and (W2.shape[0] != W1.shape[1] or b2.shape[0] != W2.shape[1]):
        raise ValueError("mlp kernel: W2 must be (h, m) and b2 (m,)")
    return 0


def mlp_design(
    const floating[:, ::1] X,        # IN  (n, d) standardised inputs
    const floating[:, ::1] W1,       # IN  (d, h)
    const floating[::1] b1,          # IN  (h,)
    const floating[:, ::1] W2,       # IN  (h, m), or (0, 0) for one layer
    const floating[::1] b2,          # IN  (m,), or (0,)
    int act,                         # IN  ACT_TANH or ACT_RELU
    floating[:, ::1] out,            # OUT (n, m) design matrix
    int n_threads,
):
    """out = Phi(X)."""
    _check(X, W1, b1, W2, b2, act)
    cdef int64_t n = X.shape[0], n_blocks = (n + ROWS - 1) // ROWS, blk, r0
    cdef int d = X.shape[1], h = W1.shape[1], m = out.shape[1], nr
    cdef bint two = W2.shape[0] > 0
    cdef floating *H
    cdef int failed = 0
    if n == 0 or m == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        H = <floating *> malloc(sizeof(floating) * ROWS * h) if two else NULL
        for blk in prange(n_blocks, schedule="static"):
            if two and H == NULL:
                failed += 1
                continue
            r0 = blk * ROWS
            nr = <int> min(ROWS, n - r0)
            _forward(&X[r0, 0], nr, d, &W1[0, 0], &b1[0], h, &W2[0, 0] if two else NULL,
                     &b2[0] if two else NULL, m, two, act, H, &out[r0, 0])
        free(H)
    if failed:
        raise MemoryError("mlp_design: could not allocate thread scratch")


def mlp_weighted_sum(
    const floating[:, ::1] X,        # IN  (n, d) standardised inputs
    const floating[:, ::1] W1,       # IN  (d, h)
    const floating[::1] b1,          # IN  (h,)
    const floating[:, ::1] W2,       # IN  (h, m), or (0, 0) for one layer
    const floating[::1] b2,          # IN  (m,), or (0,)
    int act,                         # IN  ACT_TANH or ACT_RELU
    const floating[:, ::1] W,        # IN  (m, k) weights
    floating[:, ::1] out,            # OUT (n, k) Phi(X) @ W
    int n_threads,
):
    """out = Phi(X) @ W, one block of ROWS design rows at a time (never the (n, m) matrix)."""
    _check(X, W1, b1, W2, b2, act)
    cdef int64_t n = X.shape[0], n_blocks = (n + ROWS - 1) // ROWS, blk, r0
    cdef int d = X.shape[1], h = W1.shape[1], m = W.shape[0], k = W.shape[1], nr
    cdef bint two = W2.shape[0] > 0
    cdef floating *scratch
    cdef int failed = 0
    if n == 0 or k == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * ROWS * (h + m))
        for blk in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                failed += 1
                continue
            r0 = blk * ROWS
            nr = <int> min(ROWS, n - r0)
            _forward(&X[r0, 0], nr, d, &W1[0, 0], &b1[0], h, &W2[0, 0] if two else NULL,
                     &b2[0] if two else NULL, m, two, act, scratch, scratch + ROWS * h)
            gemm(c'N', c'N', k, nr, m, 1.0, &W[0, 0], k, scratch + ROWS * h, m, 0.0, &out[r0, 0], k)
        free(scratch)
    if failed:
        raise MemoryError("mlp_weighted_sum: could not allocate thread scratch")


def mlp_vjp(
    const floating[:, ::1] X,        # IN  (n, d) standardised inputs
    const floating[:, ::1] W1,       # IN  (d, h)
    const floating[::1] b1,          # IN  (h,)
    const floating[:, ::1] W2,       # IN  (h, m), or (0, 0) for one layer
    const floating[::1] b2,          # IN  (m,), or (0,)
    int act,                         # IN  ACT_TANH or ACT_RELU
    const floating[:, ::1] G,        # IN  (n, m) cotangent d L / d Phi
    floating[:, :, ::1] gW1,         # OUT (n_blocks, d, h) per-block gradients
    floating[:, ::1] gb1,            # OUT (n_blocks, h)
    floating[:, :, ::1] gW2,         # OUT (n_blocks, h, m), or (n_blocks, 0, 0)
    floating[:, ::1] gb2,            # OUT (n_blocks, m), or (n_blocks, 0)
    int n_threads,
):
    """Per-block gradients of sum(G * Phi(X)) with respect to W1, b1, W2, b2 (n_blocks =
    ceil(n / BLOCK_ROWS)); the caller sums them over blocks."""
    _check(X, W1, b1, W2, b2, act)
    cdef int64_t n = X.shape[0], n_blocks = (n + ROWS - 1) // ROWS, blk, r0
    cdef int d = X.shape[1], h = W1.shape[1], m = G.shape[1], nr, i
    cdef bint two = W2.shape[0] > 0
    cdef floating *scratch
    cdef floating *H
    cdef floating *P
    cdef floating *D2
    cdef floating *D1
    cdef int failed = 0
    if gW1.shape[0] != n_blocks or gb1.shape[0] != n_blocks or G.shape[0] != n:
        raise ValueError("mlp_vjp: G must have n rows and the outputs ceil(n / BLOCK_ROWS) blocks")
    if n == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        scratch = <floating *> malloc(sizeof(floating) * ROWS * (2 * h + 2 * m))
        for blk in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                failed += 1
                continue
            H, P = scratch, scratch + ROWS * h
            D2, D1 = P + ROWS * m, P + 2 * ROWS * m
            r0 = blk * ROWS
            nr = <int> min(ROWS, n - r0)
            _forward(&X[r0, 0], nr, d, &W1[0, 0], &b1[0], h, &W2[0, 0] if two else NULL,
                     &b2[0] if two else NULL, m, two, act, H, P)
            if two:
                memcpy(D2, &G[r0, 0], nr * m * sizeof(floating))
                _times_derivative(D2, P, nr * m, act)
                gemm(c'N', c'T', m, h, nr, 1.0, D2, m, H, h, 0.0, &gW2[blk, 0, 0], m)
                _column_sums(D2, nr, m, &gb2[blk, 0])
                gemm(c'T', c'N', h, nr, m, 1.0, &W2[0, 0], m, D2, m, 0.0, D1, h)
                _times_derivative(D1, H, nr * h, act)
            else:
                memcpy(D1, &G[r0, 0], nr * h * sizeof(floating))
                _times_derivative(D1, P, nr * h, act)
            gemm(c'N', c'T', h, d, nr, 1.0, D1, h, &X[r0, 0], d, 0.0, &gW1[blk, 0, 0], h)
            _column_sums(D1, nr, h, &gb1[blk, 0])
        free(scratch)
    if failed:
        raise MemoryError("mlp_vjp: could not allocate thread scratch")
