"""One task's posterior under a fitted mixture prior, as a scikit-learn regressor."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from metafast._pickle import VersionTagged
from metafast._validation import check_X, check_y
from metafast.learners._arrays import check_task_y
from metafast.learners.bayes._task import gaussian_condition
from metafast.learners.bayes.mixture._em import _gaussian_log_lik, _mixture_moments


class MixtureTaskRegressor(VersionTagged, RegressorMixin, BaseEstimator):
    """One task's posterior under a fitted mixture prior: a scikit-learn regressor.

    ``fit(X, y)`` conditions every component on the task's points: the posterior over which kind of
    task it is (``responsibilities_``) and each component's weight posterior N(m_c, S_c).
    ``predict(X, return_std=True)`` gives the mixture's mean and standard deviation;
    ``predict_components(X)`` shows the per-component picture.

    prior : a fitted MixturePrior; basis : the fitted basis family that made its design.
    """

    def __init__(self, prior=None, basis=None):
        self.prior = prior
        self.basis = basis

    def _design(self, X) -> np.ndarray:
        Phi = np.asarray(self.basis.design(X), dtype=np.float64)
        if Phi.shape[1] != self.prior.n_features_in_:
            raise ValueError(
                f"the basis makes {Phi.shape[1]} columns but the prior was fitted on {self.prior.n_features_in_}"
            )
        return Phi

    def fit(self, X, y) -> MixtureTaskRegressor:
        if not getattr(self.prior, "is_mixture_prior", False):  # MixturePrior (which imports this module)
            raise TypeError(f"parameter 'prior' must be a fitted MixturePrior; got {type(self.prior).__name__}")
        self.prior._check_fitted()
        if self.basis is None or not getattr(self.basis, "__sklearn_is_fitted__", lambda: False)():
            raise NotFittedError("parameter 'basis' must be the fitted basis family the prior was fitted with")
        X = check_X(X, "X")
        y = check_task_y(y, X.shape[0], type(self).__name__)
        Phi = self._design(X) if X.shape[0] else np.empty((0, self.prior.n_features_in_))
        pr = self.prior
        p = pr._params
        C, m = p.n_components, Phi.shape[1]
        post_means, post_covs = np.empty((1, C, m)), np.empty((1, C, m, m))
        Ps, ys = pr._rescaled(Phi, y)
        resp, log_ev = pr._posterior(Ps, ys, np.array([0, len(y)], dtype=np.int64), p, post_means, post_covs)
        d, ysc = pr._col_scale, pr._y_scale
        self.responsibilities_ = resp[0]
        self.log_evidence_ = float(log_ev[0] - len(y) * np.log(ysc))
        self.component_means_ = post_means[0] * ysc / d
        self.component_covariances_ = post_covs[0] * ysc**2 / (d[:, None] * d[None, :])
        self.noise_var_ = pr.noise_var_
        self.n_features_in_ = X.shape[1]
        self.n_samples_seen_ = int(X.shape[0])
        return self

    def update(self, X, y) -> MixtureTaskRegressor:
        """Condition on more points of the same task: sequential Bayes, equal (to round-off) to
        refitting on all points seen so far.

        Each component's weight posterior gets the Kalman (Woodbury) update, and the
        responsibilities are reweighted by each component's predictive likelihood of the new
        points: p(c | all) is proportional to p(c | old) p(y_new | old, c).
        """
        if not hasattr(self, "responsibilities_"):
            raise NotFittedError("This MixtureTaskRegressor is not fitted yet: call fit(X, y) first")
        X = check_X(X, "X", n_features=self.n_features_in_)
        y = check_y(y, "y", n_samples=X.shape[0])
        if X.shape[0] == 0:
            return self
        Phi = self._design(X)
        C = self.responsibilities_.shape[0]
        means, covs = np.empty_like(self.component_means_), np.empty_like(self.component_covariances_)
        log_lik = np.empty(C)
        for c in range(C):
            log_lik[c] = _gaussian_log_lik(
                Phi, y, self.component_means_[c], self.component_covariances_[c], self.noise_var_
            )
            means[c], covs[c] = gaussian_condition(
                Phi, y, self.component_means_[c], self.component_covariances_[c], self.noise_var_
            )
        with np.errstate(divide="ignore"):
            joint = np.log(self.responsibilities_) + log_lik
        total = float(logsumexp(joint))
        self.responsibilities_ = np.exp(joint - total)
        self.log_evidence_ += total
        self.component_means_, self.component_covariances_ = means, covs
        self.n_samples_seen_ += int(X.shape[0])
        return self

    def _components(self, X):
        if not hasattr(self, "responsibilities_"):
            raise NotFittedError("This MixtureTaskRegressor is not fitted yet: call fit(X, y) first")
        X = check_X(X, "X", n_features=self.n_features_in_)
        Phi = self._design(X)
        cmean = Phi @ self.component_means_.T
        quad = np.einsum("nj,cjk,nk->nc", Phi, self.component_covariances_, Phi, optimize=True)
        cvar = self.noise_var_ + np.maximum(quad, 0.0)
        return cmean, cvar

    def predict(self, X, return_std: bool = False):
        """Mixture predictive mean (and std with return_std=True) at X."""
        cmean, cvar = self._components(X)
        mean, var = _mixture_moments(np.broadcast_to(self.responsibilities_, cmean.shape), cmean, cvar)
        return (mean, np.sqrt(var)) if return_std else mean

    def predict_components(self, X) -> dict:
        """Which kind of task is it: {"responsibilities": (C,), "means": (n, C), "stds": (n, C)}."""
        cmean, cvar = self._components(X)
        return {"responsibilities": self.responsibilities_.copy(), "means": cmean, "stds": np.sqrt(cvar)}
