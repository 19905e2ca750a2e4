"""Cross-validation over tasks: fit on the training tasks of each fold, score the held-out ones.

Each fold's learner is a ``clone`` of the model fitted on the training tasks only (all their
rows, as the learner meta-trains); the held-out tasks are then scored through the learner's own
``evaluate``: adapt to each task's support set, score its query set, average over tasks.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import FitFailedWarning

from metafast.learners._base import check_tasks
from metafast.model_selection._scoring import check_scoring, score_all
from metafast.model_selection._split import task_splits
from metafast.tasks._taskset import TaskSet


def fit_and_score(
    estimator: Any,
    train: TaskSet,
    test: TaskSet,
    params: dict,
    scorers: dict[str, Callable],
    *,
    return_train_score: bool = False,
    return_estimator: bool = False,
    error_score: Any = np.nan,
) -> dict:
    """Fit ``clone(estimator).set_params(**params)`` on ``train``; score it on ``test``.

    A failing fit gives ``error_score`` for every score (with the error text in "fit_error"),
    or re-raises with ``error_score="raise"``.
    """
    est = clone(estimator).set_params(**params)
    out: dict = {"fit_error": None, "estimator": None}
    start = time.perf_counter()
    try:
        est.fit(train)
    except Exception as exc:
        if isinstance(error_score, str) and error_score == "raise":
            raise
        out["fit_time"] = time.perf_counter() - start
        out["score_time"] = 0.0
        out["fit_error"] = f"{type(exc).__name__}: {exc}"
        out["test_scores"] = {name: float(error_score) for name in scorers}
        if return_train_score:
            out["train_scores"] = dict(out["test_scores"])
        return out
    out["fit_time"] = time.perf_counter() - start
    start = time.perf_counter()
    out["test_scores"] = score_all(est, test, scorers)
    out["score_time"] = time.perf_counter() - start
    if return_train_score:
        out["train_scores"] = score_all(est, train, scorers)
    if return_estimator:
        out["estimator"] = est
    return out


def fold_tasksets(tasks: TaskSet, splits: list) -> list[tuple[TaskSet, TaskSet]]:
    """(train TaskSet, test TaskSet) per split, built once and shared by every candidate."""
    return [(tasks.subset(train), tasks.subset(test)) for train, test in splits]


def progress_bar(total: int, desc: str):
    """A tqdm bar over ``total`` fits (disabled when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None, leave=False)


def run_jobs(calls: Iterable[tuple[Callable, tuple, dict]], n_calls: int, n_jobs: Any, verbose: int, desc: str) -> list:
    """Run ``fn(*args, **kwargs)`` for each call through joblib (``n_jobs`` workers, any joblib
    backend), in order, with a tqdm progress bar when ``verbose`` > 0 (off when stderr is not
    a terminal)."""
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    results = parallel(delayed(fn)(*args, **kwargs) for fn, args, kwargs in calls)
    if not verbose:
        return list(results)
    out = []
    with progress_bar(n_calls, desc) as bar:
        for r in results:
            out.append(r)
            bar.update(1)
    return out


def warn_or_raise_failures(results: list, error_score: Any) -> None:
    """Warn about failed fits (like scikit-learn's FitFailedWarning); raise if every fit failed."""
    errors = [r["fit_error"] for r in results if r["fit_error"] is not None]
    if not errors:
        return
    if len(errors) == len(results):
        raise ValueError(f"all {len(results)} fits failed; the first error was: {errors[0]}")
    distinct = sorted(set(errors))
    warnings.warn(
        f"{len(errors)} of the {len(results)} fits failed and got error_score={error_score!r}; "
        f"errors: {'; '.join(distinct[:3])}{' ...' if len(distinct) > 3 else ''}",
        FitFailedWarning,
        stacklevel=3,
    )


def cross_validate_tasks(
    model: Any,
    tasks: TaskSet,
    *,
    cv: Any = 5,
    groups: Any = None,
    scoring: Any = None,
    n_jobs: Any = None,
    verbose: int = 0,
    return_train_score: bool = False,
    return_estimator: bool = False,
    error_score: Any = np.nan,
) -> dict:
    """Cross-validate a meta-learner over tasks.

    Parameters
    ----------
    model : an unfitted meta-learner (cloned for each fold).
    tasks : TaskSet, split by task (never a task's rows across folds).
    cv : int, TaskKFold, scikit-learn splitter or iterable of (train, test) task indices
        (see :func:`metafast.model_selection.task_splits`); an int means ``TaskKFold(cv)``
        (consecutive tasks; pass ``TaskKFold(k, shuffle=True, random_state=seed)`` to shuffle).
    groups : per-task labels or a key of ``tasks.info``: tasks sharing a label share a fold.
    scoring : metric name(s) of ``model.evaluate`` or callables; greater is better, losses
        (mse, nll, ...) are negated (see ``metafast.model_selection._scoring``).  None: "mse",
        or "accuracy" for classification tasks.
    n_jobs : joblib workers over folds (the learner's own ``n_jobs`` sets its kernel threads).

    Returns
    -------
    dict of arrays, one entry per fold: "fit_time", "score_time", "test_score" (or
    "test_<name>" for several scorers), "train_..." with return_train_score, "estimator" with
    return_estimator, and "n_test_tasks".
    """
    ts = check_tasks(tasks)
    scorers, multimetric = check_scoring(scoring, ts)
    splits = task_splits(cv, ts, groups)
    folds = fold_tasksets(ts, splits)
    kwargs = dict(return_train_score=return_train_score, return_estimator=return_estimator, error_score=error_score)
    results = run_jobs(
        ((fit_and_score, (model, train, test, {}, scorers), kwargs) for train, test in folds),
        len(folds),
        n_jobs,
        verbose,
        f"cross-validating {type(model).__name__}",
    )
    warn_or_raise_failures(results, error_score)
    out: dict[str, Any] = {
        "fit_time": np.array([r["fit_time"] for r in results]),
        "score_time": np.array([r["score_time"] for r in results]),
        "n_test_tasks": np.array([len(test) for _, test in splits]),
    }
    for name in scorers:
        key = name if multimetric else "score"
        out[f"test_{key}"] = np.array([r["test_scores"][name] for r in results])
        if return_train_score:
            out[f"train_{key}"] = np.array([r["train_scores"][name] for r in results])
    if return_estimator:
        out["estimator"] = [r["estimator"] for r in results]
    return out
