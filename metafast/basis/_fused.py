"""Shared plumbing for families whose sums run in fused Cython kernels.

A subclass implements three kernel calls on validated, C-contiguous arrays of one float dtype:

- ``_kernel_design(X, Phi, n_threads)``
- ``_kernel_weighted_sum(X, W, out, n_threads)``            W (m, k), out (n, k)
- ``_kernel_weighted_sum_tasks(X, offsets, W, out, n_threads)``  W (T, m), out (N,)

and gets ``design``, ``weighted_sum`` and ``weighted_sum_tasks`` with the same validation as
the generic base-class versions (argument names in every error), plus ``_check_G`` for
``design_vjp``.
"""

from __future__ import annotations

import numpy as np

from metafast._validation import check_finite, check_weights, where
from metafast.basis._base import BasisFamily, _check_offsets
from metafast.parallel import effective_n_threads


def check_has_features(X: np.ndarray) -> int:
    """Number of columns of a validated X; zero columns is an error (nothing to expand)."""
    if X.shape[1] == 0:
        raise ValueError(
            f"argument 'X' has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    return X.shape[1]


class FusedFamily(BasisFamily):
    """BasisFamily whose design and weighted sums are Cython kernels (see module docstring)."""

    n_jobs: int | None = None
    #: True when every feature is bounded (|g_j| <= 1, as cos/sin): design needs no overflow check
    _bounded_features = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _n_threads(self) -> int:
        return effective_n_threads(self.n_jobs)

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
        self._kernel_design(X, Phi, self._n_threads())
        return Phi if self._bounded_features else self._check_result(Phi, "design")

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_j w_j g_j(x) per row, fused (never the (n, m) matrix); w is (m,) or (m, k)."""
        Xc = self._check_input(X)
        W = check_weights(w, self.n_basis, "w", dtype=Xc.dtype)
        W2 = W.reshape(self.n_basis, -1)
        out = np.empty((Xc.shape[0], W2.shape[1]), dtype=Xc.dtype)
        self._kernel_weighted_sum(Xc, W2, out, self._n_threads())
        self._check_result(out, "weighted_sum")
        return out[:, 0] if W.ndim == 1 else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task fused sums: rows offsets[t]:offsets[t+1] use W[t]; W is (T, m)."""
        Xc = self._check_input(X)
        off = _check_offsets(offsets, Xc.shape[0])
        n_tasks = off.shape[0] - 1
        Wa = np.asarray(W)
        if Wa.ndim != 2 or Wa.shape != (n_tasks, self.n_basis):
            raise ValueError(
                f"{where('W')} must have shape (n_tasks, n_basis) = ({n_tasks}, "
                f"{self.n_basis}); got {Wa.shape}"
            )
        if Wa.dtype.kind not in "biuf":
            raise TypeError(f"{where('W')} must be numeric; got dtype {Wa.dtype}")
        Wa = np.ascontiguousarray(Wa, dtype=Xc.dtype)
        check_finite(Wa, "W")
        out = np.empty(Xc.shape[0], dtype=Xc.dtype)
        if Xc.shape[0]:
            self._kernel_weighted_sum_tasks(Xc, off, Wa, out, self._n_threads())
        return self._check_result(out, "weighted_sum_tasks")

    def _check_G(self, G, n_rows: int, dtype) -> np.ndarray:
        """Validate the upstream gradient G of design_vjp: shape (n, n_basis), finite."""
        Ga = np.asarray(G)
        if Ga.dtype.kind not in "biuf":
            raise TypeError(f"{where('G')} must be numeric; got dtype {Ga.dtype}")
        if Ga.shape != (n_rows, self.n_basis):
            raise ValueError(
                f"{where('G')} must have the shape of design(X), ({n_rows}, {self.n_basis}); "
                f"got {Ga.shape}"
            )
        Ga = np.ascontiguousarray(Ga, dtype=dtype)
        check_finite(Ga, "G")
        return Ga

    def _check_params(self, params: dict) -> dict:
        """Validate with_params arguments against learnable_params(): names, shapes, finite."""
        current = self.learnable_params()
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no learnable parameter(s) {unknown}; "
                f"it has {sorted(current)}"
            )
        checked = {}
        for key, value in params.items():
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != current[key].shape:
                raise ValueError(
                    f"{where(key)} must have shape {current[key].shape}; got {arr.shape}"
                )
            check_finite(arr, key)
            checked[key] = arr.copy()
        return checked
