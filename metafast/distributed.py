"""Training chunks that live on Dask workers: built there from a small recipe, kept there, rebuilt
there when a worker is lost.

Each chunk is the result of a Dask task whose arguments are its *recipe*: a loader stream and a
chunk index, a file path, or (for data that exists only on the driver) the chunk itself.  The
scheduler keeps the recipe, so when a worker dies the chunks it held are recomputed on another
worker and the fit goes on with the same numbers.  Per EM iteration the driver sends the prior
(O(m^2)) and receives one ``Stats`` (O(m^2)), summed on the workers by a pairwise tree in a fixed
order (so a disturbed fit gives the same result as an undisturbed one, bit for bit).

Sources a worker can open itself (nothing but the recipe goes through the driver):

- ``mf.tasks.stream(name, n_tasks, chunk_size, seed, **params)``: a loader and a seed range;
- :class:`FileSource`: npz files written by ``TaskSet.save``, or CSV / Parquet tables made into
  tasks by ``from_frame`` (one chunk per file);
- :class:`DataFrameSource`: a dask DataFrame, one chunk per partition, built from the partition's
  own graph (so from wherever the frame is read).

Sources held by the driver (sent once, kept in the scheduler's task graph for rebuilding): a
TaskSet (split into as many chunks as the cluster has worker threads) and a list of TaskSets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from metafast._distributed_frames import DataFrameSource
from metafast.parallel import one_blas_thread
from metafast.tasks._taskset import TaskSet

__all__ = ["ChunkUnavailable", "DaskChunks", "DataFrameSource", "FileSource"]


class ChunkUnavailable(RuntimeError):
    """A training chunk could not be built (or rebuilt) from its source."""


class FileSource:
    """Training tasks in files a worker can read itself, one chunk per file.

    ``.npz`` files are written by ``TaskSet.save``.  ``.csv`` and ``.parquet`` files are tables
    turned into tasks by ``mf.tasks.from_frame`` with the given ``group``, ``features``,
    ``target`` (and ``n_support``, ``n_query``, ``seed``, other keywords of from_frame); the
    default ``n_support=None`` makes each group one whole training task.  Every group must lie in
    a single file: a group found in two files is an error naming both (checked on the workers
    with backend="dask", during the first pass in process).  The paths must be readable from
    every worker (a shared or replicated file system).  Parquet needs pyarrow.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        group=None,
        features=None,
        target=None,
        n_support=None,
        n_query=None,
        seed: Any = 0,
        **from_frame_kwargs,
    ):
        from metafast._distributed_frames import FrameSpec, file_format

        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("argument 'paths' is empty: a FileSource needs at least one file")
        self.formats = [file_format(p) for p in self.paths]
        self.spec = None
        if any(f != "npz" for f in self.formats):
            self.spec = FrameSpec(group, features, target, n_support, n_query, seed, **from_frame_kwargs)
        elif group is not None or features is not None or target is not None or from_frame_kwargs:
            raise ValueError("group/features/target apply to CSV or Parquet files; these are all .npz TaskSet files")

    @property
    def tables(self) -> bool:
        """Whether tasks are made from tables (so a group could be split between files)."""
        return self.spec is not None

    def __len__(self) -> int:
        return len(self.paths)

    def chunk(self, index: int) -> TaskSet:
        from metafast._distributed_frames import read_table

        path, fmt = self.paths[index], self.formats[index]
        if fmt == "npz":
            return TaskSet.load(path)
        return self.spec.tasks(read_table(path, fmt), index)

    def label(self, index: int) -> str:
        return f"{index} (file {self.paths[index]!r})"

    def __iter__(self):
        if self.tables and not getattr(self, "_groups_checked", False):
            return self._first_pass()
        return (self.chunk(i) for i in range(len(self)))

    def _first_pass(self):
        """In process: the chunks, checking as they go that no group is in two files."""
        from metafast._distributed_frames import group_hashes, key_with_hash, merge_hashes, split_group_error

        seen = None
        for i in range(len(self)):
            chunk = self.chunk(i)
            leaf = group_hashes(chunk, i)
            seen = leaf if seen is None else merge_hashes(seen, leaf)
            if seen[2] is not None:
                value, a, b = seen[2]
                raise split_group_error(key_with_hash(chunk, value), self.label(a), self.label(b))
            yield chunk
        self._groups_checked = True

    def __repr__(self) -> str:
        return f"FileSource({len(self.paths)} files, first {self.paths[0]!r})"


