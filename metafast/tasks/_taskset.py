"""Task and TaskSet: tasks stored packed in contiguous arrays with offsets (CSR-like).

A TaskSet of T tasks holds X_support (N_s, d), y_support (N_s,), support_offsets (T+1,) and the
same for the query set; rows offsets[t]:offsets[t+1] belong to task t.  Tasks may differ in
size.  ``tasks[i]`` is a Task of views into those arrays (no copy), so kernels can work on all
tasks in one call while users still see one task at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from metafast._validation import check_X, check_y


@dataclass(eq=False)
class Task:
    """One few-shot task: support (training) points and query (evaluation) points.

    ``info`` carries metadata: the group key for real data, the generating parameters for
    synthetic tasks.
    """

    X_support: np.ndarray
    y_support: np.ndarray
    X_query: np.ndarray
    y_query: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_support(self) -> int:
        return int(self.X_support.shape[0])

    @property
    def n_query(self) -> int:
        return int(self.X_query.shape[0])

    def __repr__(self) -> str:
        d = self.X_support.shape[1] if self.X_support.ndim == 2 else "?"
        return f"Task(n_support={self.n_support}, n_query={self.n_query}, n_features={d}, info={self.info})"


def _offsets_from_sizes(sizes: Sequence[int]) -> np.ndarray:
    off = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sizes, dtype=np.int64), out=off[1:])
    return off


class TaskSet:
    """Many tasks packed into contiguous arrays; see the module docstring."""

    def __init__(
        self,
        X_support: np.ndarray,
        y_support: np.ndarray,
        support_offsets: np.ndarray,
        X_query: np.ndarray,
        y_query: np.ndarray,
        query_offsets: np.ndarray,
        info: Sequence[dict] | None = None,
    ):
        self.X_support = check_X(X_support, "X_support")
        dtype = self.X_support.dtype
        self.X_query = check_X(X_query, "X_query", n_features=self.X_support.shape[1], dtype=dtype)
        self.y_support = _check_targets(y_support, "y_support", self.X_support.shape[0], dtype)
        self.y_query = _check_targets(y_query, "y_query", self.X_query.shape[0], dtype)
        self.support_offsets = _check_task_offsets(support_offsets, self.X_support.shape[0], "support_offsets")
        self.query_offsets = _check_task_offsets(query_offsets, self.X_query.shape[0], "query_offsets")
        if self.support_offsets.shape != self.query_offsets.shape:
            raise ValueError(
                f"support_offsets describe {self.support_offsets.shape[0] - 1} tasks but "
                f"query_offsets describe {self.query_offsets.shape[0] - 1}"
            )
        n = len(self)
        self.info = [dict(d) for d in info] if info is not None else [{} for _ in range(n)]
        if len(self.info) != n:
            raise ValueError(f"info has {len(self.info)} entries for {n} tasks")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_list(cls, tasks: Iterable[Task], dtype: Any = None) -> "TaskSet":
        """Pack a list of Task objects (sizes may differ; all must have the same features)."""
        tasks = list(tasks)
        if not tasks:
            raise ValueError("argument 'tasks' is empty: a TaskSet needs at least one task")
        Xs, ys, Xq, yq = [], [], [], []
        d = None
        for i, t in enumerate(tasks):
            if not isinstance(t, Task):
                raise TypeError(f"argument 'tasks' item {i} is a {type(t).__name__}, not a metafast Task")
            xs = check_X(t.X_support, "X_support", task=i, n_features=d)
            d = xs.shape[1]
            xq = check_X(t.X_query, "X_query", task=i, n_features=d)
            Xs.append(xs)
            Xq.append(xq)
            ys.append(_check_targets(t.y_support, "y_support", xs.shape[0], None, task=i))
            yq.append(_check_targets(t.y_query, "y_query", xq.shape[0], None, task=i))
        if dtype is None:
            dtype = np.float32 if all(x.dtype == np.float32 for x in Xs) else np.float64
        return cls(
            np.concatenate(Xs).astype(dtype, copy=False),
            np.concatenate(ys),
            _offsets_from_sizes([x.shape[0] for x in Xs]),
            np.concatenate(Xq).astype(dtype, copy=False),
            np.concatenate(yq),
            _offsets_from_sizes([x.shape[0] for x in Xq]),
            info=[dict(t.info) for t in tasks],
        )

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.support_offsets.shape[0] - 1)

    @property
    def n_tasks(self) -> int:
        return len(self)

    @property
    def n_features(self) -> int:
        return int(self.X_support.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.X_support.dtype

    @property
    def support_sizes(self) -> np.ndarray:
        return np.diff(self.support_offsets)

    @property
    def query_sizes(self) -> np.ndarray:
        return np.diff(self.query_offsets)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            n = len(self)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"task index {index} out of range for a TaskSet of {n} tasks")
            s0, s1 = self.support_offsets[i], self.support_offsets[i + 1]
            q0, q1 = self.query_offsets[i], self.query_offsets[i + 1]
            return Task(
                self.X_support[s0:s1], self.y_support[s0:s1],
                self.X_query[q0:q1], self.y_query[q0:q1], self.info[i],
            )
        return self.subset(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def subset(self, index) -> "TaskSet":
        """A new TaskSet of the selected tasks (slice, integer array or boolean mask), copied."""
        ids = np.arange(len(self))[index]
        ids = np.atleast_1d(ids)
        if ids.size == 0:
            raise ValueError("the selection is empty: a TaskSet needs at least one task")
        return TaskSet.from_list([self[int(i)] for i in ids], dtype=self.dtype)

    def __repr__(self) -> str:
        return (
            f"TaskSet(n_tasks={len(self)}, n_features={self.n_features}, "
            f"support={self.X_support.shape[0]} rows, query={self.X_query.shape[0]} rows, dtype={self.dtype})"
        )


def _check_targets(y, name, n, dtype, task=None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind in "iub" and arr.dtype.kind != "f":
        return check_y(arr, name, task=task, n_samples=n, dtype=np.int64)
    return check_y(arr, name, task=task, n_samples=n, dtype=dtype or np.float64)


def _check_task_offsets(offsets, n_rows: int, name: str) -> np.ndarray:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.shape[0] < 2 or off.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array of length n_tasks + 1 (>= 2)")
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != n_rows or np.any(np.diff(off) < 0):
        raise ValueError(
            f"{name} must start at 0, never decrease and end at the row count {n_rows}; "
            f"got first={off[0]}, last={off[-1]}"
        )
    return off
