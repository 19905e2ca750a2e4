# Tile functions of the Fourier family, for the entry points generated in _fourier.pyx (see
# _families.pyx.tp).
#
# Columns are grouped in *runs*: arithmetic sequences of angular frequencies f_k = f0 + k * df
# (k = 0..L-1) applied to one input dimension.  A run fills the columns col, col+1, ... with
# cos(f_0 x), sin(f_0 x), cos(f_1 x), sin(f_1 x), ... (ncols of them, so an odd count ends with a
# cosine).  Per row and run we call sin/cos for f0 * x and df * x only (once when f0 == df, the
# harmonic case) and rotate:
#
#     c_{k+1} = c_k cos(df x) - s_k sin(df x),   s_{k+1} = s_k cos(df x) + c_k sin(df x).
#
# Every RESEED steps the pair is recomputed directly from (f0 + k df) x, which bounds the
# rounding drift of the rotation whatever the run length.  An optional first column is the
# constant 1.  Everything is computed in double; outputs take the input's dtype.

from libc.math cimport cos, sin
from cython cimport floating

from metafast._kernels._rowblocks cimport BLOCK

cdef enum:
    RESEED = 32           # recompute sin/cos directly every RESEED recurrence steps


ctypedef struct FourierRuns:
    Py_ssize_t m             # output columns
    Py_ssize_t n_runs
    bint constant            # column 0 is the constant 1
    const Py_ssize_t* dim    # input column of each run
    const Py_ssize_t* length # number of frequencies L of each run
    const Py_ssize_t* col    # first output column of each run
    const Py_ssize_t* ncols  # output columns of each run (2L or 2L - 1)
    const double* f0         # first angular frequency
    const double* df         # spacing


cdef inline FourierRuns fourier_runs(
        Py_ssize_t m, const Py_ssize_t[::1] run_dim, const Py_ssize_t[::1] run_len,
        const Py_ssize_t[::1] run_col, const Py_ssize_t[::1] run_ncols,
        const double[::1] run_f0, const double[::1] run_df, bint constant):
    cdef FourierRuns runs
    runs.m = m
    runs.n_runs = run_dim.shape[0]
    runs.constant = constant
    if runs.n_runs > 0:
        runs.dim = &run_dim[0]
        runs.length = &run_len[0]
        runs.col = &run_col[0]
        runs.ncols = &run_ncols[0]
        runs.f0 = &run_f0[0]
        runs.df = &run_df[0]
    return runs


cdef inline Py_ssize_t fourier_scratch(const FourierRuns* runs) noexcept nogil:
    """Doubles of per-thread scratch: the tile."""
    return runs.m * BLOCK + 1


cdef inline void _load_column(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                              Py_ssize_t j, double* xb) noexcept nogil:
    """xb[r] = X[i0 + r, j] for the nb valid rows; 0 in the padding rows."""
    cdef Py_ssize_t r
    for r in range(BLOCK):
        xb[r] = X[i0 + r, j] if r < nb else 0.0


cdef inline void fourier_block(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                               const FourierRuns* runs, double* tile, const double* w,
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


cdef inline void fourier_tile(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                              const FourierRuns* runs, double* scratch) noexcept nogil:
    """The tile (scratch) of rows i0..i0+nb-1."""
    fourier_block(X, i0, nb, runs, scratch, NULL, NULL)


cdef inline void fourier_sum_1_block(const floating[:, ::1] X, Py_ssize_t i0, Py_ssize_t nb,
                                     const FourierRuns* runs, const double* w,
                                     double* acc) noexcept nogil:
    """acc[r] = sum_j w[j] g_j(row i0 + r), weights applied inside the recurrence."""
    fourier_block(X, i0, nb, runs, NULL, w, acc)


cdef inline void fourier_grad_block(const floating[:, ::1] X, const floating[:, ::1] G,
                                    Py_ssize_t i0, Py_ssize_t nb, const FourierRuns* runs,
                                    double* tile, double* partial,
                                    const Py_ssize_t[::1] run_first) noexcept nogil:
    """partial[run_first[q] + k] += the rows' d/df_k sum(G * Phi).

    d cos(f x)/df = -x sin(f x) and d sin(f x)/df = x cos(f x).
    """
    cdef Py_ssize_t q, k, r, cc, j
    cdef double acc, x
    fourier_block(X, i0, nb, runs, tile, NULL, NULL)
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
                    acc = acc - x * G[i0 + r, cc] * sin((runs.f0[q] + k * runs.df[q]) * x)
            partial[run_first[q] + k] += acc
