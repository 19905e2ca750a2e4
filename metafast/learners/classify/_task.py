"""The per-task classifier that ``MetaClassifier.adapt`` returns.

Every head adapts a new task to linear class scores on the meta-learned basis,
z_c(x) = phi(x)^T W[:, c] + b[c], so one small scikit-learn classifier serves them all:
``predict_proba`` is softmax(z) (max-shifted), ``classes_`` holds the task's own labels.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum (no overflow)."""
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


class BasisClassifier(ClassifierMixin, BaseEstimator):
    """Linear class scores on a fixed, fitted basis: z = design(X) @ coef + intercept.

    Parameters
    ----------
    basis : fitted BasisFamily
    coef : (m, C) array
    intercept : (C,) array
    classes : (C,) array of the task's labels (any type)
    """

    def __init__(self, basis=None, coef=None, intercept=None, classes=None):
        self.basis = basis
        self.coef = coef
        self.intercept = intercept
        self.classes = classes

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        params["basis"] = copy.deepcopy(self.basis)
        return type(self)(**params)

    def fit(self, X=None, y=None) -> BasisClassifier:
        """Install the given scores (nothing is learned here: MetaClassifier.adapt learned them)."""
        if self.basis is None or not self.basis.__sklearn_is_fitted__():
            raise ValueError("parameter 'basis' must be a fitted BasisFamily (as MetaClassifier.adapt passes it)")
        classes = np.asarray(self.classes)
        coef = np.asarray(self.coef, dtype=np.float64)
        C = classes.shape[0]
        if classes.ndim != 1 or C < 1 or coef.shape != (self.basis.n_basis, C):
            raise ValueError(f"coef must have shape ({self.basis.n_basis}, {C}) for {C} classes; got {coef.shape}")
        b = np.zeros(C) if self.intercept is None else np.asarray(self.intercept, dtype=np.float64)
        self.classes_, self.coef_, self.intercept_ = classes, coef, b
        self.n_features_in_ = self.basis.n_features_in_
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet")

    def scores(self, X) -> np.ndarray:
        """Class scores (n, C)."""
        self._check_fitted()
        return np.asarray(self.basis.design(X), dtype=np.float64) @ self.coef_ + self.intercept_

    def decision_function(self, X) -> np.ndarray:
        """Scores (n, C); for two classes the log odds of classes_[1] (n,), as scikit-learn does."""
        Z = self.scores(X)
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.scores(X))

    def predict_log_proba(self, X) -> np.ndarray:
        Z = self.scores(X)
        Z = Z - Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.scores(X), axis=1)]
