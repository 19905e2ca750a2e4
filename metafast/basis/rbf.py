"""Gaussian RBF family (placeholder numpy version; the Cython kernels replace it)."""

from __future__ import annotations

import numpy as np

from metafast.basis._base import BasisFamily


class RBF(BasisFamily):
    """g_j(x) = exp(-||x - c_j||^2 / (2 l^2)), centres on a quantile grid of the data."""

    def __init__(self, n_basis: int = 40, length_scale: float | None = None):
        self.n_basis = n_basis
        self.length_scale = length_scale

    def fit(self, X, y=None):
        lo, hi = X.min(axis=0), X.max(axis=0)
        t = np.linspace(0, 1, self.n_basis)[:, None]
        self.centers_ = lo + t * (hi - lo)
        span = float(np.max(hi - lo)) or 1.0
        self.length_scale_ = self.length_scale or span / max(self.n_basis - 1, 1)
        return self

    def design(self, X):
        d2 = ((X[:, None, :] - self.centers_[None, :, :].astype(X.dtype)) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / self.length_scale_ ** 2)
