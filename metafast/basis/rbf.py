"""Gaussian radial basis functions with fused Cython kernels.

    g_j(x) = exp(-0.5 * sum_q ((x_q - c_jq) / l_jq)^2)

The length scales l come in four shapes: one shared (1,), one per centre (m,), one per input
dimension (d,) with ``ard=True``, or both (m, d).  Centres and log length scales are learnable:
``design_vjp`` returns the gradient of sum(G * Phi) with respect to both from one fused kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from metafast._kernels import _rbf
from metafast._validation import check_X
from metafast.basis import _fused

_CENTER_MODES = ("grid", "kmeans")


class RBF(_fused.KernelFamily):
    """Gaussian RBF basis: ``n_basis`` centres on a grid or from k-means, fitted to the data.

    Parameters
    ----------
    n_basis : int
        Number of basis functions m (exactly the number of design-matrix columns).
    centers : "grid", "kmeans" or array (n_basis, n_features)
        "grid": for one feature an even grid over the data range; for d features a grid of
        g points per dimension over the bounding box when n_basis == g**d, else k-means.
        "kmeans": k-means centres of the data.  An array is used as given.
    length_scale : float, array or None
        None sets it from the centre spacing (the mean distance from each centre to its nearest
        other centre; per dimension with ``ard``).  An array must have the length-scale shape.
    ard : bool
        One length scale per input dimension.
    per_center : bool
        One length scale per centre (with ``ard`` as well: one per centre and dimension).
    random_state : int, RandomState or None
        Seed of k-means (and of the filler centres when there are fewer distinct points than
        centres).
    n_jobs : int or None
        Kernel threads; None uses every core.  Results do not depend on it.
    """

    _single_thread_small_work = True

    def __init__(
        self,
        n_basis: int = 40,
        centers: Any = "grid",
        length_scale: Any = None,
        ard: bool = False,
        per_center: bool = False,
        random_state: Any = None,
        n_jobs: int | None = None,
    ):
        self.n_basis = n_basis
        self.centers = centers
        self.length_scale = length_scale
        self.ard = ard
        self.per_center = per_center
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def _scale_shape(self, d: int) -> tuple[int, ...]:
        if self.per_center and self.ard:
            return (self.n_basis, d)
        if self.per_center:
            return (self.n_basis,)
        if self.ard:
            return (d,)
        return (1,)

    def fit(self, X, y=None):
        """Place the centres and set the length scales from the data X (n, d)."""
        m, X = self._fit_input(X)
        d = X.shape[1]
        self.centers_ = self._place_centers(X, m)
        self.length_scale_ = self._initial_length_scale(X, d)
        return self

    def _place_centers(self, X: np.ndarray, m: int) -> np.ndarray:
        d = X.shape[1]
        if isinstance(self.centers, str):
            if self.centers not in _CENTER_MODES:
                raise ValueError(f"parameter 'centers' must be 'grid', 'kmeans' or an array; got {self.centers!r}")
            if self.centers == "grid":
                g = round(m ** (1.0 / d))
                for cand in (g - 1, g, g + 1):
                    if cand >= 1 and cand**d == m:
                        return _grid(X, cand)
            return _kmeans_centers(X, m, self.random_state)
        C = check_X(self.centers, "centers", n_features=d, dtype=np.float64)
        if C.shape[0] != m:
            raise ValueError(f"parameter 'centers' has {C.shape[0]} rows but n_basis={m}; they must match")
        return C.copy()

    def _initial_length_scale(self, X: np.ndarray, d: int) -> np.ndarray:
        shape = self._scale_shape(d)
        if self.length_scale is not None:
            return _fused.given_length_scale(self.length_scale, shape, f"ard={self.ard}, per_center={self.per_center}")
        C = self.centers_
        if self.ard:
            span = X.max(axis=0) - X.min(axis=0)
            per_dim = span / max(self.n_basis ** (1.0 / d) - 1.0, 1.0)
            fallback = _nearest_spacing(C, span)
            per_dim = np.where(per_dim > 0, per_dim, fallback)
            return np.broadcast_to(per_dim, shape).copy()
        span = X.max(axis=0) - X.min(axis=0)
        return np.full(shape, _nearest_spacing(C, span))

    # ------------------------------------------------------------------ kernels' inputs
    def _kernel_arrays(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Centres (m, d) and inverse length scales (m, d) in ``dtype``."""
        C = self.centers_
        m, d = C.shape
        ls = np.asarray(self.length_scale_, dtype=np.float64)
        if self.per_center and not self.ard:
            ls = ls[:, None]  # one per centre: broadcast along the dimensions
        S = np.broadcast_to(1.0 / ls, (m, d))
        return np.ascontiguousarray(C, dtype=dtype), np.ascontiguousarray(S, dtype=dtype)

    # ------------------------------------------------------------------ evaluation
    def design(self, X):
        C, S = self._kernel_arrays(X.dtype)
        out = np.empty((X.shape[0], self.n_basis), dtype=X.dtype)
        _rbf.rbf_design(X, np.ascontiguousarray(C.T), np.ascontiguousarray(S.T), out, self._threads(X.shape[0]))
        return out

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_j w_j g_j(x) for every row, fused (no (n, m) matrix); w (m,) or (m, k)."""
        Xc = self._check_input(X)
        W, flat = _fused.weight_matrix(w, self.n_basis, Xc.dtype)
        C, S = self._kernel_arrays(Xc.dtype)
        out = np.empty((Xc.shape[0], W.shape[1]), dtype=Xc.dtype)
        _rbf.rbf_weighted_sum(Xc, C, S, W, out, self._threads(Xc.shape[0]))
        return out[:, 0] if flat else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task fused sums: rows offsets[t]:offsets[t+1] use W[t] (W of shape (T, m))."""
        Xc = self._check_input(X)
        off, Wc = _fused.task_weights(W, offsets, Xc.shape[0], self.n_basis, Xc.dtype)
        C, S = self._kernel_arrays(Xc.dtype)
        out = np.empty(Xc.shape[0], dtype=Xc.dtype)
        _rbf.rbf_weighted_sum_tasks(Xc, C, S, off, Wc, out, self._threads(Xc.shape[0]))
        return out

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """{"centers": (m, d), "log_length_scale": (1,), (m,), (d,) or (m, d)}."""
        self._check_fitted()
        return {
            "centers": np.array(self.centers_, dtype=np.float64),
            "log_length_scale": np.log(np.asarray(self.length_scale_, dtype=np.float64)),
        }

    def with_params(self, **params: np.ndarray) -> RBF:
        """A fitted copy with "centers" and/or "log_length_scale" replaced."""
        checked = self._checked_params(params)
        new = super().with_params()
        if "centers" in checked:
            new.centers_ = checked["centers"]
        if "log_length_scale" in checked:
            new.length_scale_ = _fused.length_scale_from_log(checked["log_length_scale"])
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradient of sum(G * design(X)) w.r.t. "centers" and "log_length_scale" (float64)."""
        Xc = self._check_input(X)
        Gc = self._check_G(G, Xc.shape[0], Xc.dtype)
        C, S = self._kernel_arrays(Xc.dtype)
        grad_c = np.zeros(C.shape, dtype=Xc.dtype)
        grad_l = np.zeros(C.shape, dtype=Xc.dtype)
        _rbf.rbf_vjp(np.ascontiguousarray(Xc.T), Gc, C, S, grad_c, grad_l, self._threads(Xc.shape[0]))
        grad_l = grad_l.astype(np.float64)
        if self.per_center and self.ard:
            g_ls = grad_l
        elif self.per_center:
            g_ls = grad_l.sum(axis=1)
        elif self.ard:
            g_ls = grad_l.sum(axis=0)
        else:
            g_ls = np.array([grad_l.sum()])
        return {"centers": grad_c.astype(np.float64), "log_length_scale": g_ls}

    def _check_fitted(self) -> None:
        self._check_input(np.zeros((0, getattr(self, "n_features_in_", 1))))


# ---------------------------------------------------------------------- centre placement
def _grid(X: np.ndarray, g: int) -> np.ndarray:
    """g points per dimension, evenly over the data's bounding box (g**d centres)."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    axes = [np.linspace(a, b, g) for a, b in zip(lo, hi)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([a.ravel() for a in mesh], axis=1)


