"""Class labels of classification tasks: validation and encoding to codes 0..C-1.

The rule for the two settings (see ``metafast.tasks.TaskSet.label_setting``):

* episodic: a task's classes are the labels present in its own labelled rows; codes follow the
  sorted labels.  A query label absent from the support cannot be predicted: an error.
* shared: the classes are the labels seen in meta-training (``classes_``), the same in every
  task; a task may lack some of them (they are predicted from the prior), but a label never seen
  in meta-training is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import where
from metafast.tasks._taskset import TaskSet


def check_labels(y: Any, name: str = "y", task: Any = None, n_samples: int | None = None) -> np.ndarray:
    """A 1-D label vector of any label type; floats must be whole numbers (then int64)."""
    if y is None:
        raise TypeError(f"{where(name, task)} is None; expected class labels")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{where(name, task)} must be 1-D (n_samples,) class labels; got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{where(name, task)} has {arr.shape[0]} labels but X has {n_samples} rows")
    if arr.dtype.kind == "c":
        raise ValueError(f"{where(name, task)} is complex; expected class labels")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where(name, task)} contains {arr[i]} (first at index {i}); class labels must be finite")
        frac = arr != np.round(arr)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise ValueError(
                f"{where(name, task)} holds float values that are not whole numbers (first {arr[i]!r} at index "
                f"{i}): these look like regression targets; MetaClassifier needs class labels (use "
                "mf.MetaBayes or mf.MetaRidge for regression)"
            )
        return arr.astype(np.int64)
    if arr.dtype == object:
        _check_object_labels(arr, name, task)
    return arr


def _label_kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, (str, np.str_)):
        return "str"
    return type(value).__name__


def _check_object_labels(arr: np.ndarray, name: str, task: Any) -> None:
    """Labels in an object array: all present (no None/NaN) and of one kind (numbers or text),
    so that they can be sorted into the task's classes."""
    kinds: dict[str, str] = {}
    for i, v in enumerate(arr):
        missing = (
            v is None
            or type(v).__name__ in ("NAType", "NaTType")
            or (isinstance(v, (float, np.floating)) and np.isnan(v))
        )
        if missing:
            raise ValueError(
                f"{where(name, task)} contains {v!r} at index {i}; every class label must be "
                "present (drop the unlabelled rows or give them a label)"
            )
        kinds.setdefault(_label_kind(v), type(v).__name__)
    if len(kinds) > 1:
        raise TypeError(
            f"{where(name, task)} mixes label types ({', '.join(sorted(kinds.values()))}), which "
            "cannot be ordered into classes; give labels of one type (e.g. all strings: "
            "np.asarray(y).astype(str))"
        )


def check_classification_tasks(tasks: TaskSet, name: str = "tasks") -> None:
    """Refuse regression targets (float y) with a message naming the regressors."""
    if not tasks.is_classification:
        y = np.concatenate([tasks.y_support[:1000], tasks.y_query[:1000]])
        whole = bool(np.all(y == np.round(y)))
        hint = (
            (
                "their values are whole numbers: if they are class labels, build the TaskSet from integer "
                "labels (y.astype(int))"
            )
            if whole
            else "use mf.MetaBayes or mf.MetaRidge for regression"
        )
        raise TypeError(
            f"argument {name!r} holds float (regression) targets, but MetaClassifier needs integer class labels; {hint}"
        )


def task_ids(offsets: np.ndarray) -> np.ndarray:
    """The task index of every packed row."""
    return np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))


def encode_episodic(y: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-task codes of packed labels: (codes (N,), n_classes (T,), labels (sum C_t,), label_offsets (T+1,)).

    Task t's classes are its sorted distinct labels ``labels[label_offsets[t]:label_offsets[t+1]]``.
    """
    tid = task_ids(offsets)
    keys = np.stack([tid, y.astype(np.int64)], axis=1) if y.size else np.zeros((0, 2), np.int64)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    per_task = (
        np.bincount(uniq[:, 0], minlength=len(offsets) - 1) if uniq.size else np.zeros(len(offsets) - 1, np.int64)
    )
    label_offsets = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(per_task, out=label_offsets[1:])
    codes = (inv - label_offsets[tid]).astype(np.int64)
    return codes, per_task.astype(np.int64), uniq[:, 1].astype(np.int64), label_offsets


def encode_query_episodic(
    y_q: np.ndarray, q_offsets: np.ndarray, labels: np.ndarray, label_offsets: np.ndarray
) -> np.ndarray:
    """Codes of query labels against each task's support classes; a label absent from the task's
    support is an error naming the task."""
    tid = task_ids(q_offsets)
    codes = np.empty(y_q.shape[0], dtype=np.int64)
    for t in np.unique(tid):
        rows = slice(q_offsets[t], q_offsets[t + 1])
        cls = labels[label_offsets[t] : label_offsets[t + 1]]
        pos = np.searchsorted(cls, y_q[rows])
        ok = (
            (pos < cls.size) & (cls[np.minimum(pos, max(cls.size - 1, 0))] == y_q[rows])
            if cls.size
            else np.zeros(pos.shape, bool)
        )
        if not ok.all():
            bad = y_q[rows][~ok][0]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise ValueError(
                f"argument 'tasks': task {int(t)} has query label {bad!r} that is absent from its support "
                f"set (support classes {cls.tolist()}); in the episodic setting a class must have at "
                "least one support example to be predicted"
            )
        codes[rows] = pos
    return codes


def encode_shared(
    y: np.ndarray, classes: np.ndarray, offsets: np.ndarray | None = None, name: str = "tasks"
) -> np.ndarray:
    """Codes of labels against the meta-training classes; an unseen label is an error naming the
    task (when ``offsets`` is given) or the argument."""
    pos = np.searchsorted(classes, y)
    ok = (pos < classes.size) & (classes[np.minimum(pos, classes.size - 1)] == y)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        label = y[i].item() if isinstance(y[i], np.generic) else y[i]
        at = f"task {int(task_ids(offsets)[i])} of argument {name!r}" if offsets is not None else f"argument {name!r}"
        raise ValueError(
            f"{at} has label {label!r}, which was never seen in meta-training (classes "
            f"{classes.tolist()[:20]}); in the shared-label setting every class must be seen in "
            "meta-training"
        )
    return pos.astype(np.int64)


def check_n_classes(n_classes: np.ndarray, max_classes: int, what: str = "tasks") -> None:
    """More classes than the heads support (``max_classes``) is an error naming the task."""
    too_many = np.flatnonzero(n_classes > max_classes)
    if too_many.size:
        t = int(too_many[0])
        raise ValueError(
            f"task {t} of argument {what!r} has {int(n_classes[t])} classes, more than max_classes="
            f"{max_classes} that MetaClassifier supports (raise max_classes if memory allows: the "
            "logistic head keeps C n x n matrices per task)"
        )
