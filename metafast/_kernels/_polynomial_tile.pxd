# Tile functions of the polynomial family, for the entry points generated in _polynomial.pyx
# (see _families.pyx.tp): orthogonal polynomials (Legendre, Chebyshev) of total degree in d
# dimensions.
#
# Inputs are mapped to u_j = (x_j - shift_j) / scale_j.  Per row and dimension the 1-D values
# P_0..P_D(u_j) come from the three-term recurrence
#
#     P_{k+1} = a_k u P_k - b_k P_{k-1}     (Legendre a_k = (2k+1)/(k+1), b_k = k/(k+1);
#                                            Chebyshev a_k = 2, b_k = 1, with P_1 = u for both)
#
# and column c (multi-index alpha_c, graded order, column 0 = the constant) is
# Phi_c = Phi_parent(c) * P_deg(c)(u_dim(c)), where parent(c) is alpha_c with its last non-zero
# entry set to 0: one multiply per column.  Derivatives use the differentiated recurrence
# P'_{k+1} = a_k (P_k + u P'_k) - b_k P'_{k-1}; the recurrences are in _polynomial_values.h.

from cython cimport floating
from libc.stdint cimport int64_t

from metafast._kernels._rowblocks cimport BLOCK

cdef extern from "_polynomial_values.h" nogil:
    # P (and P' unless dP is NULL) of the B rows of one block, k = 0..D (see the header)
    void mf_poly_values(const double* u, int64_t B, int64_t D, int kind, double* P, double* dP)


ctypedef struct Poly:
    Py_ssize_t m              # columns
    Py_ssize_t d              # input dimensions
    Py_ssize_t D              # highest degree in any dimension
    int kind                  # 0 Legendre, 1 Chebyshev
    const double* shift       # (d,)
    const double* inv_scale   # (d,)
    const Py_ssize_t* parent  # (m,) parent column (column 0: unused)
    const Py_ssize_t* fdim    # (m,) dimension of the factor that column multiplies in
    const Py_ssize_t* fdeg    # (m,) degree of that factor
    const Py_ssize_t* nz_ptr  # (m+1,) CSR of the non-zero entries of each multi-index
    const Py_ssize_t* nz_dim
    const Py_ssize_t* nz_deg


cdef inline Poly polynomial_spec(Py_ssize_t m, const double[::1] shift,
                                 const double[::1] inv_scale, const Py_ssize_t[::1] parent,
                                 const Py_ssize_t[::1] fdim, const Py_ssize_t[::1] fdeg,
                                 const Py_ssize_t[::1] nz_ptr, const Py_ssize_t[::1] nz_dim,
                                 const Py_ssize_t[::1] nz_deg, Py_ssize_t D, int kind):
    cdef Poly p
    p.m = m
    p.d = shift.shape[0]
    p.D = D
    p.kind = kind
    p.shift = &shift[0]
    p.inv_scale = &inv_scale[0]
    p.parent = &parent[0]
    p.fdim = &fdim[0]
    p.fdeg = &fdeg[0]
    p.nz_ptr = &nz_ptr[0]
    p.nz_dim = &nz_dim[0] if nz_dim.shape[0] > 0 else NULL
    p.nz_deg = &nz_deg[0] if nz_deg.shape[0] > 0 else NULL
    return p


cdef inline Py_ssize_t polynomial_scratch(const Poly* p) noexcept nogil:
    """Doubles of per-thread scratch: tile, P, P', u and dL/du."""
    return (p.m + 2 * p.d * (p.D + 1) + 2 * p.d) * BLOCK + 1


cdef inline void _load_u(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                         const Poly* p, double* u) noexcept nogil:
    """u[j * BLOCK + r] = mapped input j of row i0 + r (0 in padding rows)."""
    cdef Py_ssize_t j, r
    for j in range(p.d):
        for r in range(BLOCK):
            u[j * BLOCK + r] = (X[i0 + r, j] - p.shift[j]) * p.inv_scale[j] if r < nb else 0.0


cdef inline void _poly_block(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                             const Poly* p, double* scratch, bint derivatives) noexcept nogil:
    """Fill the tile (first m * BLOCK doubles of scratch) with the features of the block.

    Scratch layout: tile (m*BLOCK) | P (d*(D+1)*BLOCK) | P' (same) | u (d*BLOCK) | dL/du.
    """
    cdef double* tile = scratch
    cdef double* P = scratch + p.m * BLOCK
    cdef double* dP = P + p.d * (p.D + 1) * BLOCK
    cdef double* u = dP + p.d * (p.D + 1) * BLOCK
    cdef const double* vals
    cdef double* pc
    cdef Py_ssize_t j, c, r, stride = (p.D + 1) * BLOCK
    _load_u(X, i0, nb, p, u)
    if p.d == 1 and not derivatives:
        # 1-D: column k is P_k(u) itself (m == D + 1), so recur straight into the tile
        mf_poly_values(u, BLOCK, p.D, p.kind, tile, NULL)
        return
    for j in range(p.d):
        mf_poly_values(u + j * BLOCK, BLOCK, p.D, p.kind, P + j * stride,
                       dP + j * stride if derivatives else NULL)
    for r in range(BLOCK):
        tile[r] = 1.0
    for c in range(1, p.m):
        vals = P + p.fdim[c] * stride + p.fdeg[c] * BLOCK
        pc = tile + p.parent[c] * BLOCK
        for r in range(BLOCK):
            tile[c * BLOCK + r] = pc[r] * vals[r]


cdef inline void polynomial_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                                 const Poly* p, double* scratch) noexcept nogil:
    """The tile (the first m * BLOCK doubles of scratch) of rows i0..i0+nb-1."""
    _poly_block(X, i0, nb, p, scratch, False)


cdef inline void polynomial_grad_block(const floating[:, ::1] X, const floating[:, ::1] G,
                                       Py_ssize_t i0, Py_ssize_t nb, const Poly* p,
                                       double* scratch, double* acc) noexcept nogil:
    """acc[j] += sum_r dL/du_j, acc[d + j] += sum_r dL/du_j * u_j for the block's rows, from
    which the caller forms the domain shift and log-scale gradients.

    dL/du_j = sum_c G_c dPhi_c/du_j and dPhi_c/du_j = P'_a(u_j) prod_{other factors} P_b(u_l).
    """
    cdef Py_ssize_t stride = (p.D + 1) * BLOCK
    cdef double* P = scratch + p.m * BLOCK
    cdef double* dP = P + p.d * stride
    cdef double* u = dP + p.d * stride
    cdef double* gu = u + p.d * BLOCK
    cdef double g, v
    cdef Py_ssize_t c, e, e2, r, j
    _poly_block(X, i0, nb, p, scratch, True)
    for j in range(p.d * BLOCK):
        gu[j] = 0.0
    for c in range(1, p.m):
        for e in range(p.nz_ptr[c], p.nz_ptr[c + 1]):
            j = p.nz_dim[e]
            for r in range(nb):
                v = dP[j * stride + p.nz_deg[e] * BLOCK + r]
                for e2 in range(p.nz_ptr[c], p.nz_ptr[c + 1]):
                    if e2 != e:
                        v = v * P[p.nz_dim[e2] * stride + p.nz_deg[e2] * BLOCK + r]
                gu[j * BLOCK + r] += G[i0 + r, c] * v
    for j in range(p.d):
        for r in range(nb):
            g = gu[j * BLOCK + r]
            acc[j] += g
            acc[p.d + j] += g * u[j * BLOCK + r]
