"""Shared plumbing for the families whose sums run in fused Cython kernels.

``KernelFamily`` holds what every kernel-backed family needs: the kernel thread count, the checks
of the weights ``w`` (m,) / (m, k), the per-task ``offsets`` and ``W`` (T, m), the cotangent ``G``
of ``design_vjp`` and the ``with_params`` arguments, with the argument's name in every error.

``FusedFamily`` (fourier, polynomial, bspline) adds ``design``, ``weighted_sum`` and
``weighted_sum_tasks`` on top of three kernel calls, each on validated, C-contiguous arrays of
one float dtype:

- ``_kernel_design(X, Phi, n_threads)``
- ``_kernel_weighted_sum(X, W, out, n_threads)``            W (m, k), out (n, k)
- ``_kernel_weighted_sum_tasks(X, offsets, W, out, n_threads)``  W (T, m), out (N,)

The families with their own evaluation paths (rbf, random_features) subclass ``KernelFamily``
directly and use the same checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import _as_numeric_array, check_finite, check_positive_int, check_weights
from metafast.basis._base import BasisFamily, _check_offsets
from metafast.parallel import effective_n_threads, threads_for_work

# multiply-adds of one (row, basis function) evaluation, for the small-work rule (parallel.py)
_WORK_PER_EVALUATION = 16


def n_threads_for(n_jobs, n_rows: int, n_basis: int) -> int:
    """Kernel threads for a call: ``effective_n_threads(n_jobs)``, or 1 for small work."""
    return threads_for_work(effective_n_threads(n_jobs), _WORK_PER_EVALUATION * n_rows * n_basis)


def check_has_features(X: np.ndarray) -> int:
    """Number of columns of a validated X; zero columns is an error (nothing to expand)."""
    if X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(f"argument 'X' has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    return X.shape[1]


def weight_matrix(w: Any, n_basis: int, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """Weights as a C-contiguous (m, k) matrix of ``dtype``, and whether w was 1-D."""
    W = check_weights(w, n_basis, "w", dtype=dtype)
    return np.ascontiguousarray(W.reshape(n_basis, -1)), W.ndim == 1


def task_weights(W: Any, offsets: Any, n_rows: int, n_basis: int, dtype: np.dtype):
    """Validated (offsets (T+1,) int64, W (T, m) C-contiguous of ``dtype``, finite)."""
    off = _check_offsets(offsets, n_rows)
    arr = _as_numeric_array(W, "W", None)
    n_tasks = off.shape[0] - 1
    if arr.shape != (n_tasks, n_basis):
        raise ValueError(f"argument 'W' must have shape (n_tasks, n_basis) = ({n_tasks}, {n_basis}); got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, "W")
    return off, arr


def cotangent(G: Any, n_rows: int, n_basis: int, dtype: np.dtype) -> np.ndarray:
    """G = dL/dPhi of shape (n, m) as C-contiguous ``dtype``, finite."""
    arr = _as_numeric_array(G, "G", None)
    if arr.shape != (n_rows, n_basis):
        raise ValueError(f"argument 'G' must have the shape of design(X), ({n_rows}, {n_basis}); got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, "G")
    return arr


def learnable_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float64 parameter array (a fresh copy) of exactly ``shape`` (for with_params)."""
    arr = _as_numeric_array(value, name, None)
    if arr.shape != shape:
        raise ValueError(f"parameter {name!r} must have shape {shape}; got {arr.shape}")
    arr = np.array(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def given_length_scale(value: Any, shape: tuple[int, ...], settings: str) -> np.ndarray:
    """A user's ``length_scale`` (a number, or an array of ``shape``) as a fresh float64 array of
    ``shape``, finite and > 0; ``settings`` names the options that fix the shape."""
    ls = np.asarray(value, dtype=np.float64)
    if ls.ndim == 0:
        ls = np.full(shape, float(ls))
    if ls.shape != shape:
        raise ValueError(
            f"parameter 'length_scale' must be a number or an array of shape {shape} ({settings}); got shape {ls.shape}"
        )
    if not np.all(np.isfinite(ls)) or np.any(ls <= 0):
        raise ValueError("parameter 'length_scale' must be finite and > 0")
    return ls.copy()


def length_scale_from_log(log_ls: np.ndarray) -> np.ndarray:
    """exp(log length scales), which must stay finite and > 0 in float64."""
    ls = np.exp(log_ls)
    if not np.all(np.isfinite(ls)) or np.any(ls <= 0):
        raise ValueError("parameter 'log_length_scale' gives length scales that are not finite and > 0 in float64")
    return ls


class KernelFamily(BasisFamily):
    """BasisFamily evaluated by Cython kernels: thread count and the checks of every input."""

    n_jobs: int | None = None
    #: True: small work runs on one thread (``parallel.threads_for_work``)
    _single_thread_small_work = False

    def _threads(self, n_rows: int) -> int:
        if self._single_thread_small_work:
            return n_threads_for(self.n_jobs, n_rows, self.n_basis)
        return effective_n_threads(self.n_jobs)

    def _fit_input(self, X: np.ndarray) -> tuple[int, np.ndarray]:
        """(n_basis, X as float64) for fit, after checking n_basis, the features and n_jobs."""
        m = check_positive_int(self.n_basis, "n_basis")
        check_has_features(X)
        effective_n_threads(self.n_jobs)  # validate early
        return m, np.asarray(X, dtype=np.float64)

    def _check_G(self, G, n_rows: int, dtype) -> np.ndarray:
        """Validate the upstream gradient G of design_vjp: shape (n, n_basis), finite."""
        return cotangent(G, n_rows, self.n_basis, dtype)

    def _checked_params(self, params: dict) -> dict[str, np.ndarray]:
        """with_params arguments checked against learnable_params(): names, shapes, finite."""
        self._check_param_names(params)
        current = self.learnable_params()
        return {key: learnable_array(value, key, current[key].shape) for key, value in params.items()}


class FusedFamily(KernelFamily):
    """KernelFamily whose design and weighted sums are three kernel calls (module docstring)."""

    #: True when every feature is bounded (|g_j| <= 1, as cos/sin): design needs no overflow check
    _bounded_features = False

    def _check_result(self, out: np.ndarray, what: str) -> np.ndarray:
        """Raise instead of returning inf/NaN (extrapolating far outside the fitted domain)."""
        if out.size and not np.isfinite(out).all():
            raise ValueError(
                f"{type(self).__name__}.{what} overflowed to a non-finite value: argument 'X' is "
                f"too far outside the fitted domain ({self._domain_text()}) for these features, "
                "or the weights are huge; refit on data that covers X or rescale the inputs"
            )
        return out

    def _domain_text(self) -> str:
        dom = getattr(self, "domain_", None)
        if dom is None:
            return "unknown"
        return ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(dom[0], dom[1]))

    def design(self, X) -> np.ndarray:
        """The (n, n_basis) design matrix; float32 in gives float32 out."""
        Phi = np.empty((X.shape[0], self.n_basis), dtype=X.dtype)
        self._kernel_design(X, Phi, self._threads(X.shape[0]))
        return Phi if self._bounded_features else self._check_result(Phi, "design")

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_j w_j g_j(x) per row, fused (never the (n, m) matrix); w is (m,) or (m, k)."""
        Xc = self._check_input(X)
        W, flat = weight_matrix(w, self.n_basis, Xc.dtype)
        out = np.empty((Xc.shape[0], W.shape[1]), dtype=Xc.dtype)
        self._kernel_weighted_sum(Xc, W, out, self._threads(Xc.shape[0]))
        self._check_result(out, "weighted_sum")
        return out[:, 0] if flat else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task fused sums: rows offsets[t]:offsets[t+1] use W[t]; W is (T, m)."""
        Xc = self._check_input(X)
        off, Wc = task_weights(W, offsets, Xc.shape[0], self.n_basis, Xc.dtype)
        out = np.empty(Xc.shape[0], dtype=Xc.dtype)
        if Xc.shape[0]:
            self._kernel_weighted_sum_tasks(Xc, off, Wc, out, self._threads(Xc.shape[0]))
        return self._check_result(out, "weighted_sum_tasks")
