"""What every meta-learner shares: task input, basis set-up, evaluation and safe pickling
(the version guard of metafast._pickle).

A meta-learner is a scikit-learn estimator whose ``fit`` takes tasks (a TaskSet, or an iterable of
TaskSet chunks for streams) instead of (X, y).  ``adapt(X, y)`` turns the fitted meta-model and a
new task's support points into a fitted scikit-learn regressor.  ``evaluate(tasks)`` scores the
few-shot predictions on each task's query set, all tasks at once (subclasses supply the packed
``_predict_tasks``), and averages the per-task metrics over tasks.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from metafast._pickle import VersionTagged
from metafast.basis._base import ROW_BLOCK, BasisFamily
from metafast.tasks._taskset import TaskSet

_Z90 = float(norm.ppf(0.95))  # half-width of the central 90% interval, in standard deviations


def check_tasks(tasks: Any, name: str = "tasks") -> TaskSet:
    """A non-empty TaskSet with finite values, or a clear error saying what was passed instead."""
    if isinstance(tasks, TaskSet):
        if len(tasks) == 0:
            raise ValueError(f"argument {name!r} holds no tasks")
        return tasks.check_finite(name)
    raise TypeError(
        f"argument {name!r} must be a metafast.tasks.TaskSet (see mf.tasks.load / "
        f"TaskSet.from_list); got {type(tasks).__name__}"
    )


def check_bounded(tasks: Any, name: str = "tasks") -> None:
    """Refuse an endless stream (``mf.tasks.stream(n_tasks=None)``): a fit passes over all the
    tasks at least once, so it would never return."""
    if not isinstance(tasks, TaskSet) and getattr(tasks, "n_tasks", 0) is None:
        raise ValueError(
            f"argument {name!r} is an endless stream (n_tasks=None), and fitting on it would never "
            "return: give the stream a length (mf.tasks.stream(..., n_tasks=N)), or feed chunks to "
            "partial_fit one at a time (e.g. for chunk in itertools.islice(stream, k))"
        )


def check_regression(tasks: TaskSet, learner: str, name: str = "tasks") -> None:
    """Refuse class labels (integer targets) in a regression learner's training tasks."""
    if tasks.y_support.dtype.kind in "iu" or tasks.y_query.dtype.kind in "iu":
        raise TypeError(
            f"argument {name!r} holds integer class labels (classification episodes); {learner} is "
            "a regressor: use mf.MetaClassifier, or convert y to float if it is a numeric target"
        )


def iter_task_chunks(tasks: Any, name: str = "tasks") -> Iterable[TaskSet]:
    """Yield TaskSet chunks from a TaskSet (one chunk) or a finite iterable of TaskSets (a
    stream), each checked for non-finite values."""
    if isinstance(tasks, TaskSet):
        yield check_tasks(tasks, name)
        return
    if not hasattr(tasks, "__iter__"):
        raise TypeError(
            f"argument {name!r} must be a TaskSet or an iterable of TaskSet chunks; got {type(tasks).__name__}"
        )
    check_bounded(tasks, name)
    for i, chunk in enumerate(tasks):
        if not isinstance(chunk, TaskSet):
            raise TypeError(f"argument {name!r}: chunk {i} is a {type(chunk).__name__}, not a TaskSet")
        yield chunk.check_finite(f"{name} (chunk {i})")


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


class TrainingStream:
    """A re-iterable stream of TaskSet chunks seen through :func:`training_view`: each pass
    over it is a pass over the underlying stream (so a regenerating stream stays bounded in
    memory)."""

    def __init__(self, stream: Any, train_rows: str):
        self.stream = stream
        self.train_rows = check_train_rows(train_rows)

    def __iter__(self):
        return training_chunks(self.stream, self.train_rows)


def training_source(tasks: Any, train_rows: str) -> Any:
    """``tasks`` as a learner meta-trains on them, of the same kind: a TaskSet gives a TaskSet,
    a list of chunks a list, any other re-iterable a :class:`TrainingStream`.  (One-shot
    iterators are for the caller to reject or consume first.)"""
    check_train_rows(train_rows)
    if isinstance(tasks, TaskSet):
        return training_view(check_tasks(tasks), train_rows)
    if isinstance(tasks, (list, tuple)):
        return list(training_chunks(tasks, train_rows))
    return TrainingStream(tasks, train_rows)


def per_task_mean(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each task's rows (offsets (T+1,)); NaN-free: empty tasks give 0
    and are excluded by the caller through ``offsets``."""
    sizes = np.diff(offsets)
    sums = np.zeros(len(sizes), dtype=np.result_type(values.dtype, np.float64))
    filled = sizes > 0
    if filled.any():  # reduceat over the non-empty tasks only: an empty LAST task has no start row
        sums[filled] = np.add.reduceat(values, offsets[:-1][filled])
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

    if not (np.isfinite(y).all() and np.isfinite(mean).all() and (std is None or np.isfinite(std).all())):
        raise FloatingPointError(
            "non-finite mse: the query targets or the predictions hold NaN or inf; nothing reliable to score"
        )
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


class MetaLearner(VersionTagged, BaseEstimator):
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

    # ------------------------------------------------------------------ fit aside, swap in
    # A fit runs on a work copy and installs its result with one assignment of ``__dict__``;
    # readers (adapt, adapt_predict, evaluate) take a ``_fitted_view`` (one dict copy, atomic
    # under the GIL), so a reader running while another thread refits sees the old model or the
    # new one, never a mix of both.  A fit that raises leaves the old model in place.
    def _work_copy(self, keep_fitted: bool) -> MetaLearner:
        """A learner to fit on: the parameters only, or (``keep_fitted``, for partial_fit) a
        shallow copy of the fitted state whose attributes the fit rebinds, never mutates."""
        work = object.__new__(type(self))
        state = self.__dict__.copy()  # atomic: readers may add cache entries meanwhile
        if not keep_fitted:
            params = self._get_param_names()
            state = {k: v for k, v in state.items() if k in params}
        work.__dict__ = state
        return work

    def _swap_in(self, work: MetaLearner) -> None:
        """Install the state fitted on ``work`` in one step (see ``_work_copy``)."""
        old = self.__dict__  # kept alive until the swap is done: no finaliser runs mid-swap
        self.__dict__ = work.__dict__
        del old

    @staticmethod
    def _reads_fitted_view(method):
        """Decorator: run a reader on ``_fitted_view()`` (a refit elsewhere cannot mix models)."""

        @functools.wraps(method)
        def on_view(self, *args, **kwargs):
            return method(self._fitted_view(), *args, **kwargs)

        return on_view

    def _fitted_view(self) -> MetaLearner:
        """A consistent read-only view of the fitted model (see ``_work_copy``)."""
        view = object.__new__(type(self))
        view.__dict__ = self.__dict__.copy()
        view._check_fitted()
        return view

    # ------------------------------------------------------------------ public API
    def evaluate(self, tasks: TaskSet) -> dict:
        """Adapt to every task's support set and score its query set.

        Returns a dict with "mse" and "mse_ci95" (1.96 x the standard error over tasks), and for
        Bayesian learners "nll", "nll_ci95", "coverage90", "coverage90_ci95"; plus "n_tasks".
        """
        model = self._fitted_view()
        ts = check_tasks(tasks)
        mean, std = model._predict_tasks(ts)
        return query_metrics(
            np.asarray(ts.y_query, dtype=np.float64), mean, std if self._bayesian else None, ts.query_offsets
        )

    def _predict_tasks(self, tasks: TaskSet):  # pragma: no cover - abstract
        raise NotImplementedError
