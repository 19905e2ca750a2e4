"""Random projection features with fused Cython kernels.

- ``RFF``: random Fourier features g_j(x) = sqrt(2/m) cos(omega_j . x + b_j), omega = eps / l,
  eps ~ N(0, I), b ~ U[0, 2 pi): Phi Phi^T approximates the Gaussian kernel of length scale l
  (Rahimi & Recht 2007).  The log length scale (one, or one per dimension with ``ard``) is
  learnable.
- ``RandomReLU``: g_j(x) = max(0, a_j . x + b_j) with directions scaled to the data and kinks
  through random data points, so every feature bends inside the data domain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from metafast._kernels import _random_features as _rf
from metafast.basis import _fused

_MEDIAN_SUBSAMPLE = 1000  # points used by the median heuristic (pairs: ~500,000)


class _ProjectionFeatures(_fused.KernelFamily):
    """Shared evaluation of g_j(x) = act(Om_j . x + b_j) through the projection kernels."""

    _act: int
    _single_thread_small_work = True

    def _projection(self) -> tuple[np.ndarray, np.ndarray, float]:  # pragma: no cover
        raise NotImplementedError

    def _arrays(self, dtype):
        Om, b, scale = self._projection()
        return np.ascontiguousarray(Om, dtype=dtype), np.ascontiguousarray(b, dtype=dtype), scale

    def _compute_input(self, X: np.ndarray) -> np.ndarray:
        """X in the dtype the projections can be computed in without overflow.

        float32 inputs whose projections could exceed float32's range are computed in float64
        (callers cast the result back); projections beyond float64's range are an error rather
        than inf - inf = NaN.
        """
        if X.shape[0] == 0:
            return X
        Om, b, _ = self._projection()
        with np.errstate(over="ignore"):
            bound = float(np.max(np.abs(X).astype(np.float64) @ np.abs(Om).max(axis=0)))
        bound += float(np.max(np.abs(b), initial=0.0))
        if not bound < np.finfo(np.float64).max / 4:
            raise ValueError(
                "argument 'X' has values so large that the random projections overflow float64 "
                f"(|omega . x| up to {bound:.3g}); rescale the inputs"
            )
        if X.dtype == np.float32 and bound > 1e36:
            return X.astype(np.float64)
        return X

    def design(self, X):
        Xw = self._compute_input(X)
        Om, b, scale = self._arrays(Xw.dtype)
        out = np.empty((X.shape[0], self.n_basis), dtype=Xw.dtype)
        _rf.proj_design(Xw, np.ascontiguousarray(Om.T), b, self._act, scale, out, self._threads(X.shape[0]))
        return _cast(out, X.dtype)

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_j w_j g_j(x) for every row, fused (no (n, m) matrix); w (m,) or (m, k)."""
        Xc = self._check_input(X)
        Xw = self._compute_input(Xc)
        W, flat = _fused.weight_matrix(w, self.n_basis, Xw.dtype)
        Om, b, scale = self._arrays(Xw.dtype)
        out = np.empty((Xc.shape[0], W.shape[1]), dtype=Xw.dtype)
        _rf.proj_weighted_sum(Xw, Om, b, self._act, scale, W, out, self._threads(Xc.shape[0]))
        out = _cast(out, Xc.dtype)
        return out[:, 0] if flat else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task fused sums: rows offsets[t]:offsets[t+1] use W[t] (W of shape (T, m))."""
        Xc = self._check_input(X)
        Xw = self._compute_input(Xc)
        off, Wc = _fused.task_weights(W, offsets, Xc.shape[0], self.n_basis, Xw.dtype)
        Om, b, scale = self._arrays(Xw.dtype)
        out = np.empty(Xc.shape[0], dtype=Xw.dtype)
        _rf.proj_weighted_sum_tasks(Xw, Om, b, self._act, scale, off, Wc, out, self._threads(Xc.shape[0]))
        return _cast(out, Xc.dtype)


class RFF(_ProjectionFeatures):
    """Random Fourier features of a Gaussian kernel: sqrt(2/m) cos(eps_j . x / l + b_j).

    Parameters
    ----------
    n_basis : int
        Number of features m.
    length_scale : float, array (n_features,) or None
        None: the median heuristic (median pairwise distance of up to 1000 fitted points; per
        dimension with ``ard``).
    ard : bool
        One length scale per input dimension.
    random_state : int, RandomState or None
        Seed of eps, b and the median subsample.
    n_jobs : int or None
        Kernel threads; None uses every core.  Results do not depend on it.
    """

    _act = _rf.ACT_COS

    def __init__(
        self,
        n_basis: int = 100,
        length_scale: Any = None,
        ard: bool = False,
        random_state: Any = None,
        n_jobs: int | None = None,
    ):
        self.n_basis = n_basis
        self.length_scale = length_scale
        self.ard = ard
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Draw the frequencies and phases; set the length scale from X unless given."""
        m, X = self._fit_input(X)
        d = X.shape[1]
        rng = check_random_state(self.random_state)
        self.eps_ = rng.standard_normal((m, d))
        self.offsets_ = rng.uniform(0.0, 2.0 * np.pi, m)
        shape = (d,) if self.ard else (1,)
        if self.length_scale is None:
            self.length_scale_ = _median_heuristic(X, self.ard, rng)
        else:
            self.length_scale_ = _fused.given_length_scale(self.length_scale, shape, f"ard={self.ard}")
        return self

    def _projection(self):
        Om = self.eps_ / self.length_scale_[None, :]
        return Om, self.offsets_, float(np.sqrt(2.0 / self.n_basis))

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """{"log_length_scale": (1,) or (d,) with ard}."""
        self._check_input(np.zeros((0, getattr(self, "n_features_in_", 1))))
        return {"log_length_scale": np.log(np.asarray(self.length_scale_, dtype=np.float64))}

    def with_params(self, **params: np.ndarray) -> RFF:
        """A fitted copy with "log_length_scale" replaced."""
        checked = self._checked_params(params)
        new = super().with_params()
        if "log_length_scale" in checked:
            new.length_scale_ = _fused.length_scale_from_log(checked["log_length_scale"])
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradient of sum(G * design(X)) with respect to "log_length_scale" (float64)."""
        Xc = self._check_input(X)
        Xw = self._compute_input(Xc)
        Gc = self._check_G(G, Xc.shape[0], Xw.dtype)
        Om, b, scale = self._arrays(Xw.dtype)
        grad = np.zeros(Om.shape, dtype=Xw.dtype)
        _rf.rff_vjp(np.ascontiguousarray(Xw.T), Gc, Om, b, scale, grad, self._threads(Xc.shape[0]))
        per_dim = grad.astype(np.float64).sum(axis=0)
        g = per_dim if self.ard else np.array([per_dim.sum()])
        return {"log_length_scale": g}


class RandomReLU(_ProjectionFeatures):
    """Random ReLU features max(0, a_j . x + b_j) whose kinks fall inside the data domain.

    Directions a_j are random unit vectors divided by the per-dimension standard deviation of
    the fitted data; each kink hyperplane a_j . x + b_j = 0 passes through a randomly chosen
    fitted point.  Features are therefore O(1) on the data and bend where the data are.

    Parameters
    ----------
    n_basis : int
        Number of features m.
    random_state : int, RandomState or None
        Seed of the directions and kink points.
    n_jobs : int or None
        Kernel threads; None uses every core.  Results do not depend on it.
    """

    _act = _rf.ACT_RELU

    def __init__(self, n_basis: int = 100, random_state: Any = None, n_jobs: int | None = None):
        self.n_basis = n_basis
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Draw directions scaled to X's spread and kinks through random points of X."""
        m, X = self._fit_input(X)
        rng = check_random_state(self.random_state)
        spread = X.std(axis=0)
        spread = np.where(spread > 0, spread, 1.0)
        u = rng.standard_normal((m, X.shape[1]))
        u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
        self.directions_ = u / spread[None, :]
        anchors = X[rng.randint(0, X.shape[0], size=m)]
        self.offsets_ = -np.einsum("jq,jq->j", self.directions_, anchors)
        return self

    def _projection(self):
        return self.directions_, self.offsets_, 1.0


