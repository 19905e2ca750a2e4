"""Polynomial family: Legendre or Chebyshev polynomials of total degree in d dimensions.

Each input dimension is mapped from its fitted domain [lo_j, hi_j] to [-1, 1]:
u_j = (x_j - shift_j) / scale_j with shift = (lo + hi) / 2 and scale = (hi - lo) / 2.
Columns are the products prod_j P_{alpha_j}(u_j) for multi-indices alpha in graded order
(total degree 0, 1, 2, ...; within a degree, lexicographically decreasing), truncated to
exactly n_basis columns.  In 1-D column k is simply P_k(u).  Column 0 is the constant.

Evaluation is by three-term recurrences (metafast/_kernels/_polynomial_tile.pxd): no powers, no
per-element special functions.  Outside the fitted domain the polynomials extrapolate (they
grow like |u|^degree), as numpy.polynomial does.

Learnable: ``log_scale`` (d,) and ``shift`` (d,), the domain mapping.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _polynomial
from metafast._validation import check_positive_int
from metafast.basis._fused import FusedFamily, check_has_features
from metafast.basis._lattice import compositions

KINDS = {"legendre": 0, "chebyshev": 1}


def graded_multi_indices(d: int, m: int) -> np.ndarray:
    """The first m multi-indices in d dimensions in graded order, shape (m, d)."""
    out: list[tuple[int, ...]] = []
    degree = 0
    while len(out) < m:
        out.extend(compositions(degree, d))
        degree += 1
    return np.asarray(out[:m], dtype=np.intp).reshape(m, d)


def _column_structure(alpha: np.ndarray):
    """parent / factor dim / factor degree per column, and the CSR of non-zero entries."""
    m, d = alpha.shape
    index = {tuple(a): c for c, a in enumerate(alpha)}
    parent = np.zeros(m, dtype=np.intp)
    fdim = np.zeros(m, dtype=np.intp)
    fdeg = np.zeros(m, dtype=np.intp)
    nz_ptr = np.zeros(m + 1, dtype=np.intp)
    nz_dim, nz_deg = [], []
    for c, a in enumerate(alpha):
        nz = np.flatnonzero(a)
        nz_dim.extend(nz)
        nz_deg.extend(a[nz])
        nz_ptr[c + 1] = len(nz_dim)
        if nz.size:
            j = nz[-1]
            p = a.copy()
            p[j] = 0
            parent[c], fdim[c], fdeg[c] = index[tuple(p)], j, a[j]
    return (parent, fdim, fdeg, nz_ptr, np.asarray(nz_dim, dtype=np.intp), np.asarray(nz_deg, dtype=np.intp))


class Polynomial(FusedFamily):
    """Orthogonal polynomials of total degree on the fitted domain, mapped to [-1, 1].

    Parameters
    ----------
    n_basis : int
        Exact number of columns (graded order, truncated), including the constant.
    kind : {"legendre", "chebyshev"}
        Legendre P_k or Chebyshev T_k (first kind), numpy's normalisation (P_k(1) = 1).
    n_jobs : int, optional
        Threads for the kernels (None = all cores).
    """

    def __init__(self, n_basis: int = 10, kind: str = "legendre", n_jobs: int | None = None):
        self.n_basis = n_basis
        self.kind = kind
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        m = check_positive_int(self.n_basis, "n_basis")
        if self.kind not in KINDS:
            raise ValueError(f"parameter 'kind' must be one of {sorted(KINDS)}; got {self.kind!r}")
        check_has_features(X)
        lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        self.domain_ = np.stack([lo, hi])
        half = (hi - lo) / 2.0
        self.shift_ = (lo + hi) / 2.0
        self.log_scale_ = np.log(np.where(half > 0, half, 1.0))
        self.multi_indices_ = graded_multi_indices(X.shape[1], m)
        self.degree_ = int(self.multi_indices_.sum(axis=1).max())
        self._structure = _column_structure(self.multi_indices_)
        return self

    def _args(self):
        return (self.shift_, np.exp(-self.log_scale_), *self._structure, self.degree_, KINDS[self.kind])

    def _kernel_design(self, X, Phi, n_threads):
        _polynomial.polynomial_design(X, *self._args(), Phi, n_threads)

    def _kernel_weighted_sum(self, X, W, out, n_threads):
        _polynomial.polynomial_weighted_sum(X, *self._args(), W, out, n_threads)

    def _kernel_weighted_sum_tasks(self, X, offsets, W, out, n_threads):
        _polynomial.polynomial_weighted_sum_tasks(X, *self._args(), offsets, W, out, n_threads)

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """``log_scale`` and ``shift`` of the map u = (x - shift) / exp(log_scale)."""
        if not self.__sklearn_is_fitted__():
            return {}
        return {"log_scale": self.log_scale_.copy(), "shift": self.shift_.copy()}

    def with_params(self, **params) -> Polynomial:
        checked = self._checked_params(params)
        new = super().with_params()
        if "log_scale" in checked:
            new.log_scale_ = checked["log_scale"]
        if "shift" in checked:
            new.shift_ = checked["shift"]
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradients of sum(G * design(X)) w.r.t. ``log_scale`` and ``shift``.

        With s = exp(log_scale): du/dshift = -1/s and du/dlog_scale = -u.
        """
        Xc = self._check_input(X)
        Ga = self._check_G(G, Xc.shape[0], Xc.dtype)
        d = Xc.shape[1]
        n_chunks = max(1, -(-Xc.shape[0] // _polynomial.ROWS_PER_CHUNK))
        partial = np.zeros((n_chunks, 2 * d), dtype=np.float64)
        if Xc.shape[0]:
            _polynomial.polynomial_domain_grad(Xc, *self._args(), Ga, partial, self._threads(Xc.shape[0]))
        sums = partial.sum(axis=0)  # fixed order: identical for any thread count
        return {"log_scale": -sums[d:], "shift": -sums[:d] * np.exp(-self.log_scale_)}
