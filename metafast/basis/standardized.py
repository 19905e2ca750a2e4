"""``Standardized``: any basis family evaluated on inputs standardised by their training scaling.

A family whose set-up depends on the scale of each input (rbf centres and widths, rff length
scales, polynomial domains) sees every column on the same footing: phi(x) = inner((x - mean) /
scale).  The mean and scale come from the rows the wrapper is fitted on and are applied unchanged
to every later input (adapt, predict), so a learner that wraps its basis standardises "inside".
Learnable parameters, ``design_vjp`` and the fused sums are the inner family's, on the scaled inputs.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import clone

from metafast.basis._base import BasisFamily
from metafast.basis.linear import column_scaling


class Standardized(BasisFamily):
    """``inner`` on standardised inputs (see the module docstring); the fitted inner is ``inner_``."""

    _n_basis_from_fit = True

    def __init__(self, inner: BasisFamily | None = None):
        self.inner = inner

    @property
    def n_basis(self):
        fitted = getattr(self, "inner_", None)
        return fitted.n_basis if fitted is not None else getattr(self.inner, "n_basis", None)

    def fit(self, X, y=None):
        if not isinstance(self.inner, BasisFamily):
            raise TypeError(f"parameter 'inner' of Standardized must be a BasisFamily; got {type(self.inner).__name__}")
        self.mean_, self.scale_ = column_scaling(X)
        self.inner_ = clone(self.inner).fit(self._scaled(X))
        return self

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_.astype(X.dtype)) / self.scale_.astype(X.dtype)

    def design(self, X):
        return self.inner_.design(self._scaled(X))

    def weighted_sum(self, X, w) -> np.ndarray:
        return self.inner_.weighted_sum(self._scaled(self._check_input(X)), w)

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        return self.inner_.weighted_sum_tasks(self._scaled(self._check_input(X)), offsets, W)

    def learnable_params(self) -> dict[str, np.ndarray]:
        return self.inner_.learnable_params() if hasattr(self, "inner_") else {}

    def with_params(self, **params: np.ndarray) -> Standardized:
        self._check_param_names(params)
        new = copy.copy(self)
        new.inner_ = self.inner_.with_params(**params)
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        return self.inner_.design_vjp(self._scaled(self._check_input(X)), G)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.inner_.get_feature_names_out()
