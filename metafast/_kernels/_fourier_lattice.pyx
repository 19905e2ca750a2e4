"""Multivariate Fourier features on a total-degree frequency lattice, by angle addition.

Pair q has an integer vector k_q (first non-zero entry positive, graded by |k_q|_1) and the
angle theta_q(x) = sum_j k_qj w_j x_j with one base angular frequency w_j per dimension.
Columns: an optional constant, then cos(theta_q), sin(theta_q) for q = 0, 1, ... (the last
sine may be dropped: it is then kept in a spare tile column).

Recurrence: k_q = k_p + sigma e_l for an earlier pair p (or p = none, the zero vector) stored
either as k_p or as -k_p (parent_sign -1: cos is even, sin odd), so

    cos(theta_q) = c_p cos(w_l x_l) - sigma s_p sin(w_l x_l)
    sin(theta_q) = s_p cos(w_l x_l) + sigma c_p sin(w_l x_l)

Per row: d sin/cos pairs (one per dimension) and 6 flops per pair.  The depth of the
recurrence is |k|_1 (small for a total-degree lattice), so no re-seeding is needed.
"""

from libc.math cimport cos, sin
from libc.stdlib cimport malloc, free
from cython cimport floating
from cython.parallel cimport parallel, prange

from metafast._kernels._rowblocks cimport (
    BLOCK, CHUNK_BLOCKS, tile_dot_task_weights, tile_dot_weights, tile_to_rows,
)

ROWS_PER_CHUNK = BLOCK * CHUNK_BLOCKS  # rows per partial sum of lattice_base_grad


ctypedef struct Lattice:
    Py_ssize_t m                  # output columns
    Py_ssize_t d                  # input dimensions
    Py_ssize_t n_pairs            # lattice vectors (cos/sin pairs)
    bint constant                 # column 0 is the constant 1
    const double* base            # (d,) base angular frequency per dimension
    const Py_ssize_t* parent      # (Q,) parent pair, -1 for the zero vector
    const double* parent_sign     # (Q,) +1: parent stored as k_p; -1: stored as -k_p
    const Py_ssize_t* step_dim    # (Q,) dimension l of the step
    const double* step_sign       # (Q,) sigma = +-1


cdef Lattice _lattice(Py_ssize_t m, const double[::1] base, const Py_ssize_t[::1] parent,
                      const double[::1] parent_sign, const Py_ssize_t[::1] step_dim,
                      const double[::1] step_sign, bint constant):
    cdef Lattice lat
    lat.m = m
    lat.d = base.shape[0]
    lat.n_pairs = parent.shape[0]
    lat.constant = constant
    lat.base = &base[0]
    if lat.n_pairs > 0:
        lat.parent = &parent[0]
        lat.parent_sign = &parent_sign[0]
        lat.step_dim = &step_dim[0]
        lat.step_sign = &step_sign[0]
    return lat


cdef inline Py_ssize_t _scratch_size(const Lattice* lat) noexcept nogil:
    """Doubles per thread: tile (m columns + 1 spare) | cos(w_j x_j) | sin(w_j x_j)."""
    return (lat.m + 1 + 2 * lat.d) * BLOCK


cdef void _lattice_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                        const Lattice* lat, double* tile) noexcept nogil:
    """tile[j * BLOCK + r] = feature j of row i0 + r (see the module docstring)."""
    cdef double* cb = tile + (lat.m + 1) * BLOCK
    cdef double* sb = cb + lat.d * BLOCK
    cdef double cp[BLOCK]
    cdef double sp[BLOCK]
    cdef double theta, sigma, ps
    cdef Py_ssize_t j, r, q, col, pcol, l, c0 = 1 if lat.constant else 0
    for j in range(lat.d):
        for r in range(BLOCK):
            theta = lat.base[j] * X[i0 + r, j] if r < nb else 0.0
            cb[j * BLOCK + r] = cos(theta)
            sb[j * BLOCK + r] = sin(theta)
    if lat.constant:
        for r in range(BLOCK):
            tile[r] = 1.0
    for q in range(lat.n_pairs):
        col = c0 + 2 * q
        l = lat.step_dim[q]
        sigma = lat.step_sign[q]
        if lat.parent[q] < 0:
            for r in range(BLOCK):
                cp[r] = 1.0
                sp[r] = 0.0
        else:
            pcol = c0 + 2 * lat.parent[q]
            ps = lat.parent_sign[q]
            for r in range(BLOCK):
                cp[r] = tile[pcol * BLOCK + r]
                sp[r] = ps * tile[(pcol + 1) * BLOCK + r]
        for r in range(BLOCK):
            tile[col * BLOCK + r] = cp[r] * cb[l * BLOCK + r] - sigma * sp[r] * sb[l * BLOCK + r]
            tile[(col + 1) * BLOCK + r] = (sp[r] * cb[l * BLOCK + r]
                                           + sigma * cp[r] * sb[l * BLOCK + r])


