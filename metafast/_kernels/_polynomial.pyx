"""Orthogonal polynomial features (Legendre, Chebyshev) of total degree in d dimensions.

Inputs are mapped to u_j = (x_j - shift_j) / scale_j.  Per row and dimension the 1-D values
P_0..P_D(u_j) come from the three-term recurrence

    P_{k+1} = a_k u P_k - b_k P_{k-1}     (Legendre a_k = (2k+1)/(k+1), b_k = k/(k+1);
                                           Chebyshev a_k = 2, b_k = 1, with P_1 = u for both)

and column c (multi-index alpha_c, graded order, column 0 = the constant) is
Phi_c = Phi_parent(c) * P_deg(c)(u_dim(c)), where parent(c) is alpha_c with its last non-zero
entry set to 0: one multiply per column.  Derivatives use the differentiated recurrence
P'_{k+1} = a_k (P_k + u P'_k) - b_k P'_{k-1}.
"""

from libc.stdlib cimport malloc, free
from cython cimport floating
from cython.parallel cimport parallel, prange

from metafast._kernels._rowblocks cimport (
    BLOCK, CHUNK_BLOCKS, tile_dot_task_weights, tile_dot_weights, tile_to_rows,
)

ROWS_PER_CHUNK = BLOCK * CHUNK_BLOCKS  # rows per partial sum of polynomial_domain_grad


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


cdef Poly _poly(const double[::1] shift, const double[::1] inv_scale,
                const Py_ssize_t[::1] parent, const Py_ssize_t[::1] fdim,
                const Py_ssize_t[::1] fdeg, const Py_ssize_t[::1] nz_ptr,
                const Py_ssize_t[::1] nz_dim, const Py_ssize_t[::1] nz_deg,
                Py_ssize_t D, int kind):
    cdef Poly p
    p.m = parent.shape[0]
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


cdef inline Py_ssize_t _scratch_size(const Poly* p) noexcept nogil:
    """Doubles of per-thread scratch: tile, P, P', u and dL/du."""
    return (p.m + 2 * p.d * (p.D + 1) + 2 * p.d) * BLOCK + 1


cdef inline void _load_u(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                         const Poly* p, double* u) noexcept nogil:
    """u[j * BLOCK + r] = mapped input j of row i0 + r (0 in padding rows)."""
    cdef Py_ssize_t j, r
    for j in range(p.d):
        for r in range(BLOCK):
            u[j * BLOCK + r] = (X[i0 + r, j] - p.shift[j]) * p.inv_scale[j] if r < nb else 0.0


cdef inline void _values(const double* u, const Poly* p, double* P, double* dP) noexcept nogil:
    """P[k * BLOCK + r] = P_k(u[r]), k = 0..D, and the derivatives in dP when it is not NULL.

    The recurrence state lives in local arrays (no aliasing with the outputs), so the inner
    loop over the rows of the block vectorises.
    """
    cdef double uu[BLOCK]
    cdef double prev[BLOCK]
    cdef double cur[BLOCK]
    cdef double dprev[BLOCK]
    cdef double dcur[BLOCK]
    cdef double a, b, t
    cdef Py_ssize_t k, r
    for r in range(BLOCK):
        uu[r] = u[r]
        prev[r] = 1.0
        cur[r] = uu[r]
        dprev[r] = 0.0
        dcur[r] = 1.0
        P[r] = 1.0
    if dP != NULL:
        for r in range(BLOCK):
            dP[r] = 0.0
    if p.D == 0:
        return
    for r in range(BLOCK):
        P[BLOCK + r] = uu[r]
    if dP != NULL:
        for r in range(BLOCK):
            dP[BLOCK + r] = 1.0
    for k in range(1, p.D):
        if p.kind == 0:
            a = (2.0 * k + 1.0) / (k + 1.0)
            b = k / (k + 1.0)
        else:
            a = 2.0
            b = 1.0
        if dP != NULL:
            for r in range(BLOCK):
                t = a * (cur[r] + uu[r] * dcur[r]) - b * dprev[r]
                dprev[r] = dcur[r]
                dcur[r] = t
                dP[(k + 1) * BLOCK + r] = t
        for r in range(BLOCK):
            t = a * uu[r] * cur[r] - b * prev[r]
            prev[r] = cur[r]
            cur[r] = t
            P[(k + 1) * BLOCK + r] = t


cdef void _poly_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb, const Poly* p,
                     double* scratch, bint derivatives) noexcept nogil:
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
        _values(u, p, tile, NULL)
        return
    for j in range(p.d):
        _values(u + j * BLOCK, p, P + j * stride, dP + j * stride if derivatives else NULL)
    for r in range(BLOCK):
        tile[r] = 1.0
    for c in range(1, p.m):
        vals = P + p.fdim[c] * stride + p.fdeg[c] * BLOCK
        pc = tile + p.parent[c] * BLOCK
        for r in range(BLOCK):
            tile[c * BLOCK + r] = pc[r] * vals[r]


