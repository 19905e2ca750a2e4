"""The plugin contract: pluggy hook specifications of the ``metafast`` entry-point group.

A plugin is a module (named by an entry point in the group ``metafast``) holding functions
decorated with ``metafast.hookimpl`` whose names are the hook names below.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("metafast")
hookimpl = pluggy.HookimplMarker("metafast")


@hookspec
def metafast_basis_families(register: Callable[[str, Callable], None]) -> None:
    """Register basis families: call ``register(name, cls_or_factory)`` once per family.

    ``cls_or_factory(**params)`` must return a ``metafast.basis.BasisFamily``.
    """


@hookspec
def metafast_task_loaders(register: Callable[[str, Callable], None]) -> None:
    """Register task loaders: call ``register(name, loader)`` once per loader.

    ``loader(n_tasks=..., n_support=..., n_query=..., seed=..., **params)`` must return a
    ``metafast.tasks.TaskSet`` (or an iterable of TaskSet chunks when streaming).
    """


@hookspec
def metafast_bench_suites(register: Callable[[str, Callable], None]) -> None:
    """Register benchmark suites for ``metafast bench``: call ``register(name, suite_factory)``.

    ``suite_factory(quick=False, **options)`` must return a ``metafast.bench.Suite`` (a list of
    cases: task family, shots, learner, with fixed seeds); ``quick=True`` asks for a CI-sized run.
    """
