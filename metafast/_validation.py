"""Input checks shared by every public entry point.

Errors name the argument, the task (index or group key) when there is one, and the problem, so a
user with thousands of tasks can find the bad one.  Nothing is silently dropped or changed:
NaN and inf are errors, not values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_DTYPES = (np.float64, np.float32)


def where(name: str, task: Any = None) -> str:
    """'argument X' or 'argument X of task 3' for error messages."""
    return f"argument {name!r}" if task is None else f"argument {name!r} of task {task!r}"


def _as_numeric_array(value: Any, name: str, task: Any) -> np.ndarray:
    if value is None:
        raise TypeError(f"{where(name, task)} is None; expected an array of numbers")
    if hasattr(value, "tocsr") or type(value).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{where(name, task)} is a scipy sparse matrix: sparse input is not supported; "
            "pass a dense array (X.toarray())"
        )
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{where(name, task)} could not be read as an array: {exc}") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{where(name, task)} holds non-numeric values (dtype object; {exc}); convert it to numbers"
            ) from None
    if arr.dtype.kind in "USV":
        raise TypeError(f"{where(name, task)} holds strings (dtype {arr.dtype}); expected numbers")
    if arr.dtype.kind == "c":
        raise ValueError(f"{where(name, task)} is complex: Complex data not supported; expected real numbers")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where(name, task)} has unsupported dtype {arr.dtype}; expected numbers")
    return arr


def float_dtype_of(arr: np.ndarray) -> np.dtype:
    """float32 stays float32; every other numeric dtype computes in float64."""
    return np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)


def check_finite(arr: np.ndarray, name: str, task: Any = None) -> None:
    """Raise ValueError naming the first NaN or inf entry."""
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        kind = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
        pos = ", ".join(str(int(i)) for i in bad)
        raise ValueError(
            f"{where(name, task)} contains {kind} (first at index [{pos}]); remove or impute non-finite values first"
        )


def check_X(
    X: Any,
    name: str = "X",
    *,
    task: Any = None,
    n_features: int | None = None,
    dtype: Any = None,
    order: str = "C",
    min_samples: int = 0,
    min_features: int = 1,
    estimator: str | None = None,
) -> np.ndarray:
    """Validate a 2-D input matrix and return it as contiguous float32/float64.

    ``dtype`` forces a dtype; by default float32 stays float32 and everything else becomes
    float64.  ``n_features`` checks the column count against what a model was fitted on
    (``estimator`` names that model in the message).  Where scikit-learn's estimator checks look
    for particular phrases, the messages contain them.
    """
    arr = _as_numeric_array(X, name, task)
    if arr.ndim != 2:
        hint = (
            (" Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample.")
            if arr.ndim == 1
            else ""
        )
        raise ValueError(f"{where(name, task)} must be 2-D (n_samples, n_features); got shape {arr.shape}.{hint}")
    if arr.shape[1] < min_features:
        raise ValueError(
            f"{where(name, task)} has {arr.shape[1]} feature(s) (shape={arr.shape}) while a "
            f"minimum of {min_features} is required."
        )
    if n_features is not None and arr.shape[1] != n_features:
        model = estimator or "the model"
        raise ValueError(
            f"{where(name, task)}: X has {arr.shape[1]} features, but {model} is expecting "
            f"{n_features} features as input (the number seen in fit)"
        )
    if arr.shape[0] < min_samples:
        raise ValueError(f"{where(name, task)} has {arr.shape[0]} samples; at least {min_samples} are needed")
    target = np.dtype(dtype) if dtype is not None else float_dtype_of(arr)
    out = np.asarray(arr, dtype=target, order=order)
    if out is arr and not (out.flags.c_contiguous if order == "C" else out.flags.f_contiguous):
        out = np.ascontiguousarray(out) if order == "C" else np.asfortranarray(out)
    check_finite(out, name, task)
    return out


def check_y(
    y: Any,
    name: str = "y",
    *,
    task: Any = None,
    n_samples: int | None = None,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Validate a 1-D target vector (a column vector (n, 1) is accepted and flattened)."""
    arr = _as_numeric_array(y, name, task)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{where(name, task)} must be 1-D (n_samples,); got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{where(name, task)} has {arr.shape[0]} values but X has {n_samples} rows")
    out = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(out, name, task)
    return out


def check_weights(w: Any, n_basis: int, name: str = "w", dtype: Any = np.float64) -> np.ndarray:
    """Validate basis weights of shape (m,) or (m, k)."""
    arr = _as_numeric_array(w, name, None)
    if arr.ndim not in (1, 2) or arr.shape[0] != n_basis:
        raise ValueError(
            f"{where(name)} must have shape ({n_basis},) or ({n_basis}, k) for a basis of "
            f"{n_basis} functions; got {arr.shape}"
        )
    out = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(out, name)
    return out


def check_offsets(offsets: Any, n_rows: int, name: str, n_tasks: int | None = None) -> np.ndarray:
    """Validated int64 task row offsets: 1-D, starting at 0, never decreasing, ending at ``n_rows``
    (and with ``n_tasks + 1`` entries when given).  The one offsets check of metafast."""
    off = np.asarray(offsets)
    want = "n_tasks + 1 (>= 2)" if n_tasks is None else f"n_tasks + 1 = {n_tasks + 1}"
    if (
        off.ndim != 1
        or off.dtype.kind not in "iu"
        or off.shape[0] < 2
        or (n_tasks is not None and off.shape[0] != n_tasks + 1)
    ):
        raise ValueError(
            f"argument {name!r} must be a 1-D integer array of {want} entries; "
            f"got shape {off.shape} and dtype {off.dtype}"
        )
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != n_rows or np.any(np.diff(off) < 0):
        raise ValueError(
            f"argument {name!r} must start at 0, never decrease and end at the row count "
            f"{n_rows}; got first={off[0]}, last={off[-1]}"
        )
    return off


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer >= minimum (bools rejected), with an error naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"parameter {name!r} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"parameter {name!r} must be >= {minimum}; got {value}")
    return int(value)


def check_positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0), with an error naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"parameter {name!r} must be a number; got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"parameter {name!r} must be finite and {bound}; got {value!r}")
    return v
