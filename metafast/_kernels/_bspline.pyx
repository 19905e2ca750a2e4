"""B-spline features: additive per-dimension splines of degree p on uniform clamped knots.

Dimension j has nint_j uniform intervals on [lo_j, lo_j + nint_j h_j] and the clamped knot
vector t_i = lo_j + h_j clip(i - p, 0, nint_j), i = 0..nint_j + 2p, hence nint_j + p basis
functions in columns col_j, col_j + 1, ...  Only p + 1 of them are non-zero at any x: the
kernels find the knot interval in O(1) (uniform knots) and evaluate those p + 1 values with
the Cox-de Boor triangle, so a fused weighted sum costs O(d p^2 + d p k) per row whatever m.
Points outside the domain use the polynomial piece of the nearest interval (scipy's
``extrapolate=True``), so the values still sum to 1.
"""

from libc.math cimport floor
from cython cimport floating
from cython.parallel cimport prange

from metafast._kernels._rowblocks cimport task_of_row

cdef enum:
    MAX_DEGREE = 15

MAX_SPLINE_DEGREE = MAX_DEGREE


ctypedef struct Splines:
    Py_ssize_t d
    Py_ssize_t p
    const double* lo      # (d,) domain start
    const double* h       # (d,) interval width
    const Py_ssize_t* nint  # (d,) intervals
    const Py_ssize_t* col   # (d,) first column of each dimension


cdef Splines _splines(const double[::1] lo, const double[::1] h, const Py_ssize_t[::1] nint,
                      const Py_ssize_t[::1] col, Py_ssize_t p):
    cdef Splines s
    s.d = lo.shape[0]
    s.p = p
    s.lo = &lo[0]
    s.h = &h[0]
    s.nint = &nint[0]
    s.col = &col[0]
    return s


cdef inline double _knot(double lo, double h, Py_ssize_t nint, Py_ssize_t p,
                         Py_ssize_t i) noexcept nogil:
    i = i - p
    if i < 0:
        i = 0
    elif i > nint:
        i = nint
    return lo + i * h


cdef inline Py_ssize_t _nonzero_values(double x, const Splines* s, Py_ssize_t j,
                                       double* N) noexcept nogil:
    """N[0..p] = the non-zero basis values of dimension j at x; returns their first index."""
    cdef double left[MAX_DEGREE + 1]
    cdef double right[MAX_DEGREE + 1]
    cdef double lo = s.lo[j], h = s.h[j], t, saved, temp
    cdef Py_ssize_t nint = s.nint[j], p = s.p, mu, span, k, r
    t = (x - lo) / h
    if t < 0:                       # also clamps huge |x| before the integer cast
        mu = 0
    elif t >= nint:
        mu = nint - 1
    else:
        mu = <Py_ssize_t> floor(t)
        if mu > nint - 1:
            mu = nint - 1
    span = mu + p
    N[0] = 1.0
    for k in range(1, p + 1):
        left[k] = x - _knot(lo, h, nint, p, span + 1 - k)
        right[k] = _knot(lo, h, nint, p, span + k) - x
        saved = 0.0
        for r in range(k):
            temp = N[r] / (right[r + 1] + left[k - r])
            N[r] = saved + right[r + 1] * temp
            saved = left[k - r] * temp
        N[k] = saved
    return mu


cdef void _design_row(const floating[:, ::1] X, Py_ssize_t i, const Splines* s,
                      floating[:, ::1] Phi) noexcept nogil:
    cdef double N[MAX_DEGREE + 1]
    cdef Py_ssize_t j, a, mu
    for a in range(Phi.shape[1]):
        Phi[i, a] = 0
    for j in range(s.d):
        mu = _nonzero_values(X[i, j], s, j, N)
        for a in range(s.p + 1):
            Phi[i, s.col[j] + mu + a] = <floating> N[a]


cdef void _weighted_row(const floating[:, ::1] X, Py_ssize_t i, const Splines* s,
                        const floating[:, ::1] W, floating[:, ::1] out) noexcept nogil:
    cdef double N[MAX_DEGREE + 1]
    cdef Py_ssize_t j, a, mu, o, c
    cdef double acc
    for o in range(W.shape[1]):
        out[i, o] = 0
    for j in range(s.d):
        mu = _nonzero_values(X[i, j], s, j, N)
        c = s.col[j] + mu
        for o in range(W.shape[1]):
            acc = out[i, o]
            for a in range(s.p + 1):
                acc = acc + N[a] * W[c + a, o]
            out[i, o] = <floating> acc


cdef void _task_row(const floating[:, ::1] X, Py_ssize_t i, const Splines* s,
                    const long long* offsets, const floating[:, ::1] W,
                    floating[::1] out) noexcept nogil:
    cdef double N[MAX_DEGREE + 1]
    cdef Py_ssize_t j, a, mu, c, t = task_of_row(offsets, W.shape[0], i)
    cdef double acc = 0.0
    for j in range(s.d):
        mu = _nonzero_values(X[i, j], s, j, N)
        c = s.col[j] + mu
        for a in range(s.p + 1):
            acc = acc + N[a] * W[t, c + a]
    out[i] = <floating> acc


def bspline_design(
    const floating[:, ::1] X,          # IN  (n, d) inputs
    const double[::1] lo,              # IN  (d,) domain start per dimension
    const double[::1] h,               # IN  (d,) knot spacing
    const Py_ssize_t[::1] nint,        # IN  (d,) intervals per dimension
    const Py_ssize_t[::1] col,         # IN  (d,) first column per dimension
    Py_ssize_t degree,                 # IN  spline degree p <= MAX_SPLINE_DEGREE
    floating[:, ::1] Phi,              # OUT (n, m) design matrix (mostly zeros)
    int n_threads,
):
    """Phi = the additive B-spline design matrix of X."""
    cdef Splines s = _splines(lo, h, nint, col, degree)
    cdef Py_ssize_t i
    for i in prange(X.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        _design_row(X, i, &s, Phi)


def bspline_weighted_sum(
    const floating[:, ::1] X,          # IN  (n, d)
    const double[::1] lo,              # IN  knots as in bspline_design
    const double[::1] h,
    const Py_ssize_t[::1] nint,
    const Py_ssize_t[::1] col,
    Py_ssize_t degree,
    const floating[:, ::1] W,          # IN  (m, k)
    floating[:, ::1] out,              # OUT (n, k) Phi(X) @ W using only the non-zeros
    int n_threads,
):
    """out = Phi(X) @ W touching p + 1 weights per dimension and row."""
    cdef Splines s = _splines(lo, h, nint, col, degree)
    cdef Py_ssize_t i
    for i in prange(X.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        _weighted_row(X, i, &s, W, out)


def bspline_weighted_sum_tasks(
    const floating[:, ::1] X,          # IN  (N, d) packed inputs
    const double[::1] lo,              # IN  knots as in bspline_design
    const double[::1] h,
    const Py_ssize_t[::1] nint,
    const Py_ssize_t[::1] col,
    Py_ssize_t degree,
    const long long[::1] offsets,      # IN  (T+1,) task boundaries
    const floating[:, ::1] W,          # IN  (T, m)
    floating[::1] out,                 # OUT (N,)
    int n_threads,
):
    """out[i] = Phi(X[i]) . W[task of row i], using only the non-zeros."""
    cdef Splines s = _splines(lo, h, nint, col, degree)
    cdef Py_ssize_t i
    for i in prange(X.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        _task_row(X, i, &s, &offsets[0], W, out)
