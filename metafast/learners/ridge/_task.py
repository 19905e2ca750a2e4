"""The per-task regressor of MetaRidge: ridge regression shrunk towards a meta-learned mean."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from metafast._kernels import _ridge
from metafast._pickle import VersionTagged
from metafast._validation import check_positive_float
from metafast.basis._base import BasisFamily
from metafast.learners._arrays import as_f64, check_task_y, fast_y


class BiasedRidgeRegressor(VersionTagged, RegressorMixin, BaseEstimator):
    """Ridge regression on a basis, shrunk towards ``prior_mean`` instead of zero.

    coef_ = argmin ||Phi w - y||^2 + alpha * sum_j (w_j - prior_mean_j)^2 / prior_scale_j^2,
    with Phi = basis.design(X) (an unfitted basis is first fitted on X, as in a Pipeline; the
    fitted one is ``basis_``).  ``MetaRidge.adapt`` returns one of these, already fitted; it is
    an ordinary scikit-learn regressor (clone, cross_val_score, pipelines).  It is not Bayesian:
    ``predict(X, return_std=True)`` raises (use MetaBayes for predictive uncertainty).
    """

    def __init__(self, basis=None, prior_mean=None, alpha: float = 1.0, prior_scale=None):
        self.basis = basis
        self.prior_mean = prior_mean
        self.alpha = alpha
        self.prior_scale = prior_scale

    def _prior(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        h = np.zeros(m) if self.prior_mean is None else np.asarray(self.prior_mean, dtype=np.float64)
        s = np.ones(m) if self.prior_scale is None else np.asarray(self.prior_scale, dtype=np.float64)
        if h.shape != (m,) or s.shape != (m,):
            raise ValueError(
                f"parameters 'prior_mean' and 'prior_scale' must have shape ({m},) for a basis of "
                f"{m} functions; got {h.shape} and {s.shape}"
            )
        return np.ascontiguousarray(h), np.ascontiguousarray(s)

    def fit(self, X, y) -> BiasedRidgeRegressor:
        """Solve the biased ridge problem on (X, y); the basis must already be fitted."""
        basis = self.basis
        if not isinstance(basis, BasisFamily):
            raise TypeError(f"parameter 'basis' must be a metafast BasisFamily; got {type(basis).__name__}")
        if not basis.__sklearn_is_fitted__():  # as in a Pipeline: fit an unfitted basis on X
            basis = clone(basis).fit(X)
        self.basis_ = basis
        Phi = as_f64(basis.design(X))
        yc = (
            fast_y(y, Phi.shape[0])
            if isinstance(y, np.ndarray) and y.ndim == 1
            else check_task_y(y, Phi.shape[0], type(self).__name__)
        )
        h, s = self._prior(Phi.shape[1])
        alpha = check_positive_float(self.alpha, "alpha")
        w = np.empty(Phi.shape[1])
        self.n_jitter_ = _ridge.adapt_predict(Phi, yc, h, s, alpha, w, np.empty((0, Phi.shape[1])), _EMPTY_1D)
        self.coef_ = w
        self.intercept_ = 0.0
        self.n_features_in_ = basis.n_features_in_
        return self

    def predict(self, X, return_std: bool = False) -> np.ndarray:
        """Predictions Phi(X) @ coef_ (float64)."""
        if return_std:
            raise ValueError(
                "BiasedRidgeRegressor (from MetaRidge.adapt) gives point predictions only: "
                "return_std=True needs a Bayesian learner such as mf.MetaBayes"
            )
        if not hasattr(self, "coef_"):
            raise NotFittedError("This BiasedRidgeRegressor is not fitted yet: call fit(X, y)")
        return self.basis_.weighted_sum(X, self.coef_.astype(_dtype_of(X), copy=False)).astype(np.float64, copy=False)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")


_EMPTY_1D = np.empty(0)


def _dtype_of(X) -> np.dtype:
    return np.dtype(np.float32) if getattr(X, "dtype", None) == np.float32 else np.dtype(np.float64)
