"""A small numpy RBF family with learnable hyperparameters, for testing basis learning against the
BasisFamily contract (learnable_params / with_params / design_vjp) without depending on the
Cython families being written in parallel."""

from __future__ import annotations

import copy

import numpy as np

from metafast.basis._base import BasisFamily


class LearnableRBF(BasisFamily):
    """g_j(x) = exp(-||x - c_j||^2 / (2 l^2)); learnable "log_length_scale" (1,) and "centers" (m, d)."""

    def __init__(self, n_basis: int = 10, length_scale: float = 1.0):
        self.n_basis = n_basis
        self.length_scale = length_scale

    def fit(self, X, y=None):
        lo, hi = X.min(axis=0), X.max(axis=0)
        t = np.linspace(0, 1, self.n_basis)[:, None]
        self.centers_ = lo + t * (hi - lo)
        self.log_length_scale_ = np.array([np.log(self.length_scale)])
        return self

    def design(self, X):
        d2 = ((X[:, None, :] - self.centers_[None].astype(X.dtype)) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / np.exp(2 * self.log_length_scale_[0]))

    def learnable_params(self):
        return {"log_length_scale": self.log_length_scale_.copy(), "centers": self.centers_.copy()}

    def with_params(self, **params):
        new = copy.deepcopy(self)
        if "log_length_scale" in params:
            new.log_length_scale_ = np.asarray(params["log_length_scale"], dtype=np.float64).reshape(1)
        if "centers" in params:
            new.centers_ = np.asarray(params["centers"], dtype=np.float64).reshape(self.centers_.shape)
        return new

    def design_vjp(self, X, G):
        X = np.asarray(X, dtype=np.float64)
        G = np.asarray(G, dtype=np.float64)
        diff = X[:, None, :] - self.centers_[None]  # (n, m, d)
        l2 = np.exp(2 * self.log_length_scale_[0])
        Phi = np.exp(-0.5 * (diff**2).sum(-1) / l2)
        GP = G * Phi
        return {
            "log_length_scale": np.array([np.sum(GP * (diff**2).sum(-1)) / l2]),
            "centers": np.einsum("nm,nmd->md", GP, diff) / l2,
        }
