"""Fourier features by angle-addition recurrences.

Columns are grouped in *runs*: arithmetic sequences of angular frequencies
f_k = f0 + k * df (k = 0..L-1) applied to one input dimension.  A run fills the columns
col, col+1, ... with cos(f_0 x), sin(f_0 x), cos(f_1 x), sin(f_1 x), ... (ncols of them, so
an odd count ends with a cosine).  Per row and run we call sin/cos for f0 * x and df * x only
(once when f0 == df, the harmonic case) and rotate:

    c_{k+1} = c_k cos(df x) - s_k sin(df x),   s_{k+1} = s_k cos(df x) + c_k sin(df x).

Every RESEED steps the pair is recomputed directly from (f0 + k df) x, which bounds the
rounding drift of the rotation whatever the run length.  An optional first column is the
constant 1.  Everything is computed in double; outputs take the input's dtype.
"""

from libc.math cimport cos, sin
from libc.stdlib cimport malloc, free
from cython cimport floating
from cython.parallel cimport parallel, prange

from metafast._kernels._rowblocks cimport (
    BLOCK, CHUNK_BLOCKS, tile_dot_task_weights, tile_dot_weights, tile_to_rows,
)

cdef enum:
    RESEED = 32           # recompute sin/cos directly every RESEED recurrence steps


ctypedef struct Runs:
    Py_ssize_t n_runs
    bint constant           # column 0 is the constant 1
    const Py_ssize_t* dim    # input column of each run
    const Py_ssize_t* length # number of frequencies L of each run
    const Py_ssize_t* col    # first output column of each run
    const Py_ssize_t* ncols  # output columns of each run (2L or 2L - 1)
    const double* f0         # first angular frequency
    const double* df         # spacing


cdef Runs _runs(const Py_ssize_t[::1] dim, const Py_ssize_t[::1] length,
                const Py_ssize_t[::1] col, const Py_ssize_t[::1] ncols,
                const double[::1] f0, const double[::1] df, bint constant):
    cdef Runs runs
    runs.n_runs = dim.shape[0]
    runs.constant = constant
    if runs.n_runs > 0:
        runs.dim = &dim[0]
        runs.length = &length[0]
        runs.col = &col[0]
        runs.ncols = &ncols[0]
        runs.f0 = &f0[0]
        runs.df = &df[0]
    return runs


cdef inline void _load_column(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                              Py_ssize_t j, double* xb) noexcept nogil:
    """xb[r] = X[i0 + r, j] for the nb valid rows; 0 in the padding rows."""
    cdef Py_ssize_t r
    for r in range(BLOCK):
        xb[r] = X[i0 + r, j] if r < nb else 0.0


cdef void _fourier_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                        const Runs* runs, double* tile, const double* w,
                        double* acc) noexcept nogil:
    """tile[j * BLOCK + r] = feature j of row i0 + r, for every column j.

    With a weight vector w (not NULL) the features are not stored: acc[r] = sum_j w[j] g_j
    is accumulated directly (the single-output fused sum, no tile traffic).
    """
    cdef double xb[BLOCK]
    cdef double c[BLOCK]
    cdef double s[BLOCK]
    cdef double cd[BLOCK]
    cdef double sd[BLOCK]
    cdef double total[BLOCK]   # local accumulator: no aliasing with w, so it vectorises
    cdef double t, f0, df, fk, wc, ws
    cdef Py_ssize_t q, k, r, col, L, nc
    if w != NULL:
        for r in range(BLOCK):
            total[r] = w[0] if runs.constant else 0.0
    elif runs.constant:
        for r in range(BLOCK):
            tile[r] = 1.0
    for q in range(runs.n_runs):
        _load_column(X, i0, nb, runs.dim[q], xb)
        f0 = runs.f0[q]
        df = runs.df[q]
        L = runs.length[q]
        col = runs.col[q]
        nc = runs.ncols[q]
        for r in range(BLOCK):
            c[r] = cos(f0 * xb[r])
            s[r] = sin(f0 * xb[r])
        if L == 1:
            for r in range(BLOCK):
                cd[r] = 1.0
                sd[r] = 0.0
        elif df == f0:
            for r in range(BLOCK):
                cd[r] = c[r]
                sd[r] = s[r]
        else:
            for r in range(BLOCK):
                cd[r] = cos(df * xb[r])
                sd[r] = sin(df * xb[r])
        for k in range(L):
            if k > 0:
                if k % RESEED == 0:
                    fk = f0 + k * df
                    for r in range(BLOCK):
                        c[r] = cos(fk * xb[r])
                        s[r] = sin(fk * xb[r])
                else:
                    for r in range(BLOCK):
                        t = c[r] * cd[r] - s[r] * sd[r]
                        s[r] = s[r] * cd[r] + c[r] * sd[r]
                        c[r] = t
            if w != NULL:
                wc = w[col + 2 * k]
                ws = w[col + 2 * k + 1] if 2 * k + 1 < nc else 0.0
                for r in range(BLOCK):
                    total[r] = total[r] + wc * c[r] + ws * s[r]
            else:
                for r in range(BLOCK):
                    tile[(col + 2 * k) * BLOCK + r] = c[r]
                if 2 * k + 1 < nc:
                    for r in range(BLOCK):
                        tile[(col + 2 * k + 1) * BLOCK + r] = s[r]
    if w != NULL:
        for r in range(BLOCK):
            acc[r] = total[r]


