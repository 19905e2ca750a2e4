"""scikit-learn transformers as basis families.

``SklearnBasis(transformer)`` turns anything with ``fit``/``transform`` (SplineTransformer,
PolynomialFeatures, Nystroem, a Pipeline of them, ...) into a BasisFamily: ``design`` is the
transformer's output (float64 computed, cast to X's dtype), and the weighted sums come from the
base class (blocked over rows).  Learners wrap a transformer passed as ``basis`` themselves
(:func:`as_basis`), so users rarely build one by hand.

A Pipeline whose last step is a metafast family keeps that family's compiled kernels: the earlier
steps run first, then the family's fused ``weighted_sum`` / ``weighted_sum_tasks`` / ``design_vjp``
on their output.  Its learnable parameters are the last step's, named ``"<step>__<param>"``;
they are learnable only when no earlier step has learnable parameters of its own (gradients do
not flow back through a transformer).

Each step's output is checked: the row count must not change, NaN/inf is an error naming the
step, row and column, and a sparse result is densified (with a warning above
``SPARSE_WARN_BYTES``).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from metafast._validation import check_X
from metafast.basis._base import ROW_BLOCK, BasisFamily

#: a sparse transformer output is densified; above this many bytes (64 MiB) with a warning
SPARSE_WARN_BYTES = 64 * 2**20
#: design entries per block of the generic weighted sums (32 MiB of float64)
BLOCK_ELEMENTS = 2**22


class SparseDensifiedWarning(UserWarning):
    """A transformer returned a large sparse matrix that was converted to a dense one."""


def is_transformer(obj: Any) -> bool:
    """True for an object with callable ``fit`` and ``transform`` (a scikit-learn transformer)."""
    return callable(getattr(obj, "fit", None)) and callable(getattr(obj, "transform", None))


def _is_fitted(transformer: Any) -> bool:
    try:
        check_is_fitted(transformer)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator in sklearn's sense: treat as unfitted and fit it
        return False
    return True


def as_basis(obj: Any, X: Any = None, name: str = "basis") -> BasisFamily:
    """``obj`` as a BasisFamily: a family is returned as is, a transformer is wrapped.

    A fitted transformer is used as it is (never refitted); its output width is read from a
    transform of ``X`` (a few rows of the training inputs), so pass X for it.  An unfitted one
    gives an unfitted SklearnBasis that the learner fits on the training rows.
    """
    if isinstance(obj, BasisFamily):
        return obj
    if not is_transformer(obj):
        raise TypeError(
            f"parameter {name!r} must be a metafast BasisFamily, a family name or a scikit-learn "
            f"transformer (an object with fit and transform); got {type(obj).__name__}"
        )
    wrapped = SklearnBasis(obj)
    if _is_fitted(obj):
        wrapped._adopt(obj, X)
    return wrapped


class SklearnBasis(BasisFamily):
    """A scikit-learn transformer used as a basis family (see the module docstring).

    Parameters
    ----------
    transformer : estimator with fit and transform
        Cloned and fitted by ``fit`` (the object passed is never modified).  A learner given a
        transformer as ``basis`` fits it on every input row (support and query) of the training
        tasks, like the built-in families (``BasisFamily.fit_tasks``); an already fitted
        transformer passed to a learner is used as it is.

    Attributes
    ----------
    transformer_ : the fitted transformer.    n_basis : int, its number of output columns.
    """

    #: n_basis is the transformer's output width, known only once fitted (see metafast.testing)
    _n_basis_from_fit = True

    def __init__(self, transformer: Any = None):
        self.transformer = transformer

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Fit a clone of ``transformer`` on X (rows of the training tasks); returns self."""
        if not is_transformer(self.transformer):
            raise TypeError(
                "parameter 'transformer' must be a scikit-learn transformer (with fit and "
                f"transform); got {type(self.transformer).__name__}"
            )
        X64 = np.asarray(X, dtype=np.float64)
        self._adopt(clone(self.transformer).fit(X64), X64)
        return self

    def _adopt(self, fitted: Any, X: Any) -> None:
        """Take ``fitted`` as transformer_, learn the output width from a transform of X's first rows."""
        self.transformer_ = fitted
        n_in = getattr(fitted, "n_features_in_", None)
        if X is None:
            raise ValueError(
                f"the fitted transformer {type(fitted).__name__} needs example rows X to find its "
                "output width: as_basis(transformer, X) (learners pass the training rows)"
            )
        probe = check_X(X, "X", n_features=n_in, estimator=type(fitted).__name__, min_samples=1)
        Z = self._transform(np.asarray(probe[:ROW_BLOCK], dtype=np.float64))
        if Z.shape[1] < 1:
            raise ValueError(f"the transformer {type(fitted).__name__} returned no columns")
        self.n_basis_ = int(Z.shape[1])
        self.n_features_in_ = probe.shape[1]
        self._mf_fitted = True

    @property
    def n_basis(self) -> int:
        """Number of output columns of the fitted transformer."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: n_basis is the "
                "transformer's output width, known after fit"
            )
        return self.n_basis_

    # ------------------------------------------------------------------ the steps
    def _steps(self) -> list[tuple[str, Any]]:
        """(label for messages, fitted transformer) in the order they run."""
        t = self.transformer_
        if isinstance(t, Pipeline):
            return [
                (f"step {name!r} ({type(s).__name__}) of the Pipeline", s)
                for name, s in t.steps
                if s is not None and not (isinstance(s, str) and s == "passthrough")
            ]
        return [(type(t).__name__, t)]

    def _fused_last(self) -> tuple[str, BasisFamily] | None:
        """(step name, family) when the transformer is a Pipeline ending in a metafast family."""
        t = self.transformer_
        if isinstance(t, Pipeline) and isinstance(t.steps[-1][1], BasisFamily):
            return t.steps[-1][0], t.steps[-1][1]
        return None

    def _transform(self, X: np.ndarray, upto: int | None = None) -> np.ndarray:
        """Run the steps (all, or the first ``upto``) on float64 X, checking each output."""
        Z = X
        for label, step in self._steps()[:upto]:
            Z = _checked_output(step.transform(Z), label, X.shape[0])
        return Z

    def _head(self, Xc: np.ndarray) -> np.ndarray:
        """Output of every step but the last (the metafast family), in X's dtype."""
        Z = self._transform(np.asarray(Xc, dtype=np.float64), upto=-1)
        return np.ascontiguousarray(Z, dtype=Xc.dtype)

    # ------------------------------------------------------------------ BasisFamily API
    def design(self, X) -> np.ndarray:
        """The transformer's output on X, (n, n_basis)."""
        if X.shape[0] == 0:
            return np.empty((0, self.n_basis), dtype=X.dtype)
        return self._transform(np.asarray(X, dtype=np.float64))

    def _design_blocks(self, Xc: np.ndarray):
        """As the base class, in blocks of about ``BLOCK_ELEMENTS`` design entries: a transformer
        has a per-call cost (its own input checks) that 1,024-row blocks would pay many times."""
        step = max(ROW_BLOCK, BLOCK_ELEMENTS // self.n_basis)
        for start in range(0, Xc.shape[0], step):
            Phi = self._transform(np.asarray(Xc[start : start + step], dtype=np.float64))
            yield start, np.ascontiguousarray(Phi, dtype=Xc.dtype)

    def weighted_sum(self, X, w) -> np.ndarray:
        fused = self._fused_last()
        if fused is None:
            return super().weighted_sum(X, w)
        Xc = self._check_input(X)
        return fused[1].weighted_sum(self._head(Xc), w)

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        fused = self._fused_last()
        if fused is None:
            return super().weighted_sum_tasks(X, offsets, W)
        Xc = self._check_input(X)
        return fused[1].weighted_sum_tasks(self._head(Xc), offsets, W)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        try:
            names = np.asarray(self.transformer_.get_feature_names_out(), dtype=object)
        except Exception:  # many transformers cannot name their outputs: fall back to numbers
            return super().get_feature_names_out(input_features)
        return names if names.shape == (self.n_basis,) else super().get_feature_names_out(input_features)

    # ------------------------------------------------------------------ learnable parameters
    def not_learnable_reason(self) -> str | None:
        """Why this basis has no learnable parameters (None when it has some)."""
        fused = self._fused_last()
        if fused is None:
            label = self._steps()[-1][0] if self._steps() else type(self.transformer_).__name__
            return (
                f"the last {label} is not a metafast BasisFamily, so nothing in it can be "
                "learned (design_vjp needs a metafast family as the Pipeline's last step)"
            )
        for label, step in self._steps()[:-1]:
            if isinstance(step, BasisFamily) and step.learnable_params():
                return (
                    f"{label} has learnable parameters, but gradients cannot flow back to it "
                    "through the later steps: only a Pipeline's last step can be learned"
                )
        if not fused[1].learnable_params():
            return f"the last {self._steps()[-1][0]} has no learnable parameters"
        return None

    def learnable_params(self) -> dict[str, np.ndarray]:
        """The last step's learnable parameters as ``"<step>__<name>"`` (Pipelines ending in a
        metafast family with nothing learnable before it); otherwise none."""
        if self.not_learnable_reason() is not None:
            return {}
        name, last = self._fused_last()
        return {f"{name}__{k}": v for k, v in last.learnable_params().items()}

    def with_params(self, **params: np.ndarray) -> SklearnBasis:
        self._check_param_names(params)
        new = copy.deepcopy(self)
        if params:
            name, last = new._fused_last()
            prefix = f"{name}__"
            steps = new.transformer_.steps
            steps[-1] = (name, last.with_params(**{k[len(prefix) :]: v for k, v in params.items()}))
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        reason = self.not_learnable_reason()
        if reason is not None:
            raise ValueError(f"design_vjp is not available for this {type(self).__name__}: {reason}")
        Xc = self._check_input(X)
        name, last = self._fused_last()
        grads = last.design_vjp(self._head(Xc), G)
        return {f"{name}__{k}": v for k, v in grads.items()}


def _checked_output(Z: Any, label: str, n_rows: int) -> np.ndarray:
    """A step's output as a finite 2-D float64 array with n_rows rows, or a clear error."""
    if sp.issparse(Z):
        nbytes = Z.shape[0] * Z.shape[1] * 8
        if nbytes > SPARSE_WARN_BYTES:
            warnings.warn(
                f"{label} returned a sparse {Z.shape[0]}x{Z.shape[1]} matrix; it is densified "
                f"({nbytes / 2**20:.0f} MiB) because basis families are dense. Prefer a dense "
                "output (e.g. sparse_output=False) or fewer rows per call",
                SparseDensifiedWarning,
                stacklevel=4,
            )
        Z = Z.toarray()
    try:
        Z = np.asarray(Z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{label} returned output that is not numeric: {exc}") from None
    if Z.ndim != 2:
        raise ValueError(f"{label} returned an array of shape {Z.shape}; a basis needs 2-D (n_samples, n_basis)")
    if Z.shape[0] != n_rows:
        raise ValueError(
            f"{label} changed the number of rows: {n_rows} rows in, {Z.shape[0]} out; a basis "
            "transformer must map each row of X to one row of features"
        )
    if not np.isfinite(Z).all():
        row, col = np.argwhere(~np.isfinite(Z))[0]
        raise ValueError(
            f"{label} returned NaN or inf (first at row {row}, column {col}); check that X lies "
            "in the domain the transformer was fitted on (e.g. extrapolation, log of negatives)"
        )
    return Z
