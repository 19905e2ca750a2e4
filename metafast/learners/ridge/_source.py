"""How MetaRidge reads its tasks: a TaskSet or a stream of chunks, one pass at a time."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import numpy as np

from metafast.parallel import threads_for_work
from metafast.learners._base import check_train_rows, training_view
from metafast.learners._chunks import LocalChunks
from metafast.tasks._taskset import TaskSet


_ONE_SHOT = ("this fit needs several passes over the tasks (metric='diag', learn_basis=True or cv='query'), but "
             "'tasks' is a one-shot iterator: pass a TaskSet or a re-iterable sequence of TaskSet chunks (e.g. a list)")
_WORK_PER_ROW = 512   # multiply-adds per packed row of a ridge kernel (~m^2 / 3 at m = 40)


def _threads_for(n_threads: int, offsets: np.ndarray) -> int:
    """Threads worth starting for a ridge kernel call over the packed tasks of ``offsets``
    (``parallel.threads_for_work``: one thread below about 2,000 rows)."""
    return threads_for_work(n_threads, _WORK_PER_ROW * int(offsets[-1]))


class _TaskSource(LocalChunks):
    """MetaRidge's in-process source: ``LocalChunks`` (a TaskSet, a list of chunks, a
    re-iterable stream or a one-shot iterator, which is enough for the default closed-form fit
    and gives a clear error for the fits that need several passes), plus the training-row view
    and the progress bar of MetaRidge's own passes."""

    def __init__(self, tasks: Any, train_rows: str = "all", n_threads: int = 1, verbose: int = 0):
        super().__init__(tasks, n_threads, one_shot_error=_ONE_SHOT)
        self.train_rows = self.view = check_train_rows(train_rows)
        self._verbose = verbose
        self.first()

    def chunks(self, progress: int = 0, what: str = "", split: bool = False) -> Iterator[TaskSet]:
        """Each non-empty chunk once; as training rows (``train_rows``) unless ``split`` asks
        for the support/query split as given (the held-out objectives)."""
        bar = None if isinstance(self.tasks, TaskSet) else _progress(progress, None, what)
        for c in super().chunks():
            if len(c):
                yield c if split else training_view(c, self.train_rows)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def _pass_for(self, fn) -> Iterator[TaskSet]:
        """A pass of a per-chunk function of ``ridge._dask`` (the same code as on the Dask
        workers): the chunks as given, which the function turns into training rows with
        ``view``, with MetaRidge's progress bar."""
        return self.chunks(progress=self._verbose, what=fn.__name__.strip("_"), split=True)

    def all_have_queries(self) -> bool:
        return all(bool(np.all(np.diff(c.query_offsets) > 0)) for c in self.chunks(split=True))

    def n_tasks(self) -> int:
        return sum(len(c) for c in self.chunks())


def _progress(verbose: int, total, desc: str):
    if not verbose or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"MetaRidge {desc}", leave=False)
