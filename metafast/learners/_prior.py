"""The Gaussian weight prior N(mean, cov) with a noise variance: the state every closed-form
learner family (MetaBayes' EM, MetaClassifier's Laplace-EM, learn_basis) works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve


@dataclass
class GaussianPrior:
    """Prior N(mean, cov) over the weights and the noise variance, in standardised target units.

    ``design_map`` (m, m) or None: the prior is on whitened weights v, w = design_map v (the EM
    of MetaBayes runs on Phi design_map; the E-step folds the map into its whitening factor).
    """

    mean: np.ndarray
    cov: np.ndarray
    noise_var: float
    kind: str = "full"
    design_map: np.ndarray | None = None

    def factor(self) -> tuple[np.ndarray, float]:
        """(Sigma^{-1}, log|Sigma|) from a Cholesky factor, with jitter if Sigma is near singular."""
        m = self.cov.shape[0]
        cov = 0.5 * (self.cov + self.cov.T)
        scale = max(float(np.trace(cov)) / max(m, 1), np.finfo(np.float64).tiny)
        jitter = 0.0
        for _ in range(10):
            try:
                c, low = cho_factor(cov + jitter * np.eye(m), lower=True)
                inv = cho_solve((c, low), np.eye(m))
                return 0.5 * (inv + inv.T), 2.0 * float(np.log(np.diag(c)).sum())
            except np.linalg.LinAlgError:
                jitter = scale * 1e-12 if jitter == 0 else jitter * 100
        raise np.linalg.LinAlgError("the prior covariance is not positive definite, even with jitter")

    def kernel_args(self, dtype) -> tuple:
        """Arguments the _bayes kernels take for this prior, in the computation dtype."""
        inv, logdet = self.factor()
        mu = np.ascontiguousarray(self.mean, dtype=dtype)
        return (
            mu,
            np.ascontiguousarray(self.cov, dtype=dtype),
            np.ascontiguousarray(inv, dtype=dtype),
            np.ascontiguousarray(inv @ self.mean, dtype=dtype),
            logdet,
            float(self.noise_var),
            self.kind != "full",
        )

    def copy(self) -> GaussianPrior:
        return GaussianPrior(self.mean.copy(), self.cov.copy(), float(self.noise_var), self.kind, self.design_map)


def whitening(prior: GaussianPrior) -> np.ndarray:
    """U with Sigma = U U^T (lower Cholesky factor, jittered if Sigma is near singular)."""
    m = prior.cov.shape[0]
    if prior.kind != "full":
        return np.diag(np.sqrt(np.maximum(np.diag(prior.cov), 0.0)))
    cov = 0.5 * (prior.cov + prior.cov.T)
    scale = max(float(np.trace(cov)) / max(m, 1), np.finfo(np.float64).tiny)
    jitter = 0.0
    for _ in range(10):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(m))
        except np.linalg.LinAlgError:
            jitter = scale * 1e-12 if jitter == 0 else jitter * 100
    raise np.linalg.LinAlgError("the prior covariance is not positive definite, even with jitter")
