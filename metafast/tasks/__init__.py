"""Tasks: Task, packed TaskSet, built-in task families and loaders, streams, tables, episodes."""

from __future__ import annotations

import inspect

import numpy as np

from metafast.tasks._episodes import DIGITS_TEST_CLASSES, DIGITS_TRAIN_CLASSES, episodes
from metafast.tasks._frames import from_csv, from_frame
from metafast.tasks._groups import split_groups
from metafast.tasks._split import split_classes, split_tasks
from metafast.tasks._stream import TaskStream, stream
from metafast.tasks._taskset import Task, TaskSet
from metafast.tasks.classes import oracle_proba
from metafast.tasks.synthetic import noise_free, oracle, true_function


def available() -> list[str]:
    """Sorted names of every registered task loader (built-in and plugins)."""
    from metafast.plugins import loader_registry

    return loader_registry().names()


def load(name: str, **params) -> TaskSet:
    """Tasks from a registered loader, e.g. ``load("sinusoid", n_tasks=1000, n_support=10)``.

    An unknown name raises an error listing close matches; parameters the loader does not
    accept raise a TypeError listing the ones it does.  To read a TaskSet saved with
    ``TaskSet.save``, use ``TaskSet.load(path)``.  A streaming loader returns an iterator
    of TaskSet chunks, each checked as it arrives.
    """
    from metafast.plugins import loader_registry

    if isinstance(name, str) and name.endswith(".npz"):
        raise KeyError(f"{name!r} looks like a file: read saved tasks with metafast.tasks.TaskSet.load(path)")
    registry = loader_registry()
    if name in registry.names():  # an absurd size is refused before the loader allocates it
        from metafast._memory import check_allocation

        sizes = ", ".join(f"{k}={v}" for k, v in _size_arguments(name, params).items() if k in _SIZE_KEYS)
        check_allocation(
            _load_nbytes(name, params),
            f"{registry.describe(name)} with {sizes}",
            "lower n_tasks or the rows per task, or stream the tasks in chunks (mf.tasks.stream)",
        )
    result = registry.call(name, **params)
    if isinstance(result, TaskSet):
        return result
    if hasattr(result, "__next__"):
        return _checked_chunks(result, registry.describe(name))
    raise TypeError(
        f"{registry.describe(name)} returned a {type(result).__name__}, not a "
        "metafast.tasks.TaskSet (or an iterator of TaskSet chunks): a bug in that loader"
    )


#: the size arguments of loaders (built-in and plugin) that the memory estimate reads
_SIZE_KEYS = ("n_tasks", "n_support", "n_query", "n_way", "k_shot", "n_features")
#: per-task bytes besides the rows: two offsets and the task's info dict (a lower bound)
_TASK_BYTES = 200


def _size_arguments(name: str, params: dict) -> dict:
    """The loader's arguments with its defaults filled in (its own checks report bad ones)."""
    from metafast.plugins import loader_registry

    try:
        bound = inspect.signature(loader_registry().get(name)).bind_partial(**params)
    except (TypeError, ValueError):
        return dict(params)
    bound.apply_defaults()
    return dict(bound.arguments)


def _load_nbytes(name: str, params: dict) -> float:
    """A lower bound on the memory of ``load(name, **params)``, from the size arguments it has:
    n_tasks x (rows per task x (features + target) x itemsize + a task's bookkeeping)."""
    args = _size_arguments(name, params)

    def count(key: str) -> float:
        value = args.get(key)
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value > 0
        return float(value) if ok else 0.0

    rows = max(count("n_support") + count("n_query") + count("n_way") * count("k_shot"), 1.0)
    try:
        itemsize = np.dtype(args.get("dtype") or np.float64).itemsize
    except TypeError:
        itemsize = 8
    return count("n_tasks") * (rows * (max(count("n_features"), 1.0) + 1.0) * itemsize + _TASK_BYTES)


def _checked_chunks(chunks, what: str):
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, TaskSet):
            raise TypeError(f"{what} yielded a {type(chunk).__name__} as chunk {i}, not a TaskSet")
        yield chunk


def concatenate(tasksets) -> TaskSet:
    """One TaskSet with the tasks of every given TaskSet, in order."""
    return TaskSet.concatenate(tasksets)


__all__ = [
    "Task",
    "TaskSet",
    "TaskStream",
    "available",
    "load",
    "stream",
    "concatenate",
    "from_frame",
    "from_csv",
    "episodes",
    "split_tasks",
    "split_classes",
    "split_groups",
    "true_function",
    "oracle",
    "noise_free",
    "oracle_proba",
    "DIGITS_TRAIN_CLASSES",
    "DIGITS_TEST_CLASSES",
]
