"""Reproducible task sampling in fixed blocks, shared by every built-in generator.

Task ``i`` of a generator is a pure function of (seed, i): tasks are drawn in blocks of
``BLOCK_SIZE`` and block ``b`` uses its own random streams, derived from the seed with
``numpy.random.SeedSequence(seed, spawn_key=...)``.  Hence

* ``load(name, n_tasks=100, seed=0)`` is the first 100 tasks of ``load(name, n_tasks=1000, seed=0)``;
* a stream yields exactly the tasks ``load`` would, whatever the chunk size;
* chunks can be generated in any order, or on different workers, with the same result.

Each block has two streams: one for the task-level draws (function parameters, class choices)
and one for the points.  The point stream also takes the *pass index*, so a resampling stream
draws fresh points for the same tasks on every pass, reproducibly per pass.  Generation within a
block is vectorised over its tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from metafast.tasks._taskset import TaskSet

BLOCK_SIZE = 256
_TASK_STREAM, _POINT_STREAM = 0, 1


def block_rngs(seed: int, block: int, pass_index: int = 0) -> tuple[np.random.Generator, np.random.Generator]:
    """(task-level generator, point-level generator) for one block and pass."""
    task_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TASK_STREAM, block)))
    point_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_POINT_STREAM, block, pass_index)))
    return task_rng, point_rng


class BlockSampler:
    """A task generator that can produce any range of its (infinite) task sequence.

    ``prepare(**params) -> dict`` validates and normalises the parameters once;
    ``sample_block(task_rng, point_rng, n, **prepared) -> TaskSet`` draws ``n`` tasks.
    Loaders built on a BlockSampler carry it as their ``sampler`` attribute, which
    :func:`metafast.tasks.stream` uses to stream them without materialising every task.
    """

    def __init__(self, name: str, prepare: Callable[..., dict], sample_block: Callable[..., Any]):
        self.name = name
        self.prepare = prepare
        self.sample_block = sample_block

    def generate(self, start: int, stop: int, seed: int, pass_index: int = 0, *, cache: dict | None = None, **prepared):
        """Tasks ``start..stop-1`` of the sequence for ``seed`` (a TaskSet).

        ``cache`` (a dict owned by the caller) keeps the last block drawn, so consecutive small
        chunks of one block do not redraw it.
        """
        if not 0 <= start < stop:
            raise ValueError(f"empty or negative task range [{start}, {stop})")
        parts = []
        for block in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1):
            key = (seed, block, pass_index)
            if cache is not None and key in cache:
                tasks = cache[key]
            else:
                task_rng, point_rng = block_rngs(seed, block, pass_index)
                tasks = self.sample_block(task_rng, point_rng, BLOCK_SIZE, **prepared)
                if cache is not None:
                    cache.clear()
                    cache[key] = tasks
            lo = max(start - block * BLOCK_SIZE, 0)
            hi = min(stop - block * BLOCK_SIZE, BLOCK_SIZE)
            parts.append(tasks if (lo, hi) == (0, BLOCK_SIZE) else tasks.subset(slice(lo, hi)))
        if len(parts) == 1:
            return parts[0] if parts[0] is not (cache or {}).get(key) else parts[0].subset(slice(None))
        # the parts are fresh (or copied by subset): their info dicts need no second copy
        fresh = [p if p is not (cache or {}).get(key) else p.subset(slice(None)) for p in parts]
        return TaskSet.concatenate(fresh, _copy_info=False)

    def __repr__(self) -> str:
        return f"BlockSampler({self.name!r})"


def packed(X: np.ndarray, Y: np.ndarray, n_support: int, info: list[dict]):
    """A TaskSet from equal-size tasks: X (T, n, d), Y (T, n); the first n_support points are the support."""
    T, n, d = X.shape
    n_query = n - n_support
    return TaskSet(
        X[:, :n_support].reshape(T * n_support, d),
        Y[:, :n_support].reshape(-1),
        np.arange(T + 1, dtype=np.int64) * n_support,
        X[:, n_support:].reshape(T * n_query, d),
        Y[:, n_support:].reshape(-1),
        np.arange(T + 1, dtype=np.int64) * n_query,
        info=info,
        _copy_info=False,
    )
