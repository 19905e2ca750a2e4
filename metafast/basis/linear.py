"""The ``linear`` family: the standardised inputs and a constant, g(x) = ((x - mean) / scale, 1).

The simplest basis a classifier or regressor on a table needs, and often the best one in more
than a few dimensions (where a fixed set of local functions throws information away).  ``fit``
records each column's mean and standard deviation (a constant column gets scale 1, so it maps to
0 rather than NaN); the width is d + 1, known once fitted (``_n_basis_from_fit``).
"""

from __future__ import annotations

import numpy as np

from metafast.basis._base import BasisFamily


def column_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of every column of X in float64; scale = std, or 1 where std is 0."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[~(scale > 0)] = 1.0
    return mean, scale


class Linear(BasisFamily):
    """g(x) = ((x - mean_) / scale_, 1): n_basis = n_features + 1 once fitted.

    Parameters
    ----------
    standardize : bool
        Centre and scale each input by its training mean and standard deviation (default); False
        keeps the raw inputs (mean 0, scale 1).
    include_constant : bool
        Append the constant column (default True).
    """

    _n_basis_from_fit = True

    def __init__(self, standardize: bool = True, include_constant: bool = True):
        self.standardize = standardize
        self.include_constant = include_constant

    @property
    def n_basis(self):
        d = getattr(self, "n_features_in_", None)
        return None if d is None else int(d) + bool(self.include_constant)

    def fit(self, X, y=None):
        for name in ("standardize", "include_constant"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"parameter {name!r} of Linear must be True or False; got {getattr(self, name)!r}")
        if self.standardize:
            self.mean_, self.scale_ = column_scaling(X)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        return self

    def design(self, X):
        Z = (X - self.mean_.astype(X.dtype)) / self.scale_.astype(X.dtype)
        if not self.include_constant:
            return Z
        return np.concatenate([Z, np.ones((X.shape[0], 1), dtype=X.dtype)], axis=1)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        d = self.n_features_in_
        names = [f"x{j}" for j in range(d)] if input_features is None else [str(f) for f in input_features]
        return np.asarray(names + (["1"] if self.include_constant else []), dtype=object)
