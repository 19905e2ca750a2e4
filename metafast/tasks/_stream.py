"""Streams of TaskSet chunks, for more tasks than fit in memory.

``stream("sinusoid", n_tasks=10**7, chunk_size=10_000, seed=0)`` is a re-iterable object: each
pass over it yields the same tasks in chunks (the tasks ``load`` would give for that seed,
whatever the chunk size).  With ``resample=True`` each pass keeps the same tasks (functions,
classes) but draws fresh support and query points, reproducibly per pass index: the behaviour
Torchmeta users asked for (tristandeleu/pytorch-meta#69, #112).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from metafast._validation import check_positive_int
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet


class TaskStream:
    """Re-iterable TaskSet chunks of a loader; see :func:`stream`."""

    def __init__(
        self,
        loader: str | Callable,
        n_tasks: int | None,
        chunk_size: int,
        seed: Any = 0,
        resample: bool = False,
        **params,
    ):
        if isinstance(loader, str):
            from metafast.plugins import loader_registry

            self.name = loader
            loader = loader_registry().get(loader)
        else:
            if not callable(loader):
                raise TypeError(f"argument 'loader' must be a loader name or a callable; got {loader!r}")
            self.name = getattr(loader, "__name__", repr(loader))
        self.loader = loader
        self.n_tasks = None if n_tasks is None else check_positive_int(n_tasks, "n_tasks")
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.seed = resolve_seed(seed)
        self.resample = bool(resample)
        self.params = params
        self.sampler = getattr(loader, "sampler", None)
        if self.sampler is not None:
            self._prepared = self.sampler.prepare(**params)  # validate once, up front
        else:
            if self.resample:
                raise ValueError(
                    f"loader {self.name!r} cannot resample points for the same tasks (it has no "
                    "block sampler); use resample=False"
                )
            if self.n_tasks is None:
                raise ValueError(f"loader {self.name!r} cannot stream an unlimited number of tasks")
        self._passes = 0
        self._cache: dict = {}

    def __len__(self) -> int:
        if self.n_tasks is None:
            raise TypeError("an unlimited stream (n_tasks=None) has no length")
        return -(-self.n_tasks // self.chunk_size)

    def chunk(self, index: int, pass_index: int = 0) -> TaskSet:
        """Chunk ``index`` of pass ``pass_index`` (pass_index only matters when resampling)."""
        start = index * self.chunk_size
        if index < 0 or (self.n_tasks is not None and start >= self.n_tasks):
            raise IndexError(f"chunk {index} is out of range for a stream of {len(self)} chunks")
        stop = start + self.chunk_size if self.n_tasks is None else min(start + self.chunk_size, self.n_tasks)
        if self.sampler is not None:
            p = pass_index if self.resample else 0
            return self.sampler.generate(start, stop, self.seed, p, cache=self._cache, **self._prepared)
        # a plain plugin loader: one call per chunk with its own derived seed
        child = np.random.SeedSequence(self.seed, spawn_key=(2, index)).generate_state(1, np.uint64)[0]
        out = self.loader(n_tasks=stop - start, seed=int(child >> np.uint64(1)), **self.params)
        if not isinstance(out, TaskSet):
            raise TypeError(f"loader {self.name!r} returned {type(out).__name__}, not a TaskSet")
        return out

    def iter_pass(self, pass_index: int) -> Iterator[TaskSet]:
        """The chunks of one given pass (reproducible: same seed and pass -> same chunks)."""
        index = 0
        while self.n_tasks is None or index * self.chunk_size < self.n_tasks:
            yield self.chunk(index, pass_index)
            index += 1

    def __iter__(self) -> Iterator[TaskSet]:
        """Next pass: pass 0, 1, 2, ... (all identical unless ``resample=True``)."""
        p = self._passes
        self._passes += 1
        return self.iter_pass(p)

    def __repr__(self) -> str:
        return (
            f"TaskStream({self.name!r}, n_tasks={self.n_tasks}, chunk_size={self.chunk_size}, "
            f"seed={self.seed}, resample={self.resample})"
        )


def stream(
    name: str | Callable,
    n_tasks: int | None = 10_000,
    chunk_size: int = 1000,
    seed: Any = 0,
    resample: bool = False,
    **params,
) -> TaskStream:
    """Stream a loader's tasks as TaskSet chunks of at most ``chunk_size`` tasks.

    ``name`` is a registered loader name (or a loader callable); ``params`` are its keyword
    parameters (n_support, n_query, family options).  Built-in loaders generate each chunk
    directly, so memory stays bounded by one chunk; ``n_tasks=None`` streams without end.
    ``seed=None`` draws one seed when the stream is made (kept in ``.seed``), so re-iterating
    still repeats.  Iterating again starts the next pass: the same tasks, and with
    ``resample=True`` fresh points (pass p is reproducible: ``iter_pass(p)``).
    """
    return TaskStream(name, n_tasks, chunk_size, seed, resample, **params)
