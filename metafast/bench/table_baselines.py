"""The baselines of the real-table classification suite, all on standardised inputs.

The scaler is fitted on every row of the training tasks (what a user would do first):

- ``StandardisedCentroid``: nearest class mean of each task's support (episodic and shared);
- ``LdaCentroid``: class means in an LDA projection learned on the meta-train classes (each
  episode's labels mapped back to the table's classes through ``info["classes"]``): the closed-form
  reference of a metric learned across tasks (episodic);
- ``TaskLogistic``: LogisticRegression (C = 1) on each task's support alone;
- ``PooledLogistic``: one LogisticRegression on every training row, used unchanged (shared).

Scores of the centroid baselines are minus half the squared distances (a unit-variance Gaussian
per class), so they also get a log loss.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler

from metafast.bench._skip import Unavailable
from metafast.bench.baselines import PerEpisodeLogistic, PooledClassifier, _ClassificationBaseline
from metafast.learners._base import check_tasks


def _scaler(tasks) -> StandardScaler:
    full = tasks.all_rows()
    return StandardScaler().fit(np.asarray(full.X_support, dtype=np.float64))


def _centroid_log_proba(Zs: np.ndarray, ys: np.ndarray, Zq: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """log softmax(-|z - mean_c|^2 / 2) over ``classes`` (a class absent from the support: -inf)."""
    D = np.full((Zq.shape[0], classes.size), np.inf)
    for j, c in enumerate(classes):
        rows = ys == c
        if rows.any():
            diff = Zq - Zs[rows].mean(axis=0)
            D[:, j] = np.einsum("nd,nd->n", diff, diff)
    S = -0.5 * D
    S -= S.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return S - np.log(np.exp(S).sum(axis=1, keepdims=True))


class StandardisedCentroid(_ClassificationBaseline):
    """Nearest class mean of the task's support, on inputs standardised over the training rows."""

    def __init__(self, basis=None):
        self.basis = basis

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.scaler_ = _scaler(tasks)
        return super().fit(tasks)

    def _transform(self, X):
        return self.scaler_.transform(np.asarray(X, dtype=np.float64))

    def _task_log_proba(self, task, classes):
        return _centroid_log_proba(
            self._transform(task.X_support), np.asarray(task.y_support), self._transform(task.X_query), classes
        )


class LdaCentroid(StandardisedCentroid):
    """Class means in an LDA projection (at most ``n_components`` axes, shrinkage "auto") learned
    on the rows of the meta-train classes, each episode's codes mapped back to its table classes."""

    def __init__(self, basis=None, n_components: int | None = None):
        self.basis = basis
        self.n_components = n_components

    def fit(self, tasks, y=None):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        tasks = check_tasks(tasks)
        if tasks.label_setting != "episodic" or not all("classes" in (i or {}) for i in tasks.info):
            raise Unavailable("the LDA reference needs episodes that record their classes (info['classes'])")
        X, labels = [], []
        for task in tasks:
            names = np.asarray(task.info["classes"]).astype(str)
            X += [task.X_support, task.X_query]
            labels += [
                names[np.asarray(task.y_support, dtype=np.int64)],
                names[np.asarray(task.y_query, dtype=np.int64)],
            ]
        X, labels = np.concatenate(X).astype(np.float64), np.concatenate(labels)
        X, idx = np.unique(X, axis=0, return_index=True)  # each table row once
        labels = labels[idx]
        super().fit(tasks)
        self.lda_ = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto", n_components=self.n_components)
        self.lda_.fit(self.scaler_.transform(X), labels)
        return self

    def _transform(self, X):
        return self.lda_.transform(self.scaler_.transform(np.asarray(X, dtype=np.float64)))


class TaskLogistic(PerEpisodeLogistic):
    """LogisticRegression (C = 1) on each task's support alone, standardised inputs."""

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.scaler_ = _scaler(tasks)
        return super().fit(tasks)

    def _task_log_proba(self, task, classes):
        from metafast.tasks import Task

        t = Task(
            self.scaler_.transform(task.X_support), task.y_support, self.scaler_.transform(task.X_query), task.y_query
        )
        return super()._task_log_proba(t, classes)


class PooledLogistic(PooledClassifier):
    """One LogisticRegression (C = 1) on every standardised training row, the same for every task
    (shared labels only): ``PooledClassifier`` on standardised inputs."""

    _max_iter = 2000

    def _fit_inputs(self, tasks) -> None:
        self.scaler_ = _scaler(tasks)

    def _inputs(self, X):
        return self.scaler_.transform(X)


__all__ = ["LdaCentroid", "PooledLogistic", "StandardisedCentroid", "TaskLogistic"]