# ---------------------------------------------------------------------------- on the workers
def _worker_threads() -> int:
    """Threads of the worker running the current task (its kernels use exactly these)."""
    from distributed import get_worker

    worker = get_worker()
    state = getattr(worker, "state", None)
    return int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1) or 1)


def _training_rows(chunk: TaskSet, train_rows: str) -> TaskSet:
    """The learners' ``training_view`` (train_rows already checked by the learner), repeated here
    so that this module, which the learners import, imports none of them."""
    return chunk.all_rows() if train_rows == "all" else chunk


def _build_chunk(make: Callable, args: tuple, train_rows: str, label: str) -> TaskSet | None:
    """The training chunk of a recipe; None for an empty dask DataFrame partition (a shuffle on
    the group can leave partitions without rows), which every pass skips."""
    try:
        chunk = make(*args)
        if chunk is None and make is _partition_chunk:
            return None
        if not isinstance(chunk, TaskSet):
            raise TypeError(f"the source returned {type(chunk).__name__}, not a TaskSet")
        return _training_rows(chunk, train_rows)
    except Exception as exc:
        raise ChunkUnavailable(
            f"training chunk {label} could not be built from its source: {type(exc).__name__}: {exc}"
        ) from exc


def _identity(obj):
    return obj


def _stream_chunk(stream, index: int) -> TaskSet:
    return stream.chunk(index)


def _file_chunk(source: FileSource, index: int) -> TaskSet:
    return source.chunk(index)


def _partition_chunk(source, part, index: int) -> TaskSet | None:
    return None if len(part) == 0 else source.build(part, index)


def _add(a, b):
    """a + b, where None (the terms of an empty chunk) adds nothing."""
    return b if a is None else a if b is None else a + b


def _on_chunk(fn: Callable, chunk: TaskSet, *args):
    """``fn(chunk, *args, n_threads)`` with BLAS at one thread and the worker's own thread count."""
    if chunk is None:  # an empty partition
        return None
    with one_blas_thread():
        return fn(chunk, *args, _worker_threads())