def polynomial_design(
    const floating[:, ::1] X,          # IN  (n, d) inputs
    const double[::1] shift,           # IN  (d,) domain centre
    const double[::1] inv_scale,       # IN  (d,) 1 / domain half-width
    const Py_ssize_t[::1] parent,      # IN  (m,) column structure (see module docstring)
    const Py_ssize_t[::1] fdim,        # IN  (m,)
    const Py_ssize_t[::1] fdeg,        # IN  (m,)
    const Py_ssize_t[::1] nz_ptr,      # IN  (m+1,)
    const Py_ssize_t[::1] nz_dim,      # IN  (nnz,)
    const Py_ssize_t[::1] nz_deg,      # IN  (nnz,)
    Py_ssize_t D,                      # IN  highest degree
    int kind,                          # IN  0 Legendre, 1 Chebyshev
    floating[:, ::1] Phi,              # OUT (n, m)
    int n_threads,
):
    """Phi = the polynomial design matrix of X."""
    cdef Poly p = _poly(shift, inv_scale, parent, fdim, fdeg, nz_ptr, nz_dim, nz_deg, D, kind)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <double*> malloc(_scratch_size(&p) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _poly_tile(X, i0, nb, &p, scratch, False)
            tile_to_rows(scratch, p.m, i0, nb, Phi)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of polynomial_design")


def polynomial_weighted_sum(
    const floating[:, ::1] X,          # IN  (n, d)
    const double[::1] shift,           # IN  structure as in polynomial_design
    const double[::1] inv_scale,
    const Py_ssize_t[::1] parent,
    const Py_ssize_t[::1] fdim,
    const Py_ssize_t[::1] fdeg,
    const Py_ssize_t[::1] nz_ptr,
    const Py_ssize_t[::1] nz_dim,
    const Py_ssize_t[::1] nz_deg,
    Py_ssize_t D,
    int kind,
    const floating[:, ::1] W,          # IN  (m, k)
    floating[:, ::1] out,              # OUT (n, k) Phi(X) @ W, fused
    int n_threads,
):
    """out = Phi(X) @ W without materialising Phi."""
    cdef Poly p = _poly(shift, inv_scale, parent, fdim, fdeg, nz_ptr, nz_dim, nz_deg, D, kind)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <double*> malloc(_scratch_size(&p) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _poly_tile(X, i0, nb, &p, scratch, False)
            tile_dot_weights(scratch, p.m, i0, nb, W, out)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of polynomial_weighted_sum")


def polynomial_weighted_sum_tasks(
    const floating[:, ::1] X,          # IN  (N, d) packed inputs
    const double[::1] shift,           # IN  structure as in polynomial_design
    const double[::1] inv_scale,
    const Py_ssize_t[::1] parent,
    const Py_ssize_t[::1] fdim,
    const Py_ssize_t[::1] fdeg,
    const Py_ssize_t[::1] nz_ptr,
    const Py_ssize_t[::1] nz_dim,
    const Py_ssize_t[::1] nz_deg,
    Py_ssize_t D,
    int kind,
    const long long[::1] offsets,      # IN  (T+1,) task boundaries
    const floating[:, ::1] W,          # IN  (T, m)
    floating[::1] out,                 # OUT (N,)
    int n_threads,
):
    """out[i] = Phi(X[i]) . W[task of row i], fused."""
    cdef Poly p = _poly(shift, inv_scale, parent, fdim, fdeg, nz_ptr, nz_dim, nz_deg, D, kind)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <double*> malloc(_scratch_size(&p) * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _poly_tile(X, i0, nb, &p, scratch, False)
            tile_dot_task_weights(scratch, p.m, i0, nb, &offsets[0], W, out)
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of polynomial_weighted_sum_tasks")


cdef void _domain_grad_block(const floating[:, ::1] G, Py_ssize_t i0, Py_ssize_t nb,
                             const Poly* p, double* scratch, double* acc) noexcept nogil:
    """acc[j] += sum_r dL/du_j, acc[d + j] += sum_r dL/du_j * u_j for the block's rows.

    dL/du_j = sum_c G_c dPhi_c/du_j and dPhi_c/du_j = P'_a(u_j) prod_{other factors} P_b(u_l).
    """
    cdef Py_ssize_t stride = (p.D + 1) * BLOCK
    cdef double* P = scratch + p.m * BLOCK
    cdef double* dP = P + p.d * stride
    cdef double* u = dP + p.d * stride
    cdef double* gu = u + p.d * BLOCK
    cdef double g, v
    cdef Py_ssize_t c, e, e2, r, j
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


def polynomial_domain_grad(
    const floating[:, ::1] X,          # IN  (n, d)
    const double[::1] shift,           # IN  structure as in polynomial_design
    const double[::1] inv_scale,
    const Py_ssize_t[::1] parent,
    const Py_ssize_t[::1] fdim,
    const Py_ssize_t[::1] fdeg,
    const Py_ssize_t[::1] nz_ptr,
    const Py_ssize_t[::1] nz_dim,
    const Py_ssize_t[::1] nz_deg,
    Py_ssize_t D,
    int kind,
    const floating[:, ::1] G,          # IN  (n, m) upstream gradient dL/dPhi
    double[:, ::1] partial,            # OUT (n_chunks, 2d): [sum dL/du_j, sum dL/du_j * u_j]
    int n_threads,
):
    """Per-chunk sums from which the caller forms the domain shift and log-scale gradients."""
    cdef Poly p = _poly(shift, inv_scale, parent, fdim, fdeg, nz_ptr, nz_dim, nz_deg, D, kind)
    cdef Py_ssize_t n = X.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t n_chunks = partial.shape[0], ch, b, i0, nb
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        scratch = <double*> malloc(_scratch_size(&p) * sizeof(double))
        for ch in prange(n_chunks, schedule="static"):
            if scratch == NULL:
                n_failed += 1
                continue
            for b in range(ch * CHUNK_BLOCKS, min((ch + 1) * CHUNK_BLOCKS, n_blocks)):
                i0 = b * BLOCK
                nb = min(<Py_ssize_t> BLOCK, n - i0)
                _poly_tile(X, i0, nb, &p, scratch, True)
                _domain_grad_block(G, i0, nb, &p, scratch, &partial[ch, 0])
        free(scratch)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of polynomial_domain_grad")
