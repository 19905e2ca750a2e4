"""Splitting a TaskSet by task for cross-validation: TaskKFold and the checks every splitter gets.

A fold never splits a task: all of a task's rows (support and query) are on one side, so no
held-out task's points are seen in training.  The index work is scikit-learn's (KFold, or
GroupKFold when tasks carry group labels); this module supplies the task-level checks.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

from metafast.learners._base import check_tasks
from metafast.tasks._taskset import TaskSet

Split = tuple[np.ndarray, np.ndarray]


def task_groups(tasks: TaskSet, groups: Any) -> np.ndarray | None:
    """Per-task group labels: None, an array of len(tasks), or the name of a key of ``tasks.info``
    (e.g. ``"group"`` from ``mf.tasks.from_frame``)."""
    if groups is None:
        return None
    if isinstance(groups, str):
        missing = [i for i, d in enumerate(tasks.info) if groups not in d]
        if missing:
            raise ValueError(
                f"argument 'groups'={groups!r} is not a key of the info of task {missing[0]}; "
                f"its keys are {sorted(tasks.info[missing[0]])}"
            )
        codes: dict = {}  # group keys may be tuples (several group columns): number them
        try:
            return np.array([codes.setdefault(d[groups], len(codes)) for d in tasks.info], dtype=np.intp)
        except TypeError:
            raise TypeError(f"argument 'groups'={groups!r}: the info values must be hashable") from None
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != len(tasks):
        raise ValueError(f"argument 'groups' must hold one label per task ({len(tasks)}); got shape {labels.shape}")
    return labels


class TaskKFold:
    """K-fold cross-validation over tasks: each fold holds out ``n_splits``-th of the tasks.

    Parameters
    ----------
    n_splits : int >= 2
    shuffle : bool
        Shuffle the task order before cutting folds (else folds are consecutive tasks).
    random_state : int, RandomState or None
        Seed of the shuffle: the same seed gives the same folds.

    ``split(tasks, groups=None)`` yields (train task indices, test task indices).  With
    ``groups`` (one label per task, or a key of ``tasks.info``) tasks sharing a label stay in
    the same fold (scikit-learn's GroupKFold), e.g. all curves of one customer.
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = False, random_state: Any = None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def __repr__(self) -> str:
        return f"TaskKFold(n_splits={self.n_splits!r}, shuffle={self.shuffle!r}, random_state={self.random_state!r})"

    def get_n_splits(self, tasks: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def _kfold(self, grouped: bool):
        k = self.n_splits
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2:
            raise ValueError(f"parameter 'n_splits' must be an integer >= 2; got {k!r}")
        if not isinstance(self.shuffle, bool):
            raise TypeError(f"parameter 'shuffle' must be True or False; got {self.shuffle!r}")
        if grouped:
            return GroupKFold(k, shuffle=self.shuffle, random_state=self.random_state if self.shuffle else None)
        return KFold(k, shuffle=self.shuffle, random_state=self.random_state if self.shuffle else None)

    def split(self, tasks: TaskSet, groups: Any = None) -> Iterator[Split]:
        """Yield (train, test) arrays of task indices, one pair per fold."""
        ts = check_tasks(tasks)
        labels = task_groups(ts, groups)
        splitter = self._kfold(labels is not None)
        n_units = len(ts) if labels is None else len(np.unique(labels))
        unit = "tasks" if labels is None else "task groups"
        if self.n_splits > n_units:
            raise ValueError(
                f"TaskKFold: n_splits={self.n_splits} is greater than the number of {unit} "
                f"({n_units}); use at most {n_units} folds"
            )
        index = np.arange(len(ts))
        yield from splitter.split(index.reshape(-1, 1), groups=labels)


def task_splits(cv: Any, tasks: TaskSet, groups: Any = None) -> list[Split]:
    """The (train, test) task-index pairs of ``cv``, checked.

    ``cv``: None (5 folds), an int (TaskKFold(cv)), a TaskKFold, any scikit-learn splitter
    (applied to the task indices, with ``groups``), or an iterable of (train, test) index pairs.
    Every test set must be non-empty and share no task with its training set.
    """
    ts = check_tasks(tasks)
    if cv is None:
        cv = 5
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        cv = TaskKFold(int(cv))
    if isinstance(cv, TaskKFold):
        pairs: Iterable = cv.split(ts, groups)
    elif hasattr(cv, "split"):
        pairs = cv.split(np.arange(len(ts)).reshape(-1, 1), None, task_groups(ts, groups))
    elif hasattr(cv, "__iter__"):
        pairs = cv
    else:
        raise TypeError(
            f"parameter 'cv' must be None, an int, a TaskKFold, a scikit-learn splitter or "
            f"an iterable of (train, test) task indices; got {type(cv).__name__}"
        )
    out = [_check_split(pair, k, len(ts)) for k, pair in enumerate(pairs)]
    if not out:
        raise ValueError("parameter 'cv' produced no split")
    return out


def _check_split(pair: Any, k: int, n_tasks: int) -> Split:
    try:
        train, test = pair
    except (TypeError, ValueError):
        raise ValueError(f"parameter 'cv': split {k} is not a (train, test) pair") from None
    train, test = (np.asarray(a) for a in (train, test))
    for name, idx in (("train", train), ("test", test)):
        if idx.dtype == bool:
            if idx.shape != (n_tasks,):
                raise ValueError(
                    f"parameter 'cv': split {k} has a {name} mask of shape {idx.shape}; expected ({n_tasks},)"
                )
            continue
        if idx.ndim != 1 or (idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n_tasks)):
            raise ValueError(
                f"parameter 'cv': split {k} has {name} indices that are not task indices in [0, {n_tasks})"
            )
    train = np.flatnonzero(train) if train.dtype == bool else train.astype(np.intp)
    test = np.flatnonzero(test) if test.dtype == bool else test.astype(np.intp)
    if train.size == 0 or test.size == 0:
        raise ValueError(f"parameter 'cv': split {k} has an empty {'train' if train.size == 0 else 'test'} set")
    shared = np.intersect1d(train, test)
    if shared.size:
        raise ValueError(f"parameter 'cv': split {k} puts task(s) {shared[:5].tolist()} in both train and test")
    return train, test
