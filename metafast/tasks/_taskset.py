"""Task and TaskSet: tasks stored packed in contiguous arrays with offsets (CSR-like).

A TaskSet of T tasks holds X_support (N_s, d), y_support (N_s,), support_offsets (T+1,) and the
same for the query set; rows offsets[t]:offsets[t+1] belong to task t.  Tasks may differ in
size.  ``tasks[i]`` is a Task of views into those arrays (no copy), so kernels can work on all
tasks in one call while users still see one task at a time.

Float targets are stored in X's dtype (float32 X means float32 y); integer targets are class
labels and stored as int64.

Class labels come in one of two settings, recorded as ``label_setting``:

* ``"shared"``: label k means the same class in every task (one task per district, outcome yes or
  no).  The default for integer labels: ``from_list``, ``from_frame`` and the constructor.
* ``"episodic"``: labels are re-drawn in every task (N-way K-shot episodes), so "class 0" of one
  task has nothing to do with "class 0" of another.  ``mf.tasks.episodes`` and the ``digits``
  loader mark their tasks so; pass ``label_setting="episodic"`` for your own relabelled tasks.

Regression TaskSets have ``label_setting = None``.  Slicing, ``all_rows``, ``astype``,
``save``/``load`` keep the setting; ``concatenate`` refuses to mix settings.  Beyond packing, a TaskSet slices, concatenates, splits by task
(``split``) and saves to / loads from ``.npz`` (``save`` / ``load``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metafast._validation import check_offsets, check_X, check_y
from metafast.tasks._io import ARRAYS, load_taskset, save_taskset
from metafast.tasks._split import split_indices


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
        *,
        label_setting: str | None = None,
        _copy_info: bool = True,
    ):
        self.X_support = check_X(X_support, "X_support")
        dtype = self.X_support.dtype
        self.X_query = check_X(X_query, "X_query", n_features=self.X_support.shape[1], dtype=dtype)
        self.y_support = _check_targets(y_support, "y_support", self.X_support.shape[0], dtype)
        self.y_query = _check_targets(y_query, "y_query", self.X_query.shape[0], dtype)
        self.support_offsets = check_offsets(support_offsets, self.X_support.shape[0], "support_offsets")
        self.query_offsets = check_offsets(query_offsets, self.X_query.shape[0], "query_offsets")
        if self.support_offsets.shape != self.query_offsets.shape:
            raise ValueError(
                f"support_offsets describe {self.support_offsets.shape[0] - 1} tasks but "
                f"query_offsets describe {self.query_offsets.shape[0] - 1}"
            )
        n = len(self)
        if info is None:
            self.info = [{} for _ in range(n)]
        else:  # each task owns its dict (internal callers that made fresh dicts skip the copy)
            self.info = [dict(d) for d in info] if _copy_info else list(info)
        if len(self.info) != n:
            raise ValueError(f"info has {len(self.info)} entries for {n} tasks")
        self.label_setting = _check_label_setting(label_setting, self.is_classification)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_list(cls, tasks: Iterable[Task], dtype: Any = None, label_setting: str | None = None) -> TaskSet:
        """Pack a list of Task objects (sizes may differ; all must have the same features).

        ``label_setting`` ("shared", the default for class labels, or "episodic"): see the
        module docstring."""
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
            label_setting=label_setting,
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
                self.X_support[s0:s1],
                self.y_support[s0:s1],
                self.X_query[q0:q1],
                self.y_query[q0:q1],
                self.info[i],
            )
        return self.subset(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def subset(self, index) -> TaskSet:
        """A new TaskSet of the selected tasks (slice, integer array or boolean mask), copied.

        Tasks come out in the order of ``index`` (repeats allowed); rows are gathered in one
        vectorised step, not task by task.
        """
        ids = np.atleast_1d(np.arange(len(self))[index])
        if ids.size == 0:
            raise ValueError("the selection is empty: a TaskSet needs at least one task")
        s_rows, s_off = gather_task_rows(self.support_offsets, ids)
        q_rows, q_off = gather_task_rows(self.query_offsets, ids)
        return TaskSet(
            self.X_support[s_rows],
            self.y_support[s_rows],
            s_off,
            self.X_query[q_rows],
            self.y_query[q_rows],
            q_off,
            info=[self.info[int(i)] for i in ids],
            label_setting=self.label_setting,
        )

    @classmethod
    def concatenate(cls, tasksets: Iterable[TaskSet], *, _copy_info: bool = True) -> TaskSet:
        """One TaskSet holding the tasks of every given TaskSet, in order.

        All must have the same number of features and label setting; X is float32 only if every
        part is float32.
        """
        parts = list(tasksets)
        if not parts:
            raise ValueError("argument 'tasksets' is empty: nothing to concatenate")
        for i, p in enumerate(parts):
            if not isinstance(p, TaskSet):
                raise TypeError(f"argument 'tasksets' item {i} is a {type(p).__name__}, not a TaskSet")
            if p.n_features != parts[0].n_features:
                raise ValueError(
                    f"argument 'tasksets' item {i} has {p.n_features} features but item 0 has {parts[0].n_features}"
                )
        settings = {p.label_setting for p in parts}
        if len(settings) > 1:
            raise ValueError(
                f"argument 'tasksets' mixes label settings {sorted(map(str, settings))}: episodic tasks "
                "(labels re-drawn per task) and shared-label tasks cannot be meta-learned together"
            )
        if len(parts) == 1:
            return parts[0].subset(slice(None))
        dtype = np.float32 if all(p.dtype == np.float32 for p in parts) else np.float64
        return cls(
            np.concatenate([p.X_support for p in parts]).astype(dtype, copy=False),
            _concat_targets([p.y_support for p in parts]),
            _concat_offsets([p.support_offsets for p in parts]),
            np.concatenate([p.X_query for p in parts]).astype(dtype, copy=False),
            _concat_targets([p.y_query for p in parts]),
            _concat_offsets([p.query_offsets for p in parts]),
            info=[d for p in parts for d in p.info],
            label_setting=parts[0].label_setting,
            _copy_info=_copy_info,
        )

    def split(self, sizes=(0.8, 0.1, 0.1), *, seed=None, shuffle: bool = True) -> tuple[TaskSet, ...]:
        """Split by task into disjoint parts (e.g. meta-train / validation / test).

        See :func:`metafast.tasks.split_tasks`; every task lands in exactly one part, so no
        task's points leak between parts.
        """
        return tuple(self.subset(idx) for idx in split_indices(len(self), sizes, seed=seed, shuffle=shuffle))

    def astype(self, dtype) -> TaskSet:
        """A copy with X (and float y) in ``dtype`` (float32 or float64); integer labels stay int64."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"parameter 'dtype' must be float32 or float64; got {dtype}")
        return TaskSet(
            self.X_support.astype(dtype),
            self.y_support.copy(),
            self.support_offsets.copy(),
            self.X_query.astype(dtype),
            self.y_query.copy(),
            self.query_offsets.copy(),
            info=self.info,
            label_setting=self.label_setting,
        )

    def all_rows(self) -> TaskSet:
        """Every labelled row of each task as its support, with an empty query.

        Task t's support becomes its support rows followed by its query rows, so a learner that
        meta-trains on the support sees all the labelled data (the default of every learner:
        see ``train_rows``).  Rows are gathered in one vectorised step; ``info`` is shared.
        """
        if self.X_query.shape[0] == 0:
            return self
        s_sizes, q_sizes = self.support_sizes, self.query_sizes
        off = _offsets_from_sizes(s_sizes + q_sizes)
        # row r of the merged task t: support row if r - off[t] < s_sizes[t], else a query row
        s_pos = np.repeat(off[:-1], s_sizes) + (
            np.arange(self.X_support.shape[0]) - np.repeat(self.support_offsets[:-1], s_sizes)
        )
        q_pos = np.repeat(off[:-1] + s_sizes, q_sizes) + (
            np.arange(self.X_query.shape[0]) - np.repeat(self.query_offsets[:-1], q_sizes)
        )
        n, d = int(off[-1]), self.n_features
        X = np.empty((n, d), dtype=self.dtype)
        X[s_pos], X[q_pos] = self.X_support, self.X_query
        y = np.empty(n, dtype=self.y_support.dtype)
        y[s_pos], y[q_pos] = self.y_support, self.y_query
        return TaskSet(
            X,
            y,
            off,
            X[:0],
            y[:0],
            np.zeros_like(off),
            info=self.info,
            label_setting=self.label_setting,
            _copy_info=False,
        )

    def check_finite(self, name: str = "tasks") -> TaskSet:
        """Raise ValueError naming the array, the task and the row of the first NaN or inf.

        The constructor checks this; learners check it again on what they are given, because the
        arrays are ordinary numpy arrays that may be changed after construction.  Cost: one sum
        per array (an exact scan only when the sum is not finite).
        """
        for a, off in (
            ("X_support", self.support_offsets),
            ("y_support", self.support_offsets),
            ("X_query", self.query_offsets),
            ("y_query", self.query_offsets),
        ):
            arr = getattr(self, a)
            if arr.dtype.kind != "f" or np.isfinite(np.sum(arr)):
                continue
            ok = np.isfinite(arr) if arr.ndim == 1 else np.isfinite(arr).all(axis=1)
            if ok.all():  # the sum overflowed: large but finite values
                continue
            row = int(np.argmin(ok))
            task = int(np.searchsorted(off, row, side="right") - 1)
            kind = "NaN" if np.isnan(arr[row]).any() else "inf"
            raise ValueError(
                f"argument {name!r}: {a} of task {task} holds {kind} (row {row - int(off[task])} of the "
                f"task, packed row {row}); were the TaskSet's arrays changed after it was built?"
            )
        return self

    @property
    def is_classification(self) -> bool:
        """True when the targets are integer class labels."""
        return self.y_support.dtype.kind in "iu"

    def equals(self, other: TaskSet) -> bool:
        """Exact equality of every array, offset and info entry (dtype included)."""
        if not isinstance(other, TaskSet):
            return False
        arrays = ("X_support", "y_support", "support_offsets", "X_query", "y_query", "query_offsets")
        for a in arrays:
            x, y = getattr(self, a), getattr(other, a)
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                return False
        if self.label_setting != other.label_setting:
            return False
        return _info_equal(self.info, other.info)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write to an ``.npz`` file (arrays stored exactly; ``info`` as columns when every task has
        the same keys and plain types, else as tagged JSON: ``metafast.tasks._io``).

        ``info`` values may be None, bool, int, float, str, lists, tuples, dicts with string
        keys, numpy scalars and numpy arrays; anything else raises TypeError before writing.
        """
        save_taskset(path, {a: getattr(self, a) for a in ARRAYS}, self.info, {"label_setting": self.label_setting})

    @classmethod
    def load(cls, path) -> TaskSet:
        """Read a TaskSet written by :meth:`save` (no pickle is ever loaded).

        A file that is not one (not a zip archive, damaged, a header or arrays that do not make a
        TaskSet) is a ValueError naming the file and the problem."""
        path = os.fspath(path)
        arrays, info, fields = load_taskset(path)
        try:  # files written before label settings existed have none: the default applies
            return cls(**arrays, info=info, label_setting=fields.get("label_setting"))
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path!r} holds arrays that do not make a TaskSet: {exc}") from None

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


LABEL_SETTINGS = ("shared", "episodic")


def _check_label_setting(setting, is_classification: bool) -> str | None:
    """The label setting of a TaskSet: "shared" by default for class labels, None for regression."""
    if setting is None:
        return "shared" if is_classification else None
    if setting not in LABEL_SETTINGS:
        raise ValueError(f"parameter 'label_setting' must be one of {LABEL_SETTINGS} or None; got {setting!r}")
    if not is_classification:
        raise ValueError(
            f"parameter 'label_setting' is {setting!r}, but the targets are not integer class labels: "
            "a regression TaskSet has no label setting"
        )
    return setting


def gather_task_rows(offsets: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of tasks ``ids`` (in that order) and the offsets of the gathered rows."""
    starts = offsets[ids]
    sizes = offsets[ids + 1] - starts
    new_off = _offsets_from_sizes(sizes)
    # row r of the output belongs to selected task k: starts[k] + (r - new_off[k])
    rows = np.repeat(starts - new_off[:-1], sizes) + np.arange(new_off[-1], dtype=np.int64)
    return rows, new_off


def _concat_offsets(parts: Sequence[np.ndarray]) -> np.ndarray:
    return _offsets_from_sizes(np.concatenate([np.diff(p) for p in parts]))


def _concat_targets(parts: Sequence[np.ndarray]) -> np.ndarray:
    kinds = {p.dtype.kind for p in parts}
    if len(kinds) > 1 and kinds & {"i", "u"}:
        raise ValueError("cannot concatenate TaskSets with integer class labels and TaskSets with float targets")
    return np.concatenate(parts)


def _info_equal(a: Sequence[dict], b: Sequence[dict]) -> bool:
    if len(a) != len(b):
        return False
    return all(_value_equal(x, y) for x, y in zip(a, b))


def _value_equal(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return (
            isinstance(x, np.ndarray)
            and isinstance(y, np.ndarray)
            and x.dtype == y.dtype
            and x.shape == y.shape
            and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        )
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_value_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_value_equal(u, v) for u, v in zip(x, y))
    if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
        return True
    return type(x) is type(y) and x == y
