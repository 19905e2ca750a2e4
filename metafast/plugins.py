"""Plugin manager and registries (minimal version: built-ins and entry points)."""

from __future__ import annotations

import difflib
from typing import Callable

import pluggy

from metafast import hookspecs

GROUP = "metafast"
DEFAULT_PLUGINS = ("metafast.basis._builtins", "metafast.tasks._builtins")


class Registry:
    """name -> class or factory, filled by a hook's ``register`` callback."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable] = {}

    def register(self, name: str, obj: Callable) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings; got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not callable(obj):
            raise TypeError(f"{self.kind} {name!r} must be a class or callable; got {obj!r}")
        self._items[name] = obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable:
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self._items, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
            )
        return self._items[name]


_state: dict = {}


def _load() -> dict:
    if _state:
        return _state
    import importlib

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for modname in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    pm.load_setuptools_entrypoints(GROUP)
    basis, loaders = Registry("basis family"), Registry("task loader")
    pm.hook.metafast_basis_families(register=basis.register)
    pm.hook.metafast_task_loaders(register=loaders.register)
    _state.update(pm=pm, basis=basis, loaders=loaders)
    return _state


def basis_registry() -> Registry:
    return _load()["basis"]


def loader_registry() -> Registry:
    return _load()["loaders"]