def _kmeans_centers(X: np.ndarray, m: int, random_state: Any) -> np.ndarray:
    """k-means centres; when X has fewer distinct points than m, those points plus uniform
    filler points in the (slightly widened) bounding box, so there are always m centres."""
    uniq = np.unique(X, axis=0)
    if uniq.shape[0] <= m:
        rng = check_random_state(random_state)
        lo, hi = X.min(axis=0), X.max(axis=0)
        pad = np.where(hi > lo, 0.0, 0.5)
        filler = rng.uniform(lo - pad, hi + pad, size=(m - uniq.shape[0], X.shape[1]))
        return np.concatenate([uniq, filler], axis=0)
    from sklearn.cluster import KMeans

    seed = check_random_state(random_state).randint(2**31 - 1)
    km = KMeans(n_clusters=m, n_init=1, random_state=seed)
    km.fit(X)
    return np.array(km.cluster_centers_, dtype=np.float64)


def _nearest_spacing(C: np.ndarray, span: np.ndarray) -> float:
    """Mean distance from each centre to its nearest other centre (a length scale that makes
    neighbouring bumps overlap); the data span (or 1) when the centres coincide."""
    m = C.shape[0]
    if m > 1:
        from scipy.spatial import cKDTree  # O(m log m) time, O(m) memory, even for large m

        with np.errstate(over="ignore", invalid="ignore"):
            dist, _ = cKDTree(C).query(C, k=2)
            value = float(np.mean(dist[:, 1]))
        if value > 0 and np.isfinite(value):
            return value
    width = float(np.max(span)) if span.size else 0.0
    return width if width > 0 else 1.0
