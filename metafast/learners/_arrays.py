"""Array coercion shared by every learner family's per-task regressors and engines."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning

from metafast._validation import check_y


def check_task_y(y, n: int, estimator: str) -> np.ndarray:
    """A per-task regressor's targets: the scikit-learn conventions for y=None (an error saying
    y is required) and a column vector (flattened with a DataConversionWarning), then check_y."""
    if y is None:
        raise ValueError(f"{estimator} requires y to be passed, but the target y is None")
    if getattr(y, "ndim", None) == 2 and y.shape[1:] == (1,):
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it is flattened",
            DataConversionWarning,
            stacklevel=3,
        )
    return check_y(y, "y", n_samples=n)


def as_f64(A: np.ndarray) -> np.ndarray:
    """A as a C-contiguous float64 array (no copy when it already is one)."""
    return A if (A.dtype == np.float64 and A.flags.c_contiguous) else np.ascontiguousarray(A, dtype=np.float64)


def fast_y(y, n: int, name: str = "y", finite_checked_by_caller: bool = False) -> np.ndarray:
    """check_y, with a fast path for an already valid float64 C-contiguous vector of n values
    (whose finiteness the caller may check itself, e.g. in the kernel that reads it)."""
    if (
        type(y) is np.ndarray
        and y.dtype == np.float64
        and y.ndim == 1
        and y.shape[0] == n
        and y.flags.c_contiguous
        and (finite_checked_by_caller or np.isfinite(y).all())
    ):
        return y
    return check_y(y, name, n_samples=n)
