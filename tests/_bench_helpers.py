"""Small meta-learners for the harness tests (numpy, a Python loop over tasks: test helpers only).

``ToyBayes`` is an empirical-Bayes linear model on a basis: the weight prior N(mu, Sigma) is the
mean and covariance of per-task ridge weights on the training tasks; a new task gets the
Gaussian posterior.  It exercises the Bayesian paths (std, NLL, coverage, bands) of the harness
before the real MetaBayes lands.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from metafast.learners._base import MetaLearner, check_tasks


class _Posterior(RegressorMixin, BaseEstimator):
    def __init__(self, basis=None, mean=None, cov=None, noise=1.0):
        self.basis, self.mean, self.cov, self.noise = basis, mean, cov, noise

    def predict(self, X, return_std=False):
        Phi = self.basis.design(X).astype(np.float64)
        mu = Phi @ self.mean
        if not return_std:
            return mu
        var = np.einsum("nm,mk,nk->n", Phi, self.cov, Phi) + self.noise
        return mu, np.sqrt(var)


class ToyBayes(MetaLearner):
    _bayesian = True

    def __init__(self, basis=None, alpha=1e-2):
        self.basis = basis
        self.alpha = alpha

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.basis_ = self._init_basis(tasks, default="rbf", n_basis=12)
        W, resid = [], []
        for t in tasks:
            X = np.concatenate([t.X_support, t.X_query])
            y = np.concatenate([t.y_support, t.y_query])
            Phi = self.basis_.design(X).astype(np.float64)
            w = np.linalg.solve(Phi.T @ Phi + self.alpha * np.eye(Phi.shape[1]), Phi.T @ y)
            W.append(w)
            resid.append(np.mean((y - Phi @ w) ** 2))
        W = np.array(W)
        self.prior_mean_ = W.mean(axis=0)
        self.prior_cov_ = np.cov(W.T) + 1e-6 * np.eye(W.shape[1])
        self.noise_ = max(float(np.mean(resid)), 1e-4)
        self._mf_fitted = True
        return self

    def adapt(self, X, y):
        self._check_fitted()
        Phi = self.basis_.design(X).astype(np.float64)
        P = np.linalg.inv(self.prior_cov_)
        cov = np.linalg.inv(P + Phi.T @ Phi / self.noise_)
        mean = cov @ (P @ self.prior_mean_ + Phi.T @ np.asarray(y, dtype=np.float64) / self.noise_)
        return _Posterior(self.basis_, mean, cov, self.noise_)

    def _predict_tasks(self, tasks):
        means, stds = [], []
        for t in tasks:
            m, s = self.adapt(t.X_support, t.y_support).predict(t.X_query, return_std=True)
            means.append(m)
            stds.append(s)
        return np.concatenate(means), np.concatenate(stds)


class Crashing(MetaLearner):
    """Fails in fit, like a learner with a bug."""

    def __init__(self, basis=None):
        self.basis = basis

    def fit(self, tasks, y=None):
        raise RuntimeError("boom: a deliberately broken learner")
