"""The per-task Bayesian regressor that ``MetaBayes.adapt`` returns.

It holds a Gaussian posterior N(coef_, covariance_) over the basis weights of one task, starting
from the meta-learned prior, and refines it point by point: ``update(X, y)`` is the block
Sherman-Morrison-Woodbury (Kalman) update, O(m^2) per point for a single point, and gives the same
posterior as conditioning on all points at once (ALPaCA's recursive form, docs/derivations.md 2.2).
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from metafast._kernels import _bayes
from metafast._pickle import VersionTagged
from metafast._validation import check_positive_float, check_positive_int, check_y
from metafast.learners._arrays import as_f64, check_task_y


def gaussian_condition(
    Phi: np.ndarray, y: np.ndarray, mean: np.ndarray, cov: np.ndarray, noise_var: float
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, cov) of w ~ N(mean, cov) after y = Phi w + N(0, noise_var I), in float64.

    Uses the k x k innovation covariance Phi cov Phi^T + noise_var I, so the cost is
    O(k m^2 + k^2 m + k^3); for k = 1 this is the Sherman-Morrison update.
    """
    k = Phi.shape[0]
    if k == 0:
        return mean.copy(), cov.copy()
    B = Phi @ cov  # (k, m)
    C = B @ Phi.T
    C[np.diag_indices(k)] += noise_var
    jitter = 0.0
    scale = max(float(np.trace(C)) / k, np.finfo(np.float64).tiny)
    for _ in range(10):
        try:
            factor = cho_factor(C + jitter * np.eye(k), lower=True)
            break
        except np.linalg.LinAlgError:
            jitter = scale * 1e-12 if jitter == 0 else jitter * 100
    else:  # pragma: no cover - noise_var > 0 makes C positive definite
        raise np.linalg.LinAlgError("innovation covariance is not positive definite")
    gain = cho_solve(factor, B).T  # (m, k) = cov Phi^T C^{-1}
    new_mean = mean + gain @ (y - Phi @ mean)
    new_cov = cov - gain @ B
    new_cov = 0.5 * (new_cov + new_cov.T)
    return new_mean, new_cov


class BayesTaskRegressor(VersionTagged, RegressorMixin, BaseEstimator):
    """Bayesian linear regression on a fixed basis with a given Gaussian prior (one task).

    Parameters
    ----------
    basis : BasisFamily
        The meta-learned basis (kept as given; ``clone`` copies it fitted).  An unfitted basis
        is first fitted on X, as in a Pipeline; the basis in use is ``basis_``.
    prior_mean : (m,) array
    prior_covariance : (m, m) array
    noise_var : float
        Observation noise variance sigma^2.

    Attributes
    ----------
    coef_ : (m,) posterior mean of the weights.
    covariance_ : (m, m) posterior covariance of the weights.
    noise_var_ : float
    n_samples_seen_ : int, points conditioned on so far (fit + update).
    """

    def __init__(self, basis=None, prior_mean=None, prior_covariance=None, noise_var=1.0):
        self.basis = basis
        self.prior_mean = prior_mean
        self.prior_covariance = prior_covariance
        self.noise_var = noise_var

    def __sklearn_clone__(self):
        # the basis is part of the model, not a hyperparameter to refit: keep it fitted
        params = self.get_params(deep=False)
        params["basis"] = copy.deepcopy(self.basis)
        return type(self)(**params)

    # ------------------------------------------------------------------ helpers
    def _prior(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.basis_.n_basis
        mean = np.zeros(m) if self.prior_mean is None else np.asarray(self.prior_mean, dtype=np.float64)
        cov = np.eye(m) if self.prior_covariance is None else np.asarray(self.prior_covariance, dtype=np.float64)
        if mean.shape != (m,) or cov.shape != (m, m):
            raise ValueError(
                f"prior_mean must have shape ({m},) and prior_covariance ({m}, {m}) for a basis of "
                f"{m} functions; got {mean.shape} and {cov.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError("prior_mean and prior_covariance must be finite")
        return mean, cov

    def _design(self, X) -> np.ndarray:
        # the basis validates X (2-D, numeric, finite, its number of features) in design()
        return as_f64(self.basis_.design(X))

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ API
    def fit(self, X, y) -> BayesTaskRegressor:
        """Condition the prior on (X, y); X may have zero rows (the posterior is then the prior)."""
        if not hasattr(self.basis, "__sklearn_is_fitted__"):
            raise TypeError(f"parameter 'basis' must be a metafast BasisFamily; got {type(self.basis).__name__}")
        self.basis_ = self.basis if self.basis.__sklearn_is_fitted__() else clone(self.basis).fit(X)
        mean, cov = self._prior()
        self.noise_var_ = check_positive_float(self.noise_var, "noise_var")
        Phi = self._design(X)
        yc = check_task_y(y, Phi.shape[0], type(self).__name__)
        self.coef_, self.covariance_ = gaussian_condition(Phi, yc, mean, cov, self.noise_var_)
        self.n_features_in_ = self.basis_.n_features_in_
        self.n_samples_seen_ = int(Phi.shape[0])
        return self

    def _set_posterior(self, coef: np.ndarray, covariance: np.ndarray, n_samples: int) -> BayesTaskRegressor:
        """Install a posterior computed elsewhere (MetaBayes.adapt's kernel) as the fitted state.

        The caller guarantees what ``fit`` would check: a fitted basis and a prior of the right
        shapes whose posterior after ``n_samples`` points is N(coef, covariance).
        """
        self.basis_ = self.basis
        self.coef_ = coef
        self.covariance_ = covariance
        self.noise_var_ = float(self.noise_var)
        self.n_features_in_ = self.basis.n_features_in_
        self.n_samples_seen_ = int(n_samples)
        return self

    def update(self, X, y) -> BayesTaskRegressor:
        """Refine the posterior with new points (rank-k update, O(m^2) per single point).

        Equal (to round-off) to refitting on all points seen so far.
        """
        self._check_fitted()
        Phi = self._design(X)
        yc = check_y(y, "y", n_samples=Phi.shape[0])
        self.coef_, self.covariance_ = gaussian_condition(Phi, yc, self.coef_, self.covariance_, self.noise_var_)
        self.n_samples_seen_ += int(Phi.shape[0])
        return self

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean (and std, observation noise included) at X."""
        self._check_fitted()
        Phi = self._design(X)
        mean = np.empty(Phi.shape[0])
        std = np.empty(Phi.shape[0] if return_std else 0)
        _bayes.predict_one(
            Phi, as_f64(self.coef_), as_f64(self.covariance_), self.noise_var_, bool(return_std), mean, std
        )
        return (mean, std) if return_std else mean

    def sample_weights(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws (n_samples, m) from the weight posterior (e.g. for Thompson sampling).

        ``n_samples`` is an integer >= 0; ``random_state`` anything ``np.random.default_rng``
        accepts (None, a non-negative int, a SeedSequence or a Generator).
        """
        self._check_fitted()
        n_samples = check_positive_int(n_samples, "n_samples", minimum=0)
        try:
            rng = np.random.default_rng(random_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"parameter 'random_state' must be None, a non-negative int, a SeedSequence "
                f"or a Generator; got {random_state!r} ({exc})"
            ) from None
        return rng.multivariate_normal(self.coef_, self.covariance_, size=n_samples, method="eigh")
