"""BasisFamily: the base class of every basis family, built-in or from a plugin.

A family is a scikit-learn transformer mapping X (n, d) to its design matrix Phi (n, m), where
column j is g_j(x; theta).  A subclass implements two methods:

- ``fit(X, y=None)``: data-dependent set-up (domain, centres); returns self;
- ``design(X)``: the (n, m) design matrix of an already validated X.

The base class wraps both so that every input is validated the same way (2-D, numeric, finite,
right number of features, fitted first) and supplies ``transform``, ``weighted_sum`` (blocked
over rows: never the whole (n, m) matrix) and ``weighted_sum_tasks`` (each packed task its own
weights).  Built-in families override the sums with fused Cython kernels.

Families whose hyperparameters can be meta-learned also implement ``learnable_params``,
``with_params`` and ``design_vjp`` (the gradient of sum(G * Phi(X)) with respect to each
learnable parameter, which is all a learner needs for the chain rule).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from metafast._memory import check_allocation
from metafast._pickle import VersionTagged
from metafast._validation import check_finite, check_weights, check_X

ROW_BLOCK = 1024  # rows of the design matrix materialised at a time by the generic sums


def _wrap_fit(fit):
    @functools.wraps(fit)
    def checked_fit(self, X, y=None, **kwargs):
        if _is_taskset(X):
            return fit(self, X, y, **kwargs)
        Xc = check_X(X, "X", min_samples=1)
        if not getattr(self, "_n_basis_from_fit", False):  # else the width is only known after fit
            check_allocation(
                self._fit_nbytes(*Xc.shape), f"fitting {type(self).__name__}(n_basis={self.n_basis})", "lower n_basis"
            )
        result = fit(self, Xc, y, **kwargs)
        self.n_features_in_ = Xc.shape[1]
        self._mf_fitted = True
        return result

    checked_fit._mf_checked = True
    return checked_fit


def _wrap_design(design):
    @functools.wraps(design)
    def checked_design(self, X):
        Xc = self._check_input(X)
        check_allocation(
            Xc.shape[0] * float(self.n_basis) * Xc.dtype.itemsize,
            f"the ({Xc.shape[0]}, {self.n_basis}) design matrix of {type(self).__name__}",
            "pass fewer rows at a time (or stream the tasks in chunks) or lower n_basis",
        )
        Phi = design(self, Xc)
        Phi = np.asarray(Phi)
        m = self.n_basis
        if Phi.shape != (Xc.shape[0], m):
            raise RuntimeError(
                f"{type(self).__name__}.design returned shape {Phi.shape}; expected "
                f"({Xc.shape[0]}, {m}) (n_samples, n_basis): a bug in the family"
            )
        if Phi.dtype != Xc.dtype:
            Phi = Phi.astype(Xc.dtype)
        check_design_finite(self, Phi)
        return Phi

    checked_design._mf_checked = True
    return checked_design


def family_label(family: Any) -> str:
    """``basis family 'hermite' (Hermite)``: the registered name when there is one (built-in or
    plugin), for messages that must say which family is at fault."""
    cls = type(family)
    try:
        from metafast.plugins import basis_registry

        registry = basis_registry()
        names = [n for n in registry.names() if registry.get(n) is cls]
    except Exception:  # noqa: BLE001 - a message must not fail because of a plugin
        names = []
    return f"basis family {names[0]!r} ({cls.__name__})" if names else f"basis family {cls.__name__}"


class NonFiniteDesignError(ValueError):
    """A basis family returned NaN in its design matrix (raised by the base class's check)."""


def check_design_finite(family: Any, Phi: np.ndarray, first_row: int = 0) -> None:
    """Refuse a design matrix holding NaN (a bug in the family, or inputs it cannot take), naming
    the family and the first bad entry.  One sum decides in the common case.  An infinite entry
    is left to the learners (a ReLU of a projection beyond float range is inf, not undefined)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isnan(Phi.sum()):
            return
    bad = np.isnan(Phi)
    if not bad.any():  # inf - inf in the sum, no NaN entry
        return
    row, col = (int(v) for v in np.argwhere(bad)[0])
    raise NonFiniteDesignError(
        f"{family_label(family)} returned NaN in its design matrix at row {first_row + row}, column {col} "
        f"({int(bad.sum())} NaN entries in all): every entry must be a number; the family cannot "
        "evaluate these inputs or has a bug"
    )


def _is_taskset(obj) -> bool:
    return hasattr(obj, "support_offsets") and hasattr(obj, "X_support")


class BasisFamily(VersionTagged, TransformerMixin, BaseEstimator):
    """Base class of basis families: implement ``fit`` and ``design``; get the rest."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, wrapper in (("fit", _wrap_fit), ("design", _wrap_design)):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_mf_checked", False):
                setattr(cls, name, wrapper(method))

    # ------------------------------------------------------------------ to implement
    def fit(self, X, y=None):
        """Data-dependent set-up (domain, centres); returns self."""
        return self

    def design(self, X) -> np.ndarray:  # pragma: no cover - abstract
        """The (n, m) design matrix of X; float32 in gives float32 out."""
        raise NotImplementedError(f"{type(self).__name__} must implement design(X)")

    def __sklearn_tags__(self):
        # design keeps float32 (the checked design casts Phi to X's float dtype), so every
        # family preserves it (checked by sklearn's check_transformer_preserve_dtypes)
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _fit_nbytes(self, n_samples: int, n_features: int) -> float:
        """Estimated peak memory of ``fit`` (checked before fitting): by default a few
        (n_basis, n_features) float64 arrays (centres, frequencies, scales and their temporaries);
        a family whose fit needs more overrides this."""
        m = getattr(self, "n_basis", 0)
        m = m if isinstance(m, (int, np.integer)) and not isinstance(m, bool) else 0
        return 4.0 * 8 * float(m) * (n_features + 1)

    # ------------------------------------------------------------------ fitted state
    def __sklearn_is_fitted__(self) -> bool:
        return bool(getattr(self, "_mf_fitted", False))

    def _check_input(self, X, name: str = "X") -> np.ndarray:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(X) (or pass it to a "
                "meta-learner, which fits it on the training tasks) before design/transform"
            )
        return check_X(X, name, n_features=getattr(self, "n_features_in_", None), estimator=type(self).__name__)

    def fit_tasks(self, tasks) -> BasisFamily:
        """Fit on the inputs of a TaskSet (support and query points of every task)."""
        X = np.concatenate([tasks.X_support, tasks.X_query], axis=0)
        return self.fit(X)

    # ------------------------------------------------------------------ derived API
    def transform(self, X) -> np.ndarray:
        """Same as design(X), so a family drops into a scikit-learn Pipeline."""
        return self.design(X)

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        return self.fit(X, y, **fit_params).design(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{j}" for j in range(self.n_basis)], dtype=object)

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_i w_i g_i(x) for every row of X; w has shape (m,) or (m, k).

        Generic version: the design matrix is built ``ROW_BLOCK`` rows at a time, so memory stays
        O(ROW_BLOCK * m) whatever n is.  Built-in families override this with a fused kernel.
        """
        Xc = self._check_input(X)
        W = check_weights(w, self.n_basis, "w", dtype=Xc.dtype)
        out = np.empty((Xc.shape[0],) + W.shape[1:], dtype=Xc.dtype)
        for start, Phi in self._design_blocks(Xc):
            out[start : start + Phi.shape[0]] = Phi @ W
        return out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task weighted sums over packed tasks.

        Rows ``offsets[t]:offsets[t+1]`` of X belong to task t and use weights ``W[t]``
        (W has shape (T, m)).  Returns (N,) predictions, one per row.
        """
        from metafast._kernels import _tasksum

        Xc = self._check_input(X)
        offsets = _check_offsets(offsets, Xc.shape[0])
        W = np.asarray(W)
        if W.ndim != 2 or W.shape != (offsets.shape[0] - 1, self.n_basis):
            raise ValueError(
                f"argument 'W' must have shape (n_tasks, n_basis) = "
                f"({offsets.shape[0] - 1}, {self.n_basis}); got {W.shape}"
            )
        W = np.ascontiguousarray(W, dtype=Xc.dtype)
        check_finite(W, "W")
        out = np.empty(Xc.shape[0], dtype=Xc.dtype)
        for start, Phi in self._design_blocks(Xc):
            _tasksum.rows_dot_task_weights(Phi, offsets, W, start, out[start : start + Phi.shape[0]])
        return out

    def _design_blocks(self, Xc: np.ndarray):
        """(start, Phi) for consecutive ``ROW_BLOCK``-row blocks of an already validated X.

        Calls the family's own design (unwrapped: X was validated once for the whole call), so
        the generic sums never hold more than ROW_BLOCK x m of the design matrix.
        """
        design = getattr(type(self).design, "__wrapped__", None)
        for start in range(0, Xc.shape[0], ROW_BLOCK):
            block = Xc[start : start + ROW_BLOCK]
            Phi = design(self, block) if design is not None else self.design(block)
            Phi = np.ascontiguousarray(Phi, dtype=Xc.dtype)
            check_design_finite(self, Phi, start)
            yield start, Phi

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """Hyperparameters a learner may tune, in an unconstrained parametrisation.

        Keys name them (e.g. ``"log_length_scale"``, ``"centers"``); values are float64 arrays.
        The default is none: the family is used as it is.
        """
        return {}

    def with_params(self, **params: np.ndarray) -> BasisFamily:
        """A fitted copy of this family with some learnable parameters replaced."""
        self._check_param_names(params)
        return copy.deepcopy(self)

    def _check_param_names(self, params: dict) -> None:
        """Every with_params key must be one of learnable_params()."""
        if params:
            known = self.learnable_params()
            unknown = sorted(set(params) - set(known))
            if unknown:
                raise ValueError(
                    f"{type(self).__name__} has no learnable parameter(s) {unknown}; it has {sorted(known)}"
                )

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradient of sum_ij G_ij Phi_ij(X) with respect to each learnable parameter.

        G has the shape of design(X).  Returns a dict with the keys and shapes of
        ``learnable_params()``.
        """
        if not self.learnable_params():
            return {}
        raise NotImplementedError(f"{type(self).__name__} does not implement design_vjp")

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        return BaseEstimator.__repr__(self, N_CHAR_MAX)


# a family that needs no data-dependent set-up may omit fit: the inherited one validates X and
# marks the family fitted like any subclass's own fit
BasisFamily.fit = _wrap_fit(BasisFamily.fit)


def _check_offsets(offsets: Any, n_rows: int) -> np.ndarray:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.shape[0] < 1 or off.dtype.kind not in "iu":
        raise ValueError(f"argument 'offsets' must be a 1-D integer array (n_tasks + 1,); got {off!r}")
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != n_rows or np.any(np.diff(off) < 0):
        raise ValueError(
            "argument 'offsets' must start at 0, never decrease and end at the number of rows "
            f"({n_rows}); got first={off[0]}, last={off[-1]}"
        )
    return off


def check_family_factory(obj: Any) -> None:
    """What the plugin registry accepts as a basis family: a BasisFamily subclass implementing
    ``design``, or a factory returning one (raises TypeError naming the problem)."""
    if isinstance(obj, type):
        if not issubclass(obj, BasisFamily):
            raise TypeError(
                f"the class {obj.__module__}.{obj.__qualname__} is not a subclass of metafast.basis.BasisFamily"
            )
        if obj.design is BasisFamily.design:
            raise TypeError(f"{obj.__qualname__} does not implement design(X)")
    elif isinstance(obj, BasisFamily):
        raise TypeError(
            f"got an instance of {type(obj).__qualname__}; register the class (or a factory) "
            "so that make() can build a new family with the user's parameters"
        )
    elif not callable(obj):
        raise TypeError(f"got a {type(obj).__name__}, neither a BasisFamily subclass nor a factory")