def fourier_design(
    const floating[:, ::1] X,             # IN  (n, d) inputs
    const Py_ssize_t[::1] run_dim,        # IN  (R,) input column of each run
    const Py_ssize_t[::1] run_len,        # IN  (R,) frequencies per run
    const Py_ssize_t[::1] run_col,        # IN  (R,) first output column per run
    const Py_ssize_t[::1] run_ncols,      # IN  (R,) output columns per run
    const double[::1] run_f0,             # IN  (R,) first angular frequency
    const double[::1] run_df,             # IN  (R,) frequency spacing
    bint constant,                        # IN  column 0 is the constant 1
    floating[:, ::1] Phi,                 # OUT (n, m) design matrix
    int n_threads,
):
    """Phi = the Fourier design matrix of X (see the module docstring)."""
    cdef Runs runs = _runs(run_dim, run_len, run_col, run_ncols, run_f0, run_df, constant)
    cdef Py_ssize_t n = X.shape[0], m = Phi.shape[1]
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(m * BLOCK * sizeof(double) + sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _fourier_tile(X, i0, nb, &runs, tile, NULL, NULL)
            tile_to_rows(tile, m, i0, nb, Phi)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of fourier_design")


def fourier_weighted_sum(
    const floating[:, ::1] X,             # IN  (n, d) inputs
    const Py_ssize_t[::1] run_dim,        # IN  run description (see fourier_design)
    const Py_ssize_t[::1] run_len,
    const Py_ssize_t[::1] run_col,
    const Py_ssize_t[::1] run_ncols,
    const double[::1] run_f0,
    const double[::1] run_df,
    bint constant,
    const floating[:, ::1] W,             # IN  (m, k) weights
    floating[:, ::1] out,                 # OUT (n, k) out = Phi(X) @ W, fused
    int n_threads,
):
    """out = Phi(X) @ W without materialising Phi (BLOCK rows at a time, in cache)."""
    cdef Runs runs = _runs(run_dim, run_len, run_col, run_ncols, run_f0, run_df, constant)
    cdef Py_ssize_t n = X.shape[0], m = W.shape[0]
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(m * BLOCK * sizeof(double) + sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _fourier_tile(X, i0, nb, &runs, tile, NULL, NULL)
            tile_dot_weights(tile, m, i0, nb, W, out)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of fourier_weighted_sum")


def fourier_weighted_sum_1(
    const floating[:, ::1] X,             # IN  (n, d) inputs
    const Py_ssize_t[::1] run_dim,        # IN  run description (see fourier_design)
    const Py_ssize_t[::1] run_len,
    const Py_ssize_t[::1] run_col,
    const Py_ssize_t[::1] run_ncols,
    const double[::1] run_f0,
    const double[::1] run_df,
    bint constant,
    const double[::1] w,                  # IN  (m,) weights (float64 whatever X's dtype)
    floating[::1] out,                    # OUT (n,) out = Phi(X) @ w, fused in the recurrence
    int n_threads,
):
    """Single-output fused sum: weights applied inside the recurrence, no tile at all."""
    cdef Runs runs = _runs(run_dim, run_len, run_col, run_ncols, run_f0, run_df, constant)
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb, r
    cdef double* acc
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        acc = <double*> malloc(BLOCK * sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if acc == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _fourier_tile(X, i0, nb, &runs, NULL, &w[0], acc)
            for r in range(nb):
                out[i0 + r] = <floating> acc[r]
        free(acc)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of fourier_weighted_sum_1")


def fourier_weighted_sum_tasks(
    const floating[:, ::1] X,             # IN  (N, d) packed inputs of all tasks
    const Py_ssize_t[::1] run_dim,        # IN  run description (see fourier_design)
    const Py_ssize_t[::1] run_len,
    const Py_ssize_t[::1] run_col,
    const Py_ssize_t[::1] run_ncols,
    const double[::1] run_f0,
    const double[::1] run_df,
    bint constant,
    const long long[::1] offsets,         # IN  (T+1,) task boundaries
    const floating[:, ::1] W,             # IN  (T, m) one weight vector per task
    floating[::1] out,                    # OUT (N,) out[i] = Phi(X[i]) . W[task of i]
    int n_threads,
):
    """Per-task fused weighted sums over packed tasks."""
    cdef Runs runs = _runs(run_dim, run_len, run_col, run_ncols, run_f0, run_df, constant)
    cdef Py_ssize_t n = X.shape[0], m = W.shape[1]
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK, b, i0, nb
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(m * BLOCK * sizeof(double) + sizeof(double))
        for b in prange(n_blocks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            i0 = b * BLOCK
            nb = min(<Py_ssize_t> BLOCK, n - i0)
            _fourier_tile(X, i0, nb, &runs, tile, NULL, NULL)
            tile_dot_task_weights(tile, m, i0, nb, &offsets[0], W, out)
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of fourier_weighted_sum_tasks")


def fourier_frequency_grad(
    const floating[:, ::1] X,             # IN  (n, d) inputs
    const Py_ssize_t[::1] run_dim,        # IN  run description (see fourier_design)
    const Py_ssize_t[::1] run_len,
    const Py_ssize_t[::1] run_col,
    const Py_ssize_t[::1] run_ncols,
    const double[::1] run_f0,
    const double[::1] run_df,
    bint constant,
    const Py_ssize_t[::1] run_first,      # IN  (R,) index of each run's first frequency
    const floating[:, ::1] G,             # IN  (n, m) upstream gradient dL/dPhi
    double[:, ::1] partial,               # OUT (n_chunks, K) per-chunk d/df_k sum(G * Phi)
    int n_threads,
):
    """Per-frequency gradients of sum_ij G_ij Phi_ij, summed per chunk of rows.

    d cos(f x)/df = -x sin(f x) and d sin(f x)/df = x cos(f x).  Chunks are fixed blocks of
    rows (CHUNK_BLOCKS * BLOCK), so the caller's sum over chunks is the same whatever the
    thread count.
    """
    cdef Runs runs = _runs(run_dim, run_len, run_col, run_ncols, run_f0, run_df, constant)
    cdef Py_ssize_t n = X.shape[0], m = G.shape[1]
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t n_chunks = partial.shape[0], ch, b, i0, nb, q, k, r, cc, j
    cdef double acc, x
    cdef double* tile
    cdef Py_ssize_t n_failed = 0   # threads whose scratch malloc failed: MemoryError after the block
    with nogil, parallel(num_threads=n_threads):
        tile = <double*> malloc(m * BLOCK * sizeof(double) + sizeof(double))
        for ch in prange(n_chunks, schedule="static"):
            if tile == NULL:
                n_failed += 1
                continue
            for b in range(ch * CHUNK_BLOCKS, min((ch + 1) * CHUNK_BLOCKS, n_blocks)):
                i0 = b * BLOCK
                nb = min(<Py_ssize_t> BLOCK, n - i0)
                _fourier_tile(X, i0, nb, &runs, tile, NULL, NULL)
                for q in range(runs.n_runs):
                    j = runs.dim[q]
                    for k in range(runs.length[q]):
                        cc = runs.col[q] + 2 * k
                        acc = 0.0
                        if 2 * k + 1 < runs.ncols[q]:
                            for r in range(nb):
                                x = X[i0 + r, j]
                                acc = acc + x * (G[i0 + r, cc + 1] * tile[cc * BLOCK + r]
                                                 - G[i0 + r, cc] * tile[(cc + 1) * BLOCK + r])
                        else:
                            # an odd run ends with a cosine only: recompute its sine here
                            for r in range(nb):
                                x = X[i0 + r, j]
                                acc = acc - x * G[i0 + r, cc] * sin(
                                    (runs.f0[q] + k * runs.df[q]) * x)
                        partial[ch, run_first[q] + k] += acc
        free(tile)
    if n_failed:
        raise MemoryError("metafast: could not allocate the per-thread scratch of fourier_frequency_grad")


ROWS_PER_CHUNK = BLOCK * CHUNK_BLOCKS  # rows per partial sum of fourier_frequency_grad
