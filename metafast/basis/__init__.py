"""Basis-function families: the base class and the registry of built-in and plugin families."""

from __future__ import annotations

from metafast.basis._base import BasisFamily, check_family_factory
from metafast.basis.sklearn_wrapper import SklearnBasis, as_basis
from metafast.basis.subset import ColumnSubset, restrict
from metafast.basis.union import Union, union
from metafast.plugins import basis_registry, set_validator

set_validator("basis family", check_family_factory)


def available() -> list[str]:
    """Sorted names of every registered basis family (built-in and plugins)."""
    return basis_registry().names()


def make(name: str, **params) -> BasisFamily:
    """A new, unfitted basis family by registry name, e.g. ``make("rbf", n_basis=40)``.

    An unknown name raises an error listing close matches; parameters the family does not
    accept raise a TypeError listing the ones it does; the family's own checks run as usual.
    """
    registry = basis_registry()
    family = registry.call(name, **params)
    if not isinstance(family, BasisFamily):
        raise TypeError(
            f"{registry.describe(name)} returned a {type(family).__name__}, not a "
            "metafast.basis.BasisFamily: a bug in that plugin"
        )
    return family


__all__ = ["BasisFamily", "ColumnSubset", "SklearnBasis", "Union", "as_basis", "available", "make", "restrict", "union"]
