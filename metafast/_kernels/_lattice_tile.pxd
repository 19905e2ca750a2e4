# Tile functions of the lattice Fourier family, for the entry points generated in
# _fourier_lattice.pyx (see _families.pyx.tp).
#
# Pair q has an integer vector k_q (first non-zero entry positive, graded by |k_q|_1) and the
# angle theta_q(x) = sum_j k_qj w_j x_j with one base angular frequency w_j per dimension.
# Columns: an optional constant, then cos(theta_q), sin(theta_q) for q = 0, 1, ... (the last
# sine may be dropped: it is then kept in a spare tile column).
#
# Recurrence: k_q = k_p + sigma e_l for an earlier pair p (or p = none, the zero vector) stored
# either as k_p or as -k_p (parent_sign -1: cos is even, sin odd), so
#
#     cos(theta_q) = c_p cos(w_l x_l) - sigma s_p sin(w_l x_l)
#     sin(theta_q) = s_p cos(w_l x_l) + sigma c_p sin(w_l x_l)
#
# Per row: d sin/cos pairs (one per dimension) and 6 flops per pair.  The depth of the
# recurrence is |k|_1 (small for a total-degree lattice), so no re-seeding is needed.

from libc.math cimport cos, sin
from cython cimport floating

from metafast._kernels._rowblocks cimport BLOCK


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


cdef inline Lattice lattice_spec(Py_ssize_t m, const double[::1] base,
                                 const Py_ssize_t[::1] parent, const double[::1] parent_sign,
                                 const Py_ssize_t[::1] step_dim, const double[::1] step_sign,
                                 bint constant):
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


cdef inline Py_ssize_t lattice_scratch(const Lattice* lat) noexcept nogil:
    """Doubles per thread: tile (m columns + 1 spare) | cos(w_j x_j) | sin(w_j x_j)."""
    return (lat.m + 1 + 2 * lat.d) * BLOCK


cdef inline void lattice_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                              const Lattice* lat, double* tile) noexcept nogil:
    """tile[j * BLOCK + r] = feature j of row i0 + r (see the header)."""
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


cdef inline void lattice_grad_block(const floating[:, ::1] X, const floating[:, ::1] G,
                                    Py_ssize_t i0, Py_ssize_t nb, const Lattice* lat,
                                    double* tile, double* partial,
                                    const double[:, ::1] K) noexcept nogil:
    """partial[j] += the rows' d/dw_j sum(G * Phi)
    = sum_q k_qj sum_i x_ij (G_i,sin_q cos theta_q - G_i,cos_q sin theta_q).

    The last pair's sine column may be absent (odd m): its G is then 0.
    """
    cdef Py_ssize_t q, r, j, col, c0 = 1 if lat.constant else 0
    cdef double acc, gs
    lattice_tile(X, i0, nb, lat, tile)
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
            partial[j] += K[q, j] * acc