def lattice_design(
    const floating[:, ::1] X,            # IN  (n, d) inputs
    const double[::1] base,              # IN  (d,) base angular frequencies
    const Py_ssize_t[::1] parent,        # IN  (Q,) lattice structure (module docstring)
    const double[::1] parent_sign,       # IN  (Q,)
    const Py_ssize_t[::1] step_dim,      # IN  (Q,)
    const double[::1] step_sign,         # IN  (Q,)
    bint constant,                       # IN  column 0 is the constant 1
    floating[:, ::1] Phi,                # OUT (n, m) design matrix
    int n_threads,
):
    """Phi = the lattice Fourier design matrix of X."""
    cdef Lattice lat = _lattice(Phi.shape[1], base, parent, parent_sign, step_dim, step_sign,
                                constant)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(_scratch_size(&lat) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _lattice_tile(X, i0, nb, &lat, tile)
            tile_to_rows(tile, lat.m, i0, nb, Phi)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of lattice_design")


def lattice_weighted_sum(
    const floating[:, ::1] X,            # IN  (n, d)
    const double[::1] base,              # IN  structure as in lattice_design
    const Py_ssize_t[::1] parent,
    const double[::1] parent_sign,
    const Py_ssize_t[::1] step_dim,
    const double[::1] step_sign,
    bint constant,
    const floating[:, ::1] W,            # IN  (m, k)
    floating[:, ::1] out,                # OUT (n, k) Phi(X) @ W, fused
    int n_threads,
):
    """out = Phi(X) @ W without materialising Phi."""
    cdef Lattice lat = _lattice(W.shape[0], base, parent, parent_sign, step_dim, step_sign,
                                constant)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(_scratch_size(&lat) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _lattice_tile(X, i0, nb, &lat, tile)
            tile_dot_weights(tile, lat.m, i0, nb, W, out)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of lattice_weighted_sum")


def lattice_weighted_sum_tasks(
    const floating[:, ::1] X,            # IN  (N, d) packed inputs
    const double[::1] base,              # IN  structure as in lattice_design
    const Py_ssize_t[::1] parent,
    const double[::1] parent_sign,
    const Py_ssize_t[::1] step_dim,
    const double[::1] step_sign,
    bint constant,
    const long long[::1] offsets,        # IN  (T+1,) task boundaries
    const floating[:, ::1] W,            # IN  (T, m)
    floating[::1] out,                   # OUT (N,)
    int n_threads,
):
    """out[i] = Phi(X[i]) . W[task of row i], fused."""
    cdef Lattice lat = _lattice(W.shape[1], base, parent, parent_sign, step_dim, step_sign,
                                constant)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(_scratch_size(&lat) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _lattice_tile(X, i0, nb, &lat, tile)
            tile_dot_task_weights(tile, lat.m, i0, nb, &offsets[0], W, out)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of lattice_weighted_sum_tasks")


def lattice_base_grad(
    const floating[:, ::1] X,            # IN  (n, d)
    const double[::1] base,              # IN  structure as in lattice_design
    const Py_ssize_t[::1] parent,
    const double[::1] parent_sign,
    const Py_ssize_t[::1] step_dim,
    const double[::1] step_sign,
    bint constant,
    const double[:, ::1] K,              # IN  (Q, d) the lattice vectors k_q
    const floating[:, ::1] G,            # IN  (n, m) upstream gradient dL/dPhi
    double[:, ::1] partial,              # OUT (n_chunks, d) per-chunk d/dw_j sum(G * Phi)
    int n_threads,
):
    """d/dw_j sum(G * Phi) = sum_q k_qj sum_i x_ij (G_i,sin_q cos theta_q - G_i,cos_q sin theta_q).

    The last pair's sine column may be absent (odd m): its G is then 0.  Chunks of rows are
    fixed, so the caller's sum over chunks does not depend on the thread count.
    """
    cdef Lattice lat = _lattice(G.shape[1], base, parent, parent_sign, step_dim, step_sign,
                                constant)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t n_chunks = partial.shape[0], ch, b, i0, nb, q, r, j, col
    cdef Py_ssize_t c0 = 1 if constant else 0
    cdef double acc, gs
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(_scratch_size(&lat) * sizeof(double))
        for ch in prange(n_chunks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            for b in range(ch * CHUNK_BLOCKS, min((ch + 1) * CHUNK_BLOCKS, n_blocks)):
                i0 = b * BLOCK
                nb = min(<Py_ssize_t> BLOCK, n - i0)
                _lattice_tile(X, i0, nb, &lat, tile)
                for q in range(lat.n_pairs):
                    col = c0 + 2 * q
                    for j in range(lat.d):
                        if K[q, j] == 0:
                            continue
                        acc = 0.0
                        for r in range(nb):
                            gs = G[i0 + r, col + 1] if col + 1 < lat.m else 0.0
                            acc = acc + X[i0 + r, j] * (gs * tile[col * BLOCK + r]
                                                        - G[i0 + r, col] * tile[(col + 1) * BLOCK + r])
                        partial[ch, j] += K[q, j] * acc
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of lattice_base_grad")
