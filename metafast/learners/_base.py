"""What every meta-learner shares: task input, basis set-up, evaluation and safe pickling.

A meta-learner is a scikit-learn estimator whose ``fit`` takes tasks (a TaskSet, or an iterable of
TaskSet chunks for streams) instead of (X, y).  ``adapt(X, y)`` turns the fitted meta-model and a
new task's support points into a fitted scikit-learn regressor.  ``evaluate(tasks)`` scores the
few-shot predictions on each task's query set, all tasks at once (subclasses supply the packed
``_predict_tasks``), and averages the per-task metrics over tasks.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from metafast._version import __version__
from metafast.basis._base import ROW_BLOCK, BasisFamily
from metafast.tasks._taskset import TaskSet

_Z90 = float(norm.ppf(0.95))  # half-width of the central 90% interval, in standard deviations


def check_tasks(tasks: Any, name: str = "tasks") -> TaskSet:
    """A TaskSet, or a clear TypeError saying what was passed instead."""
    if isinstance(tasks, TaskSet):
        if len(tasks) == 0:
            raise ValueError(f"argument {name!r} holds no tasks")
        return tasks
    raise TypeError(
        f"argument {name!r} must be a metafast.tasks.TaskSet (see mf.tasks.load / "
        f"TaskSet.from_list); got {type(tasks).__name__}"
    )


def iter_task_chunks(tasks: Any, name: str = "tasks") -> Iterable[TaskSet]:
    """Yield TaskSet chunks from a TaskSet (one chunk) or an iterable of TaskSets (a stream)."""
    if isinstance(tasks, TaskSet):
        yield check_tasks(tasks, name)
        return
    if not hasattr(tasks, "__iter__"):
        raise TypeError(
            f"argument {name!r} must be a TaskSet or an iterable of TaskSet chunks; "
            f"got {type(tasks).__name__}"
        )
    for i, chunk in enumerate(tasks):
        if not isinstance(chunk, TaskSet):
            raise TypeError(f"argument {name!r}: chunk {i} is a {type(chunk).__name__}, not a TaskSet")
        yield chunk


TRAIN_ROWS = ("all", "support")


def check_train_rows(train_rows: str) -> str:
    """Validate a learner's ``train_rows`` parameter ("all" or "support")."""
    if train_rows not in TRAIN_ROWS:
        raise ValueError(f"parameter 'train_rows' must be one of {TRAIN_ROWS}; got {train_rows!r}")
    return train_rows


def training_view(chunk: TaskSet, train_rows: str) -> TaskSet:
    """The rows a learner meta-trains on: with ``train_rows="all"`` (the default of every learner)
    each task's support and query rows together, as its support; with ``"support"`` the chunk as
    given (the old behaviour, or a learner that uses the split on purpose)."""
    return chunk.all_rows() if check_train_rows(train_rows) == "all" else chunk


def training_chunks(tasks: Any, train_rows: str, name: str = "tasks") -> Iterable[TaskSet]:
    """:func:`iter_task_chunks` with every chunk turned into its :func:`training_view`."""
    check_train_rows(train_rows)
    for chunk in iter_task_chunks(tasks, name):
        yield training_view(chunk, train_rows)