def _cast(arr: np.ndarray, dtype) -> np.ndarray:
    """Cast back to the input dtype; ReLU values beyond float32's range become inf (not NaN)."""
    with np.errstate(over="ignore"):
        return arr.astype(dtype, copy=False)


def _median_heuristic(X: np.ndarray, ard: bool, rng) -> np.ndarray:
    """Median pairwise distance (per dimension with ``ard``) of up to 1000 points; where that is
    0 (constant data), the data scale or 1."""
    n = X.shape[0]
    if n > _MEDIAN_SUBSAMPLE:
        X = X[rng.choice(n, _MEDIAN_SUBSAMPLE, replace=False)]
        n = _MEDIAN_SUBSAMPLE
    iu, ju = np.triu_indices(n, k=1)
    if ard:
        if iu.size == 0:
            return np.ones(X.shape[1])
        med = np.median(np.abs(X[iu] - X[ju]), axis=0)
        scale = np.max(np.abs(X), axis=0)
        return np.where(med > 0, med, np.where(scale > 0, scale, 1.0))
    if iu.size == 0:
        return np.ones(1)
    med = float(np.median(np.sqrt(np.sum((X[iu] - X[ju]) ** 2, axis=1))))
    if not med > 0:
        scale = float(np.max(np.abs(X))) if X.size else 0.0
        med = scale if scale > 0 else 1.0
    return np.array([med])
