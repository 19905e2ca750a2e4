"""Basis-function families: the base class and the registry of built-in and plugin families."""

from __future__ import annotations

from metafast.basis._base import BasisFamily


def available() -> list[str]:
    """Sorted names of every registered basis family (built-in and plugins)."""
    from metafast.plugins import basis_registry

    return basis_registry().names()


def make(name: str, **params) -> BasisFamily:
    """A new, unfitted basis family by registry name, e.g. ``make("rbf", n_basis=40)``."""
    from metafast.plugins import basis_registry

    family = basis_registry().get(name)(**params)
    if not isinstance(family, BasisFamily):
        raise TypeError(f"basis family {name!r} produced {type(family).__name__}, not a BasisFamily")
    return family


__all__ = ["BasisFamily", "available", "make"]
