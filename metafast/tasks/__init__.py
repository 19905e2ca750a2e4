"""Tasks: Task, packed TaskSet, built-in task families and loaders."""

from __future__ import annotations

from metafast.tasks._taskset import Task, TaskSet


def available() -> list[str]:
    """Sorted names of every registered task loader (built-in and plugins)."""
    from metafast.plugins import loader_registry

    return loader_registry().names()


def load(name: str, **params) -> TaskSet:
    """Tasks from a registered loader, e.g. ``load("sinusoid", n_tasks=1000, n_support=10)``."""
    from metafast.plugins import loader_registry

    return loader_registry().get(name)(**params)


__all__ = ["Task", "TaskSet", "available", "load"]
