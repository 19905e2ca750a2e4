"""The in-process chunk source: the twin of ``metafast.distributed.DaskChunks`` on the driver.

Every learner passes over its training tasks through one of two sources with one interface:
``LocalChunks`` here (the tasks in this process) or ``DaskChunks`` (chunks built and kept on
Dask workers).  Both call the same per-chunk function ``fn(chunk, *args, n_threads)`` (or
``fn(chunk, each[i], *args, n_threads)``) with BLAS at one thread; ``map_sum`` adds the results
in chunk order, ``map_list`` returns them, ``first`` is the chunk an unfitted basis is fitted on,
and ``release`` lets go of what the chunks hold.  A learner therefore has one code path per pass,
whatever the route, and only the order of the additions may differ between the two.

The tasks may be a TaskSet (one chunk), a list or tuple of TaskSet chunks, a re-iterable stream
(each pass reads it again, so memory stays bounded) or a one-shot iterator (read once: a second
pass is refused with a clear error, which is enough for the one-pass fits).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from metafast.learners._base import check_tasks, iter_task_chunks
from metafast.parallel import one_blas_thread
from metafast.tasks._taskset import TaskSet

ONE_SHOT_ERROR = (
    "this fit needs several passes over the tasks, but 'tasks' is a one-shot iterator: pass a "
    "TaskSet or a re-iterable sequence of TaskSet chunks (e.g. a list)"
)


class LocalChunks:
    """Training chunks in this process, with ``DaskChunks``' interface.

    ``n_threads`` is what each per-chunk call gets (a Dask worker passes its own thread count);
    ``on_release(chunk)`` is called for every held chunk by ``release`` (e.g. to drop a per-chunk
    cache); ``one_shot_error`` is the message of a second pass over a one-shot iterator.
    """

    def __init__(
        self,
        tasks: Any,
        n_threads: int = 1,
        on_release: Callable[[TaskSet], None] | None = None,
        one_shot_error: str = ONE_SHOT_ERROR,
    ):
        if isinstance(tasks, TaskSet):
            check_tasks(tasks)
        elif not hasattr(tasks, "__iter__"):
            raise TypeError(
                f"argument 'tasks' must be a TaskSet or an iterable of TaskSet chunks; got {type(tasks).__name__}"
            )
        self.tasks = tasks
        self.n_threads = n_threads
        self._on_release = on_release
        self._one_shot_error = one_shot_error
        self._one_shot = not isinstance(tasks, TaskSet) and iter(tasks) is tasks
        self._stream: Iterator[TaskSet] | None = iter_task_chunks(tasks) if self._one_shot else None
        self._first: TaskSet | None = None
        self._passes = 0

    # ------------------------------------------------------------------ the chunks
    def chunks(self) -> Iterator[TaskSet]:
        """Every chunk once, in order (empty ones included); one call is one pass."""
        if isinstance(self.tasks, TaskSet):
            self._passes += 1
            yield self.tasks
            return
        if self._one_shot:
            if self._passes > 0:
                raise ValueError(self._one_shot_error)
            self._passes += 1
            head = [] if self._first is None else [self._first]
            yield from itertools.chain(head, self._stream)
            return
        self._passes += 1
        yield from iter_task_chunks(self.tasks)

    def __iter__(self) -> Iterator[TaskSet]:
        return self.chunks()

    @property
    def labels(self) -> list[str]:
        """One label per chunk, in order (as ``DaskChunks.labels``), for naming a chunk in an error."""
        if isinstance(self.tasks, TaskSet):
            return ["0"]
        if isinstance(self.tasks, (list, tuple)):
            return [str(i) for i in range(len(self.tasks))]
        return [str(i) for i, _ in enumerate(self.chunks())]

    def first(self) -> TaskSet:
        """The first chunk with tasks (what an unfitted basis is fitted on)."""
        if self._first is None:
            if self._one_shot:
                for chunk in self._stream:
                    if len(chunk):
                        self._first = chunk
                        break
            else:
                self._first = next((c for c in self.chunks() if len(c)), None)
                self._passes = 0
            if self._first is None:
                raise ValueError("argument 'tasks' holds no tasks")
        return self._first

    # ------------------------------------------------------------------ the passes
    def _pass_for(self, fn: Callable) -> Iterator[TaskSet]:
        """The chunks one pass of ``fn`` reads (a learner's source may add a progress bar)."""
        return self.chunks()

    def map_list(self, fn: Callable, *args, each: Sequence | None = None) -> list:
        """[fn(chunk_i, *args, n_threads)] in chunk order; None for a chunk without tasks.
        ``each``: one value per chunk, passed first: fn(chunk_i, each[i], *args, n_threads)."""
        out = []
        with one_blas_thread():
            for i, chunk in enumerate(self._pass_for(fn)):
                out.append(None if len(chunk) == 0 else fn(chunk, *_with_each(each, i), *args, self.n_threads))
        if each is not None and len(each) != len(out):
            raise ValueError(f"'each' has {len(each)} values for {len(out)} chunks")
        return out

    def map_sum(self, fn: Callable, *args, each: Sequence | None = None):
        """sum_i fn(chunk_i, *args, n_threads) over the chunks with tasks, added in chunk order
        (the first result is the start, so a single chunk's result comes back unchanged)."""
        total = None
        with one_blas_thread():
            for i, chunk in enumerate(self._pass_for(fn)):
                if len(chunk):
                    out = fn(chunk, *_with_each(each, i), *args, self.n_threads)
                    total = out if total is None else total + out
        if total is None:
            raise ValueError("argument 'tasks' holds no tasks: every chunk is empty")
        return total

    def release(self) -> None:
        """Drop what the held chunks keep (``on_release``); a stream's chunks are not held."""
        if self._on_release is None:
            return
        held = (
            [self.tasks]
            if isinstance(self.tasks, TaskSet)
            else (list(self.tasks) if isinstance(self.tasks, (list, tuple)) else [])
        )
        for chunk in held:
            self._on_release(chunk)


def _with_each(each: Sequence | None, i: int) -> tuple:
    if each is None:
        return ()
    if i >= len(each):
        raise ValueError(f"'each' has {len(each)} values for more chunks")
    return (each[i],)
