"""Scores of a fitted meta-learner on held-out tasks, greater is better (scikit-learn's rule).

A scoring name is a metric of the learner's own ``evaluate(tasks)`` (the per-task query metric
averaged over tasks).  Losses are negated so that a greater score is always better, as with
scikit-learn's ``neg_mean_squared_error``:

=============  =========================================
scoring        score
=============  =========================================
"mse", "nll"   -mse, -nll   (also "neg_mse", "neg_nll")
"ece"          -ece
"accuracy"     accuracy
"coverage90"   -|coverage90 - 0.9|  (calibration error)
other name     the metric itself ("neg_<name>": minus it)
callable       scorer(estimator, tasks) -> float
=============  =========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from metafast.tasks._taskset import TaskSet

#: evaluate metrics where lower is better: their score is minus the metric
LOSSES = frozenset({"mse", "nll", "ece", "mae", "rmse", "brier"})
#: nominal coverage of the "coverage90" metric
NOMINAL_COVERAGE = {"coverage90": 0.9}


class MetricScorer:
    """Score from one key of ``estimator.evaluate(tasks)``, signed so that greater is better."""

    def __init__(self, metric: str, sign: float):
        self.metric = metric
        self.sign = sign

    def __repr__(self) -> str:
        return f"MetricScorer({self.metric!r}, sign={self.sign:+g})"

    def from_metrics(self, metrics: dict, estimator: Any) -> float:
        if self.metric not in metrics:
            available = sorted(k for k in metrics if not k.endswith("_ci95") and k != "n_tasks")
            raise ValueError(
                f"scoring {self.metric!r} is not a metric of {type(estimator).__name__}.evaluate, which "
                f"returns {available}"
            )
        value = float(metrics[self.metric])
        if self.metric in NOMINAL_COVERAGE:
            return -abs(value - NOMINAL_COVERAGE[self.metric])
        return self.sign * value

    def __call__(self, estimator: Any, tasks: TaskSet) -> float:
        return self.from_metrics(estimator.evaluate(tasks), estimator)


def get_scorer(scoring: Any) -> Callable:
    """A scorer(estimator, tasks) -> float for a scoring name or callable (see module docstring)."""
    if callable(scoring):
        return scoring
    if not isinstance(scoring, str) or not scoring:
        raise TypeError(f"parameter 'scoring' must be a metric name or a callable; got {scoring!r}")
    if scoring.endswith("_ci95") or scoring == "n_tasks":
        raise ValueError(f"parameter 'scoring'={scoring!r} is not a score: name a metric such as 'mse' or 'nll'")
    if scoring.startswith("neg_"):
        return MetricScorer(scoring[4:], -1.0)
    return MetricScorer(scoring, -1.0 if scoring in LOSSES else 1.0)


def check_scoring(scoring: Any, tasks: TaskSet) -> tuple[dict[str, Callable], bool]:
    """({name: scorer}, multimetric).  None scores "accuracy" on classification tasks, else "mse";
    a single name or callable is keyed "score" (as in scikit-learn), a list/tuple by its names,
    a dict as given."""
    if scoring is None:
        scoring = "accuracy" if tasks.is_classification else "mse"
    if isinstance(scoring, str) or callable(scoring):
        return {"score": get_scorer(scoring)}, False
    if isinstance(scoring, dict):
        if not scoring:
            raise ValueError("parameter 'scoring' is an empty dict")
        return {str(k): get_scorer(v) for k, v in scoring.items()}, True
    if isinstance(scoring, (list, tuple, set, frozenset)):
        names = list(scoring)
        if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"parameter 'scoring' must be a non-empty list of distinct metric names; got {scoring!r}")
        return {n: get_scorer(n) for n in names}, True
    raise TypeError(
        f"parameter 'scoring' must be None, a name, a callable, a list or a dict; got {type(scoring).__name__}"
    )


def score_all(estimator: Any, tasks: TaskSet, scorers: dict[str, Callable]) -> dict[str, float]:
    """Every scorer on (estimator, tasks), calling ``evaluate`` once for all metric scorers."""
    metrics = None
    out = {}
    for name, scorer in scorers.items():
        if isinstance(scorer, MetricScorer):
            if metrics is None:
                metrics = estimator.evaluate(tasks)
            out[name] = scorer.from_metrics(metrics, estimator)
        else:
            value = scorer(estimator, tasks)
            if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
                raise TypeError(f"scoring {name!r} returned a {type(value).__name__}, not a number")
            out[name] = float(value)
    return out
