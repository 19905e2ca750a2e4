"""How MetaRidge reads its tasks: a TaskSet or a stream of chunks, one pass at a time."""

from __future__ import annotations

import sys
from typing import Any, Iterable

import numpy as np

from metafast.parallel import one_blas_thread, threads_for_work
from metafast.learners._base import check_tasks, check_train_rows, iter_task_chunks, training_view
from metafast.tasks._taskset import TaskSet


_WORK_PER_ROW = 512   # multiply-adds per packed row of a ridge kernel (~m^2 / 3 at m = 40)


def _threads_for(n_threads: int, offsets: np.ndarray) -> int:
    """Threads worth starting for a ridge kernel call over the packed tasks of ``offsets``
    (``parallel.threads_for_work``: one thread below about 2,000 rows)."""
    return threads_for_work(n_threads, _WORK_PER_ROW * int(offsets[-1]))


class _TaskSource:
    """A TaskSet or a stream of TaskSet chunks, iterated once per pass over the tasks.

    A re-iterable stream (a list of chunks, a generator factory's result wrapped in a list...)
    may be read many times; a one-shot iterator only once, which is enough for the default
    closed-form fit and gives a clear error for the fits that need several passes.
    """

    def __init__(self, tasks: Any, train_rows: str = "all", n_threads: int = 1, verbose: int = 0):
        self.train_rows = self.view = check_train_rows(train_rows)
        self._n_threads, self._verbose = n_threads, verbose
        if isinstance(tasks, TaskSet):
            check_tasks(tasks)
        elif not hasattr(tasks, "__iter__"):
            raise TypeError(f"argument 'tasks' must be a TaskSet or an iterable of TaskSet chunks; "
                            f"got {type(tasks).__name__}")
        self._tasks = tasks
        self._one_shot = not isinstance(tasks, TaskSet) and iter(tasks) is tasks
        self._passes = 0
        self._stream = iter_task_chunks(tasks) if self._one_shot else None
        self.first = next((c for c in (self._stream or iter_task_chunks(tasks)) if len(c)), None)
        if self.first is None:
            raise ValueError("argument 'tasks' holds no tasks")

    def chunks(self, progress: int = 0, what: str = "", split: bool = False) -> Iterable[TaskSet]:
        """Each non-empty chunk once; as training rows (``train_rows``) unless ``split`` asks
        for the support/query split as given (the held-out objectives)."""
        if self._one_shot:
            if self._passes > 0:
                raise ValueError(
                    "this fit needs several passes over the tasks (metric='diag', learn_basis=True "
                    "or cv='query'), but 'tasks' is a one-shot iterator: pass a TaskSet or a "
                    "re-iterable sequence of TaskSet chunks (e.g. a list)"
                )
            it: Iterable[TaskSet] = _prepend(self.first, self._stream)
        else:
            it = iter_task_chunks(self._tasks)
        self._passes += 1
        bar = None if isinstance(self._tasks, TaskSet) else _progress(progress, None, what)
        for c in it:
            if len(c):
                yield c if split else training_view(c, self.train_rows)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def map_sum(self, fn, *args):
        """sum_i fn(chunk_i, *args, n_threads) over the chunks as given (the per-chunk functions
        turn them into training rows with ``view``), in chunk order: the in-process twin of
        ``DaskChunks.map_sum``, so both run the same per-chunk code (``ridge._dask``)."""
        total = None
        with one_blas_thread():
            for chunk in self.chunks(progress=self._verbose, what=fn.__name__.strip("_"), split=True):
                out = fn(chunk, *args, self._n_threads)
                total = out if total is None else total + out
        return total

    def all_have_queries(self) -> bool:
        return all(bool(np.all(np.diff(c.query_offsets) > 0)) for c in self.chunks(split=True))

    def n_tasks(self) -> int:
        return sum(len(c) for c in self.chunks())


def _prepend(first, rest):
    yield first
    yield from rest


def _progress(verbose: int, total, desc: str):
    if not verbose or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"MetaRidge {desc}", leave=False)