def per_task_mean(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each task's rows (offsets (T+1,)); NaN-free: empty tasks give 0
    and are excluded by the caller through ``offsets``."""
    sizes = np.diff(offsets)
    sums = np.add.reduceat(values, offsets[:-1]) if values.size else np.zeros(len(sizes))
    sums = np.where(sizes > 0, sums, 0.0)
    return sums / np.maximum(sizes, 1)


def query_metrics(y: np.ndarray, mean: np.ndarray, std: np.ndarray | None, offsets: np.ndarray) -> dict:
    """Per-task query metrics averaged over tasks with a query set, with 95% CIs over tasks.

    mse: mean squared error; nll: Gaussian negative log predictive density per point;
    coverage90: fraction of query points inside the central 90% predictive interval.
    """
    sizes = np.diff(offsets)
    keep = sizes > 0
    if not keep.any():
        raise ValueError("no task has query points: nothing to evaluate")
    n_tasks = int(keep.sum())

    def summarise(per_task: np.ndarray, key: str, out: dict) -> None:
        vals = per_task[keep]
        out[key] = float(vals.mean())
        sem = vals.std(ddof=1) / np.sqrt(n_tasks) if n_tasks > 1 else 0.0
        out[key + "_ci95"] = float(1.96 * sem)

    resid = y - mean
    out: dict[str, float] = {"n_tasks": n_tasks}
    summarise(per_task_mean(resid**2, offsets), "mse", out)
    if std is not None:
        var = np.maximum(std, np.finfo(np.float64).tiny) ** 2
        nll = 0.5 * (np.log(2 * np.pi * var) + resid**2 / var)
        summarise(per_task_mean(nll, offsets), "nll", out)
        covered = (np.abs(resid) <= _Z90 * std).astype(np.float64)
        summarise(per_task_mean(covered, offsets), "coverage90", out)
    return out


class MetaLearner(BaseEstimator):
    """Base class of the regression meta-learners (see the module docstring).

    Subclasses implement ``fit(tasks)``, ``adapt(X, y)`` and
    ``_predict_tasks(tasks) -> (mean, std or None)`` over the packed query rows, where each task is
    adapted on its own support set; ``_bayesian`` says whether std is available.
    """

    _bayesian = False

    # ------------------------------------------------------------------ helpers for subclasses
    def _init_basis(self, tasks: TaskSet, default: str = "rbf", **default_params) -> BasisFamily:
        """The basis to fit with: a copy of a fitted ``basis``, or ``basis`` fitted on the tasks.

        ``basis`` may also be a scikit-learn transformer (wrapped by ``metafast.basis.as_basis``):
        a fitted one is used as it is, an unfitted one is fitted on the tasks' rows.
        """
        from metafast import basis as basis_api

        b = self.basis if getattr(self, "basis", None) is not None else basis_api.make(default, **default_params)
        if isinstance(b, str):
            b = basis_api.make(b)
        if not isinstance(b, BasisFamily):  # a scikit-learn transformer (or a clear TypeError)
            b = basis_api.as_basis(b, X=tasks.X_support[:ROW_BLOCK], name="basis")
        if b.__sklearn_is_fitted__():
            return copy.deepcopy(b)
        return clone(b).fit_tasks(tasks)

    def _check_fitted(self) -> None:
        if not getattr(self, "_mf_fitted", False):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(tasks) before adapt/predict/evaluate"
            )

    # ------------------------------------------------------------------ public API
    def evaluate(self, tasks: TaskSet) -> dict:
        """Adapt to every task's support set and score its query set.

        Returns a dict with "mse" and "mse_ci95" (1.96 x the standard error over tasks), and for
        Bayesian learners "nll", "nll_ci95", "coverage90", "coverage90_ci95"; plus "n_tasks".
        """
        self._check_fitted()
        ts = check_tasks(tasks)
        mean, std = self._predict_tasks(ts)
        return query_metrics(np.asarray(ts.y_query, dtype=np.float64), mean, std if self._bayesian else None,
                             ts.query_offsets)

    def _predict_tasks(self, tasks: TaskSet):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ pickling with a version guard
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_metafast_version"] = __version__
        return state

    def __setstate__(self, state):
        saved = state.get("_metafast_version")
        if saved is not None and _major_minor(saved) != _major_minor(__version__):
            raise ValueError(
                f"this {type(self).__name__} was pickled by metafast {saved}, which is not compatible "
                f"with the installed metafast {__version__}: refit it with this version"
            )
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:  # pragma: no cover
            self.__dict__.update(state)


def _major_minor(version: str) -> tuple:
    parts = str(version).split(".")
    return tuple(parts[:2])
