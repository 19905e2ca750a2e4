"""A dictionary made of several basis families: the columns of its parts, side by side.

``union([Polynomial(8), Fourier(frequencies=...), RBF(40)])`` is one BasisFamily whose design
matrix is ``[Phi_1(X), Phi_2(X), ...]``.  Every evaluation goes to each part's own code (its
fused Cython kernels for built-in families): ``design`` stacks the parts' designs,
``weighted_sum`` and ``weighted_sum_tasks`` add the parts' fused sums over their slices of the
weights, and ``design_vjp`` hands each part its slice of the cotangent.  Learnable parameters
are the parts', prefixed with the part's name (``"rbf__centers"``).

Parts are named after their class (lower case), with ``_1``, ``_2`` ... for repeats;
``part_of(j)`` says which part and which of its columns column j is.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import clone

from metafast.basis._base import BasisFamily
from metafast.basis._fused import cotangent, task_weights, weight_matrix


class ColumnOrigin(NamedTuple):
    """Where a column of a Union comes from."""

    part: int  # index of the part in ``parts``
    name: str  # the part's name (feature-name prefix)
    column: int  # column index inside that part


def _part_names(parts: Sequence[BasisFamily]) -> list[str]:
    names, seen = [], {}
    for p in parts:
        base = type(p).__name__.lower()
        k = seen.get(base, 0)
        seen[base] = k + 1
        names.append(base if k == 0 else f"{base}_{k}")
    return names


def _check_parts(parts: Any) -> list[BasisFamily]:
    """The parts as a list of BasisFamily with n_basis >= 1, or a clear error."""
    if isinstance(parts, BasisFamily) or not hasattr(parts, "__iter__"):
        raise TypeError(f"parameter 'parts' must be a list of BasisFamily objects; got {type(parts).__name__}")
    parts = list(parts)
    if not parts:
        raise ValueError("parameter 'parts' is empty: a union needs at least one basis family")
    for i, p in enumerate(parts):
        if not isinstance(p, BasisFamily):
            raise TypeError(f"parameter 'parts' item {i} is a {type(p).__name__}, not a metafast BasisFamily")
        m = getattr(p, "n_basis", None)
        if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
            raise ValueError(
                f"parameter 'parts' item {i} ({type(p).__name__}) has n_basis={m!r}; every part "
                "needs n_basis >= 1 (drop the part instead)"
            )
    return parts


class Union(BasisFamily):
    """The columns of several basis families side by side (see the module docstring).

    Parameters
    ----------
    parts : list of BasisFamily
        The families, in column order.  ``fit`` fits a clone of each (kept in ``parts_``); if
        every part is already fitted, ``union(parts)`` makes a fitted Union directly.

    Nested parameters are reached as ``part<i>__<name>`` (``get_params(deep=True)``,
    ``set_params(part1__n_basis=30)``), and ``clone`` clones every part.
    """

    def __init__(self, parts: Sequence[BasisFamily] = ()):
        self.parts = parts

    # ------------------------------------------------------------------ params
    def get_params(self, deep: bool = True) -> dict:
        out = {"parts": self.parts}
        if deep and isinstance(self.parts, (list, tuple)):
            for i, p in enumerate(self.parts):
                if isinstance(p, BasisFamily):
                    out[f"part{i}"] = p
                    for key, value in p.get_params(deep=True).items():
                        out[f"part{i}__{key}"] = value
        return out

    def set_params(self, **params) -> Union:
        if "parts" in params:
            self.parts = params.pop("parts")
        nested: dict[int, dict] = {}
        for key, value in params.items():
            head, _, rest = key.partition("__")
            index = head[4:] if head.startswith("part") else ""
            if not index.isdigit() or int(index) >= len(self.parts):
                raise ValueError(
                    f"invalid parameter {key!r} for Union with {len(self.parts)} part(s): use "
                    "'parts', 'part<i>' or 'part<i>__<name>'"
                )
            i = int(index)
            if rest:
                nested.setdefault(i, {})[rest] = value
            else:
                self.parts = list(self.parts)
                self.parts[i] = value
        for i, kw in nested.items():
            self.parts[i].set_params(**kw)
        return self

    # ------------------------------------------------------------------ fit
    @property
    def n_basis(self) -> int:
        parts = getattr(self, "parts_", None) or _check_parts(self.parts)
        return int(sum(p.n_basis for p in parts))

    def fit(self, X, y=None):
        """Fit a clone of every part on X; all parts then see the same features."""
        parts = [clone(p) for p in _check_parts(self.parts)]
        for p in parts:
            p.fit(X)
        self._set_fitted_parts(parts)
        return self

    def fit_tasks(self, tasks) -> Union:
        """Fit a clone of every part with its own ``fit_tasks`` (task-aware parts get tasks)."""
        parts = [clone(p).fit_tasks(tasks) for p in _check_parts(self.parts)]
        self._set_fitted_parts(parts)
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def _set_fitted_parts(self, parts: list[BasisFamily]) -> None:
        d = None
        for i, p in enumerate(parts):
            n_in = getattr(p, "n_features_in_", None)
            if d is not None and n_in is not None and n_in != d:
                raise ValueError(
                    f"parameter 'parts' item {i} ({type(p).__name__}) was fitted on {n_in} "
                    f"feature(s) but item 0 on {d}: every part must see the same inputs"
                )
            d = n_in if d is None else d
            if p.n_basis < 1:
                raise ValueError(
                    f"parameter 'parts' item {i} ({type(p).__name__}) has "
                    f"n_basis={p.n_basis} after fitting; every part needs >= 1"
                )
        self.parts_ = parts
        self.part_names_ = _part_names(parts)
        sizes = np.array([p.n_basis for p in parts], dtype=np.int64)
        self.part_offsets_ = np.concatenate([[0], np.cumsum(sizes)])
        if d is not None:
            self.n_features_in_ = d

    # ------------------------------------------------------------------ description
    def part_of(self, column: int) -> ColumnOrigin:
        """(part index, part name, column inside the part) of a column of the union."""
        self._check_input(np.zeros((0, self.n_features_in_)))
        m = self.n_basis
        j = int(column)
        if j != column or not -m <= j < m:
            raise IndexError(f"argument 'column'={column!r} is not a column index of a union with {m} columns")
        j %= m
        i = int(np.searchsorted(self.part_offsets_, j, side="right") - 1)
        return ColumnOrigin(i, self.part_names_[i], j - int(self.part_offsets_[i]))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``<part name>__<part's own feature name>`` for every column."""
        self._check_input(np.zeros((0, self.n_features_in_)))
        names = [f"{name}__{f}" for name, p in zip(self.part_names_, self.parts_) for f in p.get_feature_names_out()]
        return np.asarray(names, dtype=object)

    @property
    def feature_names_out(self) -> np.ndarray:
        return self.get_feature_names_out()

    def _slices(self):
        for i, p in enumerate(self.parts_):
            yield p, slice(int(self.part_offsets_[i]), int(self.part_offsets_[i + 1]))

    # ------------------------------------------------------------------ evaluation
    def design(self, X) -> np.ndarray:
        """[Phi_1(X), Phi_2(X), ...], each part by its own kernels."""
        return np.concatenate([p.design(X) for p in self.parts_], axis=1)

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum over parts of the part's fused sum with its slice of w ((m,) or (m, k))."""
        Xc = self._check_input(X)
        W, flat = weight_matrix(w, self.n_basis, Xc.dtype)
        out = np.zeros((Xc.shape[0], W.shape[1]), dtype=Xc.dtype)
        for p, sl in self._slices():
            out += p.weighted_sum(Xc, W[sl])
        return out[:, 0] if flat else out

    def weighted_sum_tasks(self, X, offsets, W) -> np.ndarray:
        """Per-task sums: each part's fused per-task kernel on its columns of W (T, m)."""
        Xc = self._check_input(X)
        off, W = task_weights(W, offsets, Xc.shape[0], self.n_basis, Xc.dtype)
        out = np.zeros(Xc.shape[0], dtype=Xc.dtype)
        for p, sl in self._slices():
            out += p.weighted_sum_tasks(Xc, off, np.ascontiguousarray(W[:, sl]))
        return out

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """Every part's learnable parameters, keyed ``<part name>__<parameter>``."""
        if not self.__sklearn_is_fitted__():
            return {}
        return {
            f"{name}__{key}": value
            for name, p in zip(self.part_names_, self.parts_)
            for key, value in p.learnable_params().items()
        }

    def with_params(self, **params: np.ndarray) -> Union:
        """A fitted copy with some parts' parameters replaced (keys as in learnable_params)."""
        self._check_param_names(params)
        per_part: dict[int, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            per_part.setdefault(self.part_names_.index(name), {})[sub] = value
        new = copy.copy(self)
        new.parts_ = [p.with_params(**per_part[i]) if i in per_part else p for i, p in enumerate(self.parts_)]
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Each part's gradient from its slice of G, keyed like learnable_params."""
        Xc = self._check_input(X)
        Gc = cotangent(G, Xc.shape[0], self.n_basis, Xc.dtype)
        out = {}
        for (p, sl), name in zip(self._slices(), self.part_names_):
            if p.learnable_params():
                grads = p.design_vjp(Xc, np.ascontiguousarray(Gc[:, sl]))
                out.update({f"{name}__{k}": v for k, v in grads.items()})
        return out


def union(parts: Sequence[BasisFamily]) -> Union:
    """A Union of ``parts``; already fitted (on copies of the parts) when every part is fitted."""
    u = Union(list(_check_parts(parts)))
    fitted = [p.__sklearn_is_fitted__() for p in u.parts]
    if all(fitted):
        u._set_fitted_parts([copy.deepcopy(p) for p in u.parts])
        u._mf_fitted = True
    return u