# ---------------------------------------------------------------------------- on the driver
def _split_bounds(n_tasks: int, n_parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n_tasks, min(n_parts, n_tasks) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _recipes(tasks: Any, n_threads: int) -> list[tuple[Callable, tuple, str]]:
    """(function, arguments, label) building each training chunk on a worker."""
    from metafast.tasks._stream import TaskStream

    if isinstance(tasks, TaskSet):
        return [
            (_identity, (tasks.subset(slice(a, b)),), f"{i} (tasks {a}..{b - 1} of the TaskSet)")
            for i, (a, b) in enumerate(_split_bounds(len(tasks), n_threads))
        ]
    if isinstance(tasks, TaskStream):
        if tasks.resample:
            raise ValueError(
                "backend='dask' keeps each chunk on its worker, so it cannot fit a stream with "
                "resample=True (fresh points every pass); use resample=False"
            )
        if tasks.n_tasks is None:
            raise ValueError("backend='dask' needs a finite stream (n_tasks=None streams without end)")
        return [(_stream_chunk, (tasks, i), f"{i} of {tasks!r}") for i in range(len(tasks))]
    if isinstance(tasks, FileSource):
        return [(_file_chunk, (tasks, i), tasks.label(i)) for i in range(len(tasks))]
    if isinstance(tasks, DataFrameSource):
        return [(_partition_chunk, (tasks, part, i), label) for i, (part, label) in enumerate(tasks.recipes())]
    if isinstance(tasks, (list, tuple)):
        out = []
        for i, chunk in enumerate(tasks):
            if not isinstance(chunk, TaskSet):
                raise TypeError(f"argument 'tasks': chunk {i} is a {type(chunk).__name__}, not a TaskSet")
            out.append((_identity, (chunk,), f"{i} of the list"))
        if not out:
            raise ValueError("argument 'tasks' holds no TaskSet chunks")
        return out
    if type(tasks).__module__.startswith("dask"):
        raise TypeError(
            "backend='dask' fits a dask DataFrame through metafast.distributed.DataFrameSource"
            "(df, group=..., features=..., target=...), which says how rows make tasks"
        )
    raise TypeError(
        "backend='dask' fits a TaskSet, a list of TaskSets, a stream (mf.tasks.stream), a "
        "metafast.distributed.FileSource or a metafast.distributed.DataFrameSource; got "
        f"{type(tasks).__name__}"
    )


def _tree(client, combine: Callable, level: list):
    """The future of combine(...) over ``level`` pairwise, on the workers, in a fixed tree shape
    (the same order whatever worker computes what)."""
    while len(level) > 1:
        nxt = [client.submit(combine, level[i], level[i + 1], pure=False) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _item(obj, index):
    return obj[index]


class DaskChunks:
    """Training chunks persisted on the workers of the active Client (see the module docstring)."""

    def __init__(self, tasks: Any, train_rows: str, client=None):
        from metafast.parallel import dask_client

        self.client = client if client is not None else dask_client()
        n_threads = max(1, sum(self.client.nthreads().values()))
        self._whole = tasks if isinstance(tasks, TaskSet) else None
        self._train_rows = train_rows
        self.labels = []
        self.futures = []
        for make, args, label in _recipes(tasks, n_threads):
            self.labels.append(label)
            if make is _partition_chunk:  # the partition is a graph: the chunk's lineage includes it
                from dask import delayed

                self.futures.append(self.client.compute(delayed(_build_chunk)(make, args, train_rows, label)))
            else:
                self.futures.append(self.client.submit(_build_chunk, make, args, train_rows, label, pure=False))
        if isinstance(tasks, FileSource) and tasks.tables and len(self.futures) > 1:
            self._check_whole_groups()

    def _check_whole_groups(self) -> None:
        """A group in two files would become two tasks: find one on the workers (key hashes
        merged pairwise; only a clash comes back) and name it."""
        from metafast._distributed_frames import group_hashes, key_with_hash, merge_hashes, split_group_error

        leaves = [self.client.submit(group_hashes, c, i, pure=False) for i, c in enumerate(self.futures)]
        root = _tree(self.client, merge_hashes, leaves)
        clash = self.client.submit(_item, root, 2, pure=False).result()
        if clash is not None:
            value, a, b = clash
            key = self.client.submit(key_with_hash, self.futures[a], value, pure=False).result()
            self.release()
            raise split_group_error(key, self.labels[a], self.labels[b])

    def __len__(self) -> int:
        return len(self.futures)

    def first(self) -> TaskSet:
        """What an unfitted basis is fitted on, as in process: a TaskSet already on the driver
        whole, else chunk 0 (the only chunk that ever travels back)."""
        if self._whole is not None:
            return _training_rows(self._whole, self._train_rows)
        for future in self.futures:  # the first that is not an empty partition
            chunk = future.result()
            if chunk is not None:
                return chunk
        raise ValueError("argument 'tasks' holds no tasks: every partition is empty")

    def map_sum(self, fn: Callable, *args, each: Sequence | None = None):
        """sum_i fn(chunk_i, *args, worker_threads) over the chunks, added pairwise on the workers
        in a fixed tree (same order whatever worker computes what); only the sum comes back.
        ``each``: one small value per chunk, passed first, fn(chunk_i, each[i], *args, threads)
        (e.g. the chunk's first global task index)."""
        total = _tree(self.client, _add, self._per_chunk(fn, args, each)).result()
        if total is None:
            raise ValueError("argument 'tasks' holds no tasks: every chunk is empty")
        return total

    def map_list(self, fn: Callable, *args, each: Sequence | None = None) -> list:
        """[fn(chunk_i, *args, worker_threads)] in chunk order, each brought back to the driver
        (for per-task values needed once, e.g. the mixture's k-means start); None for an empty
        partition.  ``each`` as in ``map_sum``."""
        return self.client.gather(self._per_chunk(fn, args, each))

    def _per_chunk(self, fn: Callable, args: tuple, each: Sequence | None = None) -> list:
        # each argument is one small task (not scattered data, which has no lineage and would be
        # lost with its worker): the prior travels once per pass, and is rebuilt if lost
        shared = [self.client.submit(_identity, a, pure=False) for a in args]
        if each is None:
            return [self.client.submit(_on_chunk, fn, c, *shared, pure=False) for c in self.futures]
        if len(each) != len(self.futures):
            raise ValueError(f"'each' has {len(each)} values for {len(self.futures)} chunks")
        return [self.client.submit(_on_chunk, fn, c, e, *shared, pure=False) for c, e in zip(self.futures, each)]

    def release(self) -> None:
        for f in self.futures:
            f.release()
        self.futures = []
