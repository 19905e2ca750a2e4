"""The plugin contract: pluggy hook specifications of the ``metafast`` entry-point group.

A plugin is a module named by an entry point in the group ``metafast``::

    # pyproject.toml of the plugin's distribution
    [project.entry-points.metafast]
    wavelets = "metafast_wavelets"

holding functions decorated with :data:`metafast.hookimpl` whose names are hook names below.
Each hook receives a ``register`` callable (the pattern of tox and llm) and calls it once per
thing it provides.  The built-in families and loaders register through these same hooks.

Rules every registration is checked against (a plugin breaking one is reported and skipped as a
whole; see ``metafast.plugins``):

- names are non-empty strings of letters, digits, ``-``, ``_`` and ``.``, not yet taken;
- a basis family is a ``metafast.basis.BasisFamily`` subclass that implements ``design``, or a
  factory (any other callable) whose result is checked to be a BasisFamily at ``make`` time;
- a task loader or benchmark suite is a callable;
- a model type is a class of the plugin's own code (not of the standard library, numpy, scipy
  or scikit-learn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT = "metafast"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for hook implementations: ``@metafast.hookimpl def metafast_basis_families(register)``."""


class Register(Protocol):
    """The callable a hook receives: ``register(name, obj)``."""

    def __call__(self, name: str, obj: Callable[..., Any]) -> None: ...


@hookspec
def metafast_basis_families(register: Register) -> None:
    """Register basis-function families: call ``register(name, family)`` once per family.

    ``family`` is a ``metafast.basis.BasisFamily`` subclass (recommended: implement ``fit`` and
    ``design``; the base class supplies validation, ``transform`` and the weighted sums), or a
    factory ``family(**params)`` returning a BasisFamily instance.
    ``metafast.basis.make(name, **params)`` calls it with the user's keyword parameters; every
    family accepts ``n_basis`` and its ``design`` returns exactly ``n_basis`` columns.

    .. versionadded:: 0.1
    """


@hookspec
def metafast_task_loaders(register: Register) -> None:
    """Register task loaders: call ``register(name, loader)`` once per loader.

    ``metafast.tasks.load(name, **params)`` calls ``loader(**params)``; by convention a loader
    accepts ``n_tasks``, ``n_support``, ``n_query`` and ``seed`` where they make sense and
    returns a ``metafast.tasks.TaskSet`` (or an iterator of TaskSet chunks when it streams).
    Bad parameters or bad data raise ValueError/TypeError naming the argument and the problem.

    .. versionadded:: 0.1
    """


@hookspec
def metafast_benchmark_suites(register: Register) -> None:
    """Register benchmark suites for ``metafast bench``: call ``register(name, suite)``.

    ``suite(quick=False, **options)`` must return a ``metafast.bench.Suite`` (a list of cases:
    task family, shots, learner, with fixed seeds); ``quick=True`` asks for a CI-sized run.

    .. versionadded:: 0.1
    """


@hookspec
def metafast_model_types(register: Register) -> None:
    """Declare classes that model files may rebuild: call ``register(name, cls)`` once per class.

    ``metafast.model_file`` stores objects as a JSON description plus arrays and rebuilds only
    classes on this allow-list (as pickle would, but from the decoded state: ``cls.__new__`` then
    ``__setstate__`` or an update of ``__dict__``; no constructor runs).  A plugin registers its
    basis families and any helper class their fitted state holds, under ``module.qualname``::

        register("metafast_wavelets.Morlet", Morlet)

    Declare only classes whose ``__setstate__`` (if any) and methods are safe with any state a
    file may hold.  A family that is not declared can still be saved; loading it then needs
    ``trusted=True`` (``metafast predict --trust-model``).

    .. versionadded:: 0.5
    """


HOOK_KINDS = {
    "metafast_basis_families": "basis family",
    "metafast_task_loaders": "task loader",
    "metafast_benchmark_suites": "benchmark suite",
    "metafast_model_types": "model type",
}
"""Each hook and the kind of thing its ``register`` callable registers."""
