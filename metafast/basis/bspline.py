"""B-spline family: degree-p splines on uniform clamped knots over the fitted domain.

1-D: n_basis B-splines of degree p on n_basis - p equal intervals of [lo, hi] (clamped knots,
so the first and last functions equal 1 at the ends).  They sum to 1 everywhere (outside the
domain the end pieces are extended as polynomials, as scipy's ``extrapolate=True``).

d > 1: additive per-dimension splines, sum_j s_j(x_j): the columns are shared out as evenly as
possible between dimensions (each needs at least p + 1).  No tensor products (their count
grows exponentially with d).  Each dimension's functions sum to 1, so the design matrix
contains the constant d times over: collinear, which ridge-type learners handle but plain
least squares does not.

Only p + 1 functions per dimension are non-zero at a point; the fused kernels
(metafast/_kernels/_bspline.pyx) touch only those.  Knots are not learnable.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _bspline
from metafast._validation import check_positive_int
from metafast.basis._fused import FusedFamily, check_has_features


class BSpline(FusedFamily):
    """Additive B-splines of degree ``degree`` on uniform knots spanning the fitted domain.

    Parameters
    ----------
    n_basis : int
        Exact number of columns (all dimensions together); at least d (degree + 1).
    degree : int
        Spline degree p (0 = piecewise constant, 3 = cubic), at most 15.
    n_jobs : int, optional
        Threads for the kernels (None = all cores).
    """

    def __init__(self, n_basis: int = 12, degree: int = 3, n_jobs: int | None = None):
        self.n_basis = n_basis
        self.degree = degree
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        m = check_positive_int(self.n_basis, "n_basis")
        p = check_positive_int(self.degree, "degree", minimum=0)
        if p > _bspline.MAX_SPLINE_DEGREE:
            raise ValueError(f"parameter 'degree' must be <= {_bspline.MAX_SPLINE_DEGREE}; got {p}")
        d = check_has_features(X)
        per_dim = np.array([m // d + (1 if j < m % d else 0) for j in range(d)], dtype=np.intp)
        if per_dim.min() < p + 1:
            raise ValueError(
                f"parameter 'n_basis'={m} is too small for degree {p} splines on {d} "
                f"feature(s): each feature needs at least degree + 1 = {p + 1} functions, "
                f"so n_basis >= {d * (p + 1)}"
            )
        lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        self.domain_ = np.stack([lo, hi])
        self.n_intervals_ = per_dim - p
        span = np.where(hi > lo, hi - lo, 1.0)
        self.lo_ = lo
        self.h_ = span / self.n_intervals_
        self.degree_ = p
        self.col_ = np.concatenate([[0], np.cumsum(per_dim)[:-1]]).astype(np.intp)
        return self

    def knots(self, j: int = 0) -> np.ndarray:
        """The clamped knot vector of dimension j (length n_intervals + 2 degree + 1)."""
        p, nint = self.degree_, int(self.n_intervals_[j])
        i = np.clip(np.arange(nint + 2 * p + 1) - p, 0, nint)
        return self.lo_[j] + i * self.h_[j]

    def _args(self):
        return (self.lo_, self.h_, self.n_intervals_, self.col_, self.degree_)

    def _kernel_design(self, X, Phi, n_threads):
        _bspline.bspline_design(X, *self._args(), Phi, n_threads)

    def _kernel_weighted_sum(self, X, W, out, n_threads):
        _bspline.bspline_weighted_sum(X, *self._args(), W, out, n_threads)

    def _kernel_weighted_sum_tasks(self, X, offsets, W, out, n_threads):
        _bspline.bspline_weighted_sum_tasks(X, *self._args(), offsets, W, out, n_threads)
