"""Small numpy basis families with learnable parameters (the common.md contract), and synthetic
hierarchies, for the MetaRidge tests.  Kept independent of the built-in Cython families."""

from __future__ import annotations

import copy

import numpy as np

import metafast as mf
from metafast.basis import BasisFamily


class LearnableRBF(BasisFamily):
    """exp(-||x - c_j||^2 / (2 l^2)) with learnable "centers" (m, d) and "log_length_scale" (1,)."""

    def __init__(self, n_basis: int = 8, length_scale: float = 1.0):
        self.n_basis = n_basis
        self.length_scale = length_scale

    def fit(self, X, y=None):
        lo, hi = X.min(axis=0), X.max(axis=0)
        self.centers_ = lo + np.linspace(0, 1, self.n_basis)[:, None] * (hi - lo)
        self.log_length_scale_ = np.array([np.log(self.length_scale)])
        return self

    def design(self, X):
        d2 = ((X[:, None, :] - self.centers_[None]) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / np.exp(2 * self.log_length_scale_[0]))

    def learnable_params(self):
        return {"centers": self.centers_.copy(), "log_length_scale": self.log_length_scale_.copy()}

    def with_params(self, **params):
        super().with_params(**params)
        new = copy.deepcopy(self)
        if "centers" in params:
            new.centers_ = np.array(params["centers"], dtype=np.float64).reshape(self.centers_.shape)
        if "log_length_scale" in params:
            new.log_length_scale_ = np.array(params["log_length_scale"], dtype=np.float64).reshape(1)
        return new

    def design_vjp(self, X, G):
        X = np.asarray(X, dtype=np.float64)
        Phi = self.design(X)
        l2 = np.exp(2 * self.log_length_scale_[0])
        diff = X[:, None, :] - self.centers_[None]  # (n, m, d)
        GP = G * Phi  # (n, m)
        d_c = (GP[:, :, None] * diff).sum(0) / l2
        d_l = np.array([(GP * (diff**2).sum(-1)).sum() / l2])
        return {"centers": d_c, "log_length_scale": d_l}


class LearnableFourier(BasisFamily):
    """1-D [cos(f_j x), sin(f_j x)] features with learnable "frequencies" (n_basis / 2,)."""

    def __init__(self, n_basis: int = 8, max_frequency: float = 3.0):
        self.n_basis = n_basis
        self.max_frequency = max_frequency

    def fit(self, X, y=None):
        self.frequencies_ = np.linspace(0.2, self.max_frequency, self.n_basis // 2)
        return self

    def design(self, X):
        arg = X[:, :1] * self.frequencies_[None]
        return np.concatenate([np.cos(arg), np.sin(arg)], axis=1)

    def learnable_params(self):
        return {"frequencies": self.frequencies_.copy()}

    def with_params(self, **params):
        super().with_params(**params)
        new = copy.deepcopy(self)
        if "frequencies" in params:
            new.frequencies_ = np.array(params["frequencies"], dtype=np.float64).reshape(-1)
        return new

    def design_vjp(self, X, G):
        x = np.asarray(X, dtype=np.float64)[:, :1]
        arg = x * self.frequencies_[None]
        k = self.n_basis // 2
        d = (-(G[:, :k] * x * np.sin(arg)) + G[:, k:] * x * np.cos(arg)).sum(0)
        return {"frequencies": d}


def linear_hierarchy(n_tasks=400, n_support=8, n_query=8, m=5, d=3, tau=0.3, noise=0.1, seed=0, sizes=None):
    """Tasks y = x @ w_t + noise with w_t ~ N(h, tau^2 I) on an identity-like basis; returns
    (TaskSet, h) with the true mean h."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=d) * 2
    tasks = []
    for t in range(n_tasks):
        n = n_support if sizes is None else sizes[t % len(sizes)]
        w = h + tau * rng.normal(size=d)
        Xs = rng.normal(size=(n, d))
        Xq = rng.normal(size=(n_query, d))
        tasks.append(
            mf.tasks.Task(Xs, Xs @ w + noise * rng.normal(size=n), Xq, Xq @ w + noise * rng.normal(size=n_query))
        )
    return mf.tasks.TaskSet.from_list(tasks), h


class Identity(BasisFamily):
    """Phi = X (so the basis weights are the linear coefficients)."""

    def __init__(self, n_basis: int = 3):
        self.n_basis = n_basis

    def fit(self, X, y=None):
        return self

    def design(self, X):
        return X[:, : self.n_basis].copy()
