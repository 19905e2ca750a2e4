"""A basis family restricted to some of its columns, restricted inside the family where possible.

``restrict(B, columns)`` is a BasisFamily whose column i is column ``columns[i]`` of the fitted
family B.  It is what ``BasisSelector.selected_basis_`` returns, and every learner uses it like
any family.  Speed comes from restricting the family itself (``native_``), so that its kernels
only evaluate what is kept:

- RBF: only the kept centres (and their length scales);
- Fourier (additive or 1-D): only the kept frequencies, consecutive ones kept as recurrence runs;
- Polynomial: the graded prefix up to the last kept column (recurrences need the lower degrees);
- RandomReLU: only the kept directions and kinks;
- Union: each part restricted by its own rule, parts with no kept column dropped.

``local_`` then picks the kept columns among the native family's columns (None when they are
exactly its columns).  ``weighted_sum`` and ``weighted_sum_tasks`` never gather: the weights are
scattered into the native columns (zeros elsewhere) and the native fused kernel runs;
``design`` gathers only the few extra native columns (a Fourier pair whose sine alone was kept,
the polynomial prefix).  Other families (BSpline, RFF, Fourier lattice, plugins) are not
restricted natively: the full family is evaluated and the columns gathered, so they cost as
much as the whole family.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
from sklearn.base import clone

from metafast.basis._base import BasisFamily
from metafast.basis._fused import cotangent, task_weights, weight_matrix


def _check_columns(columns: Any, m: int) -> np.ndarray:
    try:
        cols = np.asarray(columns)
    except (TypeError, ValueError):
        cols = np.asarray([None])
    if cols.ndim != 1 or cols.size == 0 or cols.dtype.kind not in "iu":
        raise ValueError(f"parameter 'columns' must be a non-empty 1-D array of column indices; got {columns!r}")
    if cols.min() < 0 or cols.max() >= m:
        raise ValueError(
            f"parameter 'columns' holds indices outside [0, {m}) (the family has "
            f"{m} columns): min {cols.min()}, max {cols.max()}"
        )
    if np.unique(cols).size != cols.size:
        raise ValueError("parameter 'columns' repeats a column")
    return cols.astype(np.int64)


def _identity_or(local: np.ndarray, m_native: int) -> np.ndarray | None:
    if local.size == m_native and np.array_equal(local, np.arange(m_native)):
        return None
    return np.ascontiguousarray(local, dtype=np.int64)


# ---------------------------------------------------------------------- native restrictions
@functools.singledispatch
def native_restriction(family: BasisFamily, cols: np.ndarray) -> tuple[BasisFamily, np.ndarray | None]:
    """(native family, local columns) for ``family`` restricted to ``cols`` (module docstring).

    Default: no native restriction, the whole family with a gather of ``cols``.
    """
    return family, _identity_or(cols, family.n_basis)


def _register_builtins() -> None:
    from metafast.basis.fourier import Fourier
    from metafast.basis.polynomial import Polynomial, _column_structure
    from metafast.basis.random_features import RandomReLU
    from metafast.basis.rbf import RBF
    from metafast.basis.union import Union, union

    @native_restriction.register(RBF)
    def _(family, cols):
        new = copy.deepcopy(family)
        new.n_basis = int(cols.size)
        new.centers_ = family.centers_[cols].copy()
        new.centers = new.centers_.copy()
        if family.per_center:
            new.length_scale_ = np.asarray(family.length_scale_)[cols].copy()
        return new, None

    @native_restriction.register(RandomReLU)
    def _(family, cols):
        new = copy.deepcopy(family)
        new.n_basis = int(cols.size)
        new.directions_ = family.directions_[cols].copy()
        new.offsets_ = family.offsets_[cols].copy()
        return new, None

    @native_restriction.register(Polynomial)
    def _(family, cols):
        k = int(cols.max()) + 1
        new = copy.deepcopy(family)
        new.n_basis = k
        new.multi_indices_ = family.multi_indices_[:k].copy()
        new.degree_ = int(new.multi_indices_.sum(axis=1).max())
        new._structure = _column_structure(new.multi_indices_)
        return new, _identity_or(cols, k)

    @native_restriction.register(Fourier)
    def _(family, cols):
        if family.lattice_vectors_ is not None:
            return family, _identity_or(cols, family.n_basis)
        return _fourier_restriction(family, cols)

    @native_restriction.register(Union)
    def _(family, cols):
        natives, where = [], np.empty(cols.size, dtype=np.int64)
        start = 0
        for i, part in enumerate(family.parts_):
            lo, hi = int(family.part_offsets_[i]), int(family.part_offsets_[i + 1])
            picked = np.flatnonzero((cols >= lo) & (cols < hi))
            if picked.size == 0:
                continue
            native, local = native_restriction(part, cols[picked] - lo)
            where[picked] = start + (np.arange(picked.size) if local is None else local)
            natives.append(native)
            start += native.n_basis
        if len(natives) == 1:
            return natives[0], _identity_or(where, start)
        return union(natives), _identity_or(where, start)


def _fourier_restriction(family, cols: np.ndarray):
    """Fourier with only the kept frequencies: runs of consecutive kept frequencies."""
    c = 1 if family.include_constant else 0
    keep_const = c == 1 and bool(np.any(cols == 0))
    new_c = 1 if keep_const else 0
    runs, new_col_of = [], {}
    col = new_c
    for q in range(len(family.run_len_)):
        first, nc = int(family.run_col_[q]), int(family.run_ncols_[q])
        inside = cols[(cols >= first) & (cols < first + nc)]
        ks = np.unique((inside - first) // 2)
        if ks.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(ks) > 1) + 1
        for block in np.split(ks, breaks):
            k0, length = int(block[0]), int(block.size)
            last_lone = nc % 2 == 1 and int(block[-1]) == (nc - 1) // 2
            ncols = 2 * length - (1 if last_lone else 0)
            f0 = family.run_f0_[q] + k0 * family.run_df_[q]
            runs.append((int(family.run_dim_[q]), float(f0), float(family.run_df_[q]), length, ncols))
            for j in range(ncols):
                new_col_of[first + 2 * k0 + j] = col + j
            col += ncols
    new = copy.deepcopy(family)
    new.include_constant = bool(keep_const)
    new.n_basis = col
    new._set_runs(runs, new_c)
    if keep_const:
        new_col_of[0] = 0
    local = np.array([new_col_of[int(j)] for j in cols], dtype=np.int64)
    return new, _identity_or(local, col)


_register_builtins()


# ---------------------------------------------------------------------- the family
class ColumnSubset(BasisFamily):
    """``basis`` restricted to ``columns`` (see the module docstring for how it stays fast).

    Parameters
    ----------
    basis : BasisFamily
        The full family.  ``fit`` fits a clone of it and restricts that; ``restrict(B, cols)``
        makes a fitted subset of an already fitted B.
    columns : 1-D int array
        Columns of ``basis`` to keep, in the order they will appear (unique).
    """

    def __init__(self, basis: BasisFamily | None = None, columns: Any = (0,)):
        self.basis = basis
        self.columns = columns

    @property
    def n_basis(self) -> int:
        return int(np.asarray(self.columns).size)

    def fit(self, X, y=None):
        self._set_base(clone(self._check_basis()).fit(X))
        return self

    def fit_tasks(self, tasks) -> ColumnSubset:
        self._set_base(clone(self._check_basis()).fit_tasks(tasks))
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def _check_basis(self) -> BasisFamily:
        if not isinstance(self.basis, BasisFamily):
            raise TypeError(f"parameter 'basis' must be a metafast BasisFamily; got {type(self.basis).__name__}")
        return self.basis

    def _set_base(self, base: BasisFamily) -> None:
        cols = _check_columns(self.columns, base.n_basis)
        self.base_ = base
        self.native_, self.local_ = native_restriction(base, cols)
        if getattr(base, "n_features_in_", None) is not None:
            self.n_features_in_ = base.n_features_in_

    @property
    def natively_restricted_(self) -> bool:
        """True when the kernels evaluate fewer columns than the whole family."""
        return self.native_.n_basis < self.base_.n_basis

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.base_.get_feature_names_out(), dtype=object)[np.asarray(self.columns)]

    # ------------------------------------------------------------------ evaluation
    def design(self, X) -> np.ndarray:
        Phi = self.native_.design(X)
        return Phi if self.local_ is None else Phi[:, self.local_]

    def _scatter(self, W: np.ndarray, axis: int) -> np.ndarray:
        """W with its kept columns placed among the native columns (zeros elsewhere)."""
        if self.local_ is None:
            return W
        shape = list(W.shape)
        shape[axis] = self.native_.n_basis
        out = np.zeros(shape, dtype=W.dtype)
        if axis == 0:
            out[self.local_] = W
        else:
            out[:, self.local_] = W
        return out

    def weighted_sum(self, X, w) -> np.ndarray:
        Xc = self._check_input(X)
        W, flat = weight_matrix(w, self.n_basis, Xc.dtype)
        out = self.native_.weighted_sum(Xc, self._scatter(W, 0))
        return out[:, 0] if flat else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        Xc = self._check_input(X)
        off, Wc = task_weights(W, offsets, Xc.shape[0], self.n_basis, Xc.dtype)
        return self.native_.weighted_sum_tasks(Xc, off, self._scatter(Wc, 1))

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """The native (restricted) family's learnable parameters."""
        return self.native_.learnable_params() if self.__sklearn_is_fitted__() else {}

    def with_params(self, **params: np.ndarray) -> ColumnSubset:
        self._check_param_names(params)
        new = copy.copy(self)
        new.native_ = self.native_.with_params(**params)
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        Xc = self._check_input(X)
        Gc = cotangent(G, Xc.shape[0], self.n_basis, Xc.dtype)
        if not self.learnable_params():
            return {}
        return self.native_.design_vjp(Xc, self._scatter(Gc, 1))


def restrict(basis: BasisFamily, columns: Any) -> ColumnSubset:
    """A fitted ColumnSubset of the fitted family ``basis`` (a copy of it is kept)."""
    if not isinstance(basis, BasisFamily):
        raise TypeError(f"argument 'basis' must be a metafast BasisFamily; got {type(basis).__name__}")
    basis._check_input(np.zeros((0, getattr(basis, "n_features_in_", 1))))  # fitted?
    sub = ColumnSubset(copy.deepcopy(basis), np.asarray(columns))
    sub._set_base(copy.deepcopy(basis))
    sub._mf_fitted = True
    return sub
