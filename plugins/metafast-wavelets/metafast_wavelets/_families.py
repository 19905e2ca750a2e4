"""Wavelet basis families on a dyadic grid of scales and shifts (numpy only).

Each feature is mapped onto [0, 1] by the range seen in ``fit``.  Level j of the grid has 2**j
atoms per feature, centred at (k + 1/2) / 2**j with scale ``width / 2**j``; atom (f, j, k) is

    g(x) = psi((u_f - (k + 1/2) / 2**j) / (width * 2**-j)),   u_f = (x_f - lo_f) / (hi_f - lo_f).

Atoms are taken coarse to fine, features interleaved, until there are ``n_basis`` of them; a
partly used level takes its shifts in bit-reversed order, so they are spread evenly over the
domain rather than bunched at its left end.  ``width`` is learnable (as ``log_width``), so a
meta-learner can tune it across tasks through ``design_vjp``.
"""

from __future__ import annotations

import numbers

import numpy as np

from metafast.basis import BasisFamily


def _bit_reversed(j: int) -> np.ndarray:
    """0 .. 2**j - 1 in bit-reversed (van der Corput) order."""
    k = np.arange(2**j)
    rev = np.zeros_like(k)
    for bit in range(j):
        rev |= ((k >> bit) & 1) << (j - 1 - bit)
    return rev


def dyadic_grid(n_basis: int, n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature, level, centre) of the first ``n_basis`` atoms, coarse to fine."""
    feature, level, centre = [], [], []
    j = 0
    while len(feature) < n_basis:
        for k in _bit_reversed(j):
            for f in range(n_features):
                feature.append(f)
                level.append(j)
                centre.append((k + 0.5) / 2**j)
        j += 1
    return (
        np.asarray(feature[:n_basis], dtype=np.intp),
        np.asarray(level[:n_basis], dtype=np.float64),
        np.asarray(centre[:n_basis], dtype=np.float64),
    )


class _DyadicWavelet(BasisFamily):
    """Shared machinery: the grid, the scaling to [0, 1], design and its width derivative."""

    def __init__(self, n_basis: int = 15, width: float = 0.5):
        self.n_basis = n_basis
        self.width = width

    # -- the mother wavelet and its derivative; subclasses define both
    def _psi(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dpsi(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_params(self) -> None:
        m = self.n_basis
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"{type(self).__name__}: argument 'n_basis' must be a positive integer; got {m!r}")
        w = self.width
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not np.isfinite(w) or w <= 0:
            raise ValueError(f"{type(self).__name__}: argument 'width' must be a positive number; got {w!r}")

    def fit(self, X, y=None):
        """Learn each feature's range (the domain the dyadic grid covers)."""
        self._check_params()
        lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        span = hi - lo
        self.lo_ = lo
        self.span_ = np.where(span > 0, span, 1.0)  # a constant feature: unit span, no NaN
        self.feature_, self.level_, self.center_ = dyadic_grid(int(self.n_basis), X.shape[1])
        self.width_ = float(self.width)
        return self

    def _t(self, X: np.ndarray) -> np.ndarray:
        dt = X.dtype
        f = self.feature_
        u = (X[:, f] - self.lo_[f].astype(dt)) / self.span_[f].astype(dt)
        scale = (self.width_ * np.exp2(-self.level_)).astype(dt)
        return (u - self.center_.astype(dt)) / scale

    def design(self, X):
        """(n, n_basis): every atom at every row, in X's dtype."""
        return self._psi(self._t(X))

    # -- meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        width = getattr(self, "width_", self.width)
        return {"log_width": np.array([np.log(width)], dtype=np.float64)}

    def with_params(self, **params):
        new = super().with_params(**params)
        if "log_width" in params:
            value = np.asarray(params["log_width"], dtype=np.float64)
            if value.shape != (1,) or not np.isfinite(value[0]):
                raise ValueError(f"argument 'log_width' must be a finite array of shape (1,); got {value!r}")
            new.width_ = float(np.exp(value[0]))
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """d/d log_width of sum(G * design(X)): dPhi/dlog_width = psi'(t) * (-t)."""
        Xc = self._check_input(X)
        G = np.asarray(G, dtype=np.float64)
        if G.shape != (Xc.shape[0], self.n_basis):
            raise ValueError(f"argument 'G' must have shape {(Xc.shape[0], self.n_basis)}; got {G.shape}")
        t = self._t(Xc.astype(np.float64))
        return {"log_width": np.array([-np.sum(G * self._dpsi(t) * t)])}


class MexicanHat(_DyadicWavelet):
    """Mexican-hat (Ricker) wavelets psi(t) = (1 - t^2) exp(-t^2 / 2) on a dyadic grid.

    Parameters
    ----------
    n_basis : number of atoms (1 + 2 + 4 + ... per feature, the last level partly used).
    width : scale of the level-0 atom relative to the unit domain; level j uses width / 2**j.
    """

    def _psi(self, t):
        t2 = t * t
        return (1 - t2) * np.exp(-0.5 * t2)

    def _dpsi(self, t):
        t2 = t * t
        return t * (t2 - 3) * np.exp(-0.5 * t2)


class Morlet(_DyadicWavelet):
    """Real Morlet wavelets psi(t) = cos(omega0 t) exp(-t^2 / 2) on a dyadic grid.

    Parameters
    ----------
    n_basis : number of atoms (1 + 2 + 4 + ... per feature, the last level partly used).
    width : scale of the level-0 atom relative to the unit domain; level j uses width / 2**j.
    omega0 : centre frequency of the mother wavelet (5 is the usual choice).
    """

    def __init__(self, n_basis: int = 15, width: float = 0.5, omega0: float = 5.0):
        super().__init__(n_basis=n_basis, width=width)
        self.omega0 = omega0

    def _check_params(self) -> None:
        super()._check_params()
        w0 = self.omega0
        if isinstance(w0, bool) or not isinstance(w0, numbers.Real) or not np.isfinite(w0) or w0 < 0:
            raise ValueError(f"Morlet: argument 'omega0' must be a non-negative number; got {w0!r}")

    def _psi(self, t):
        w0 = np.asarray(self.omega0, dtype=t.dtype)
        return np.cos(w0 * t) * np.exp(-0.5 * t * t)

    def _dpsi(self, t):
        w0 = float(self.omega0)
        return -(w0 * np.sin(w0 * t) + t * np.cos(w0 * t)) * np.exp(-0.5 * t * t)
