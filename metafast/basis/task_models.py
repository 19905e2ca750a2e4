"""Task-models family: each basis function is a regressor fitted on one training task.

g_i(x) = model_i.predict(x), where model_i is a clone of ``estimator`` (a random forest by
default) fitted on all labelled points (support and query) of one training task; the n_basis
tasks are drawn without replacement with ``random_state``.  A new task is then fit as a
weighted combination of models learned on earlier tasks (a "model bank" basis), which suits
task families that are mixtures of a few prototypes.

Classifiers are accepted too (the seed's classic example: one classifier per earlier task, e.g. a
RandomForestClassifier, and a new task as a weighted combination of them), for two-class labels:
g_i(x) is model i's predicted probability of the larger label (0 where model i never saw that
label).  This is meaningful in the shared-label setting, where the label means the same thing in
every task; in the episodic setting a model's labels are another episode's relabelled classes, so
its outputs are only generic nonlinear features of x, not evidence for the new task's classes.

It needs tasks to fit: ``fit(tasks)`` or ``fit_tasks(tasks)`` with a TaskSet.  The design is
plain numpy (one ``predict`` per model); there is no fused kernel and nothing learnable.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils import check_random_state

from metafast._validation import check_positive_int
from metafast.basis._base import BasisFamily, _is_taskset


def _fit_one(estimator, X, y, seed):
    model = clone(estimator)
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    return model.fit(X, y)


class TaskModels(BasisFamily):
    """Basis of regressors, one per (randomly chosen) training task.

    Parameters
    ----------
    n_basis : int
        Number of task models (at most the number of training tasks).
    estimator : scikit-learn regressor, optional
        Cloned for every chosen task; default RandomForestRegressor(n_estimators=50).
    use_query : bool
        Fit each model on the task's support and query points (True) or support only.
    random_state : int, RandomState or None
        Which tasks are chosen, and the seeds of the models.
    n_jobs : int, optional
        Models fitted in parallel (joblib); None = one at a time.
    """

    def __init__(self, n_basis: int = 10, estimator=None, use_query: bool = True,
                 random_state=None, n_jobs: int | None = None):
        self.n_basis = n_basis
        self.estimator = estimator
        self.use_query = use_query
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Fit one model per chosen task of the TaskSet ``X`` (a plain array is an error)."""
        if not _is_taskset(X):
            raise TypeError(
                "TaskModels must be fitted on a TaskSet (fit(tasks) or fit_tasks(tasks)): each "
                "basis function is a model trained on one task, so a plain array X, which "
                "has no tasks, cannot fit it"
            )
        tasks = X
        m = check_positive_int(self.n_basis, "n_basis")
        sizes = np.diff(tasks.support_offsets)
        if self.use_query:
            sizes = sizes + np.diff(tasks.query_offsets)
        eligible = np.flatnonzero(sizes > 0)
        if eligible.size < m:
            raise ValueError(
                f"TaskModels(n_basis={m}) needs at least {m} training tasks with data; the "
                f"TaskSet has {len(tasks)} task(s), {eligible.size} non-empty. Lower n_basis "
                "or pass more tasks"
            )
        rng = check_random_state(self.random_state)
        chosen = np.sort(rng.choice(eligible, size=m, replace=False))
        seeds = rng.randint(np.iinfo(np.int32).max, size=m)
        estimator = self.estimator if self.estimator is not None else \
            RandomForestRegressor(n_estimators=50)
        self.positive_label_ = _positive_label(tasks) if is_classifier(estimator) else None
        jobs = []
        for t, seed in zip(chosen, seeds):
            task = tasks[int(t)]
            Xt, yt = task.X_support, task.y_support
            if self.use_query:
                Xt = np.concatenate([Xt, task.X_query])
                yt = np.concatenate([yt, task.y_query])
            yt = np.asarray(yt) if self.positive_label_ is not None else np.asarray(yt, dtype=np.float64)
            jobs.append(delayed(_fit_one)(estimator, Xt, yt, seed))
        self.models_ = Parallel(n_jobs=self.n_jobs)(jobs)
        self.task_indices_ = chosen
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def fit_tasks(self, tasks) -> "TaskModels":
        """Same as fit(tasks)."""
        return self.fit(tasks)

    def design(self, X) -> np.ndarray:
        """(n, n_basis): column i is model i's prediction."""
        if X.shape[0] == 0:
            return np.zeros((0, self.n_basis), dtype=X.dtype)
        if getattr(self, "positive_label_", None) is not None:
            return np.column_stack([_positive_proba(model, X, self.positive_label_) for model in self.models_])
        return np.column_stack([np.asarray(model.predict(X), dtype=X.dtype)
                                for model in self.models_])


def _positive_label(tasks):
    """The larger of the two class labels of a classification TaskSet (the classifiers' feature is
    its probability); anything else is a clear error."""
    if not tasks.is_classification:
        raise TypeError(
            "TaskModels with a classifier needs tasks with integer class labels; these tasks hold float "
            "targets (use a regressor as the estimator)")
    labels = np.unique(np.concatenate([tasks.y_support, tasks.y_query]))
    if labels.size > 2:
        raise ValueError(
            f"TaskModels with a classifier supports two-class labels (one feature per model: the "
            f"probability of the larger label); the tasks hold {labels.size} labels {labels.tolist()[:10]}")
    return labels[-1]


def _positive_proba(model, X, label) -> np.ndarray:
    where = np.flatnonzero(model.classes_ == label)
    if where.size == 0:          # this task never showed the label: probability 0
        return np.zeros(X.shape[0], dtype=X.dtype)
    return np.asarray(model.predict_proba(X)[:, where[0]], dtype=X.dtype)
