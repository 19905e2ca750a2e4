"""Input handling shared by the families with fused Cython kernels (rbf, rff, relu).

Each family keeps only its own mathematics; the checks of weights, per-task weights, cotangents
and the cutting of packed tasks into kernel-sized single-task segments live here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import _as_numeric_array, check_finite, check_weights
from metafast.basis._base import _check_offsets
from metafast.parallel import effective_n_threads

# Below this many (row x basis function) evaluations a call runs on one thread: waking a second
# thread costs more than it saves (and, on a busy machine, can cost a scheduler time slice).
# Results are identical either way.  Tests set it to 0 to exercise the threaded paths.
MIN_PARALLEL_WORK = 1 << 16


def n_threads_for(n_jobs, n_rows: int, n_basis: int) -> int:
    """Kernel threads for a call: ``effective_n_threads(n_jobs)``, or 1 for small work."""
    threads = effective_n_threads(n_jobs)
    return 1 if n_rows * n_basis < MIN_PARALLEL_WORK else threads


def weight_matrix(w: Any, n_basis: int, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """Weights as a C-contiguous (m, k) matrix of ``dtype``, and whether w was 1-D."""
    W = check_weights(w, n_basis, "w", dtype=dtype)
    flat = W.ndim == 1
    return np.ascontiguousarray(W.reshape(n_basis, -1)), flat


def task_weights(W: Any, offsets: Any, n_rows: int, n_basis: int, dtype: np.dtype):
    """Validated (offsets (T+1,) int64, W (T, m) C-contiguous of ``dtype``)."""
    off = _check_offsets(offsets, n_rows)
    arr = _as_numeric_array(W, "W", None)
    n_tasks = off.shape[0] - 1
    if arr.ndim != 2 or arr.shape != (n_tasks, n_basis):
        raise ValueError(
            f"argument 'W' must have shape (n_tasks, n_basis) = ({n_tasks}, {n_basis}); "
            f"got {arr.shape}"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, "W")
    return off, arr


def task_segments(offsets: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut packed tasks into segments of at most ``block`` rows, each inside one task.

    Returns (start, task, stop) int64 arrays; empty tasks give no segment.  The cut depends only
    on the offsets, so the kernels' results do not depend on the thread count.
    """
    sizes = np.diff(offsets)
    n_seg = (sizes + block - 1) // block
    task = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), n_seg)
    first = np.cumsum(n_seg) - n_seg
    within = np.arange(task.shape[0], dtype=np.int64) - np.repeat(first, n_seg)
    start = offsets[task] + within * block
    stop = np.minimum(start + block, offsets[task + 1])
    return (np.ascontiguousarray(start, dtype=np.int64), np.ascontiguousarray(task, dtype=np.int64),
            np.ascontiguousarray(stop, dtype=np.int64))


def cotangent(G: Any, n_rows: int, n_basis: int, dtype: np.dtype) -> np.ndarray:
    """G = dL/dPhi of shape (n, m) as C-contiguous ``dtype``, finite."""
    arr = _as_numeric_array(G, "G", None)
    if arr.shape != (n_rows, n_basis):
        raise ValueError(
            f"argument 'G' must have the shape of design(X), ({n_rows}, {n_basis}); got {arr.shape}"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, "G")
    return arr


def learnable_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float64 parameter array of exactly ``shape`` (for with_params)."""
    arr = _as_numeric_array(value, name, None)
    if arr.shape != shape:
        raise ValueError(f"parameter {name!r} must have shape {shape}; got {arr.shape}")
    arr = np.array(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def require_features(X: np.ndarray) -> None:
    """fit needs at least one feature (a basis over a 0-dimensional input is meaningless)."""
    if X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(
            f"argument 'X' has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )


class PreservesFloat32:
    """scikit-learn tag: float32 input gives float32 output (checked by sklearn's
    check_transformer_preserve_dtypes)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
