"""Task-models family: each basis function is a regressor fitted on one training task.

g_i(x) = model_i.predict(x), where model_i is a clone of ``estimator`` (a random forest by
default) fitted on all labelled points (support and query) of one training task; the n_basis
tasks are drawn without replacement with ``random_state``.  A new task is then fit as a
weighted combination of models learned on earlier tasks (a "model bank" basis), which suits
task families that are mixtures of a few prototypes.

Classifiers are accepted too (the seed's classic example: one classifier per earlier task, e.g. a
RandomForestClassifier, and a new task as a weighted combination of them).  With K labels over the
training TaskSet (``classes_``, sorted), each model contributes K - 1 columns: its
``predict_proba`` aligned on ``classes_`` (a label the model's task never showed gets probability
0), without the column of ``classes_[0]`` (the K probabilities sum to 1, so that column is the
constant minus the others: no information is lost, and the design is not collinear with the
intercept).  For two labels this is one column per model, the probability of the larger label.
``n_basis`` is the design width, as for every family, so a classifier bank has
n_basis / (K - 1) models (``n_models_``; n_basis must be a multiple of K - 1).

The two label settings: with *shared* labels (class k means the same in every task) model i's
column for label k is the evidence that a new task's point is of class k according to task i, and a
new task is fitted as a weighted combination of the earlier tasks' class probabilities.  In the
*episodic* setting a model's labels are another episode's relabelled classes: its columns are
only generic nonlinear features of x (a learned partition of the input space), not evidence for
the new task's classes, and ``classes_`` is the union of every episode's label values.

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
        Number of columns: of task models for a regressor (at most the number of training tasks);
        for a classifier with K labels, n_basis / (K - 1) models of K - 1 columns each.
    estimator : scikit-learn regressor or classifier, optional
        Cloned for every chosen task; default RandomForestRegressor(n_estimators=50).  A
        classifier needs ``predict_proba``.
    use_query : bool
        Fit each model on the task's support and query points (True) or support only.
    random_state : int, RandomState or None
        Which tasks are chosen, and the seeds of the models.
    n_jobs : int, optional
        Models fitted in parallel (joblib); None = one at a time.
    """

    def __init__(
        self, n_basis: int = 10, estimator=None, use_query: bool = True, random_state=None, n_jobs: int | None = None
    ):
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
        estimator = self.estimator if self.estimator is not None else RandomForestRegressor(n_estimators=50)
        self.classes_ = _class_labels(tasks, estimator) if is_classifier(estimator) else None
        if self.classes_ is not None:
            width = self.classes_.size - 1
            if m % width:
                raise ValueError(
                    f"TaskModels(n_basis={m}) with a classifier and {self.classes_.size} labels gives each "
                    f"model {width} columns (the probabilities of all labels but the first); n_basis must "
                    f"be a multiple of {width} (e.g. {max(width, m - m % width)} or {m - m % width + width})"
                )
            m //= width
        self.n_models_ = m
        sizes = np.diff(tasks.support_offsets)
        if self.use_query:
            sizes = sizes + np.diff(tasks.query_offsets)
        eligible = np.flatnonzero(sizes > 0)
        if eligible.size < m:
            raise ValueError(
                f"TaskModels(n_basis={self.n_basis}) needs at least {m} training tasks with data; the "
                f"TaskSet has {len(tasks)} task(s), {eligible.size} non-empty. Lower n_basis "
                "or pass more tasks"
            )
        rng = check_random_state(self.random_state)
        chosen = np.sort(rng.choice(eligible, size=m, replace=False))
        seeds = rng.randint(np.iinfo(np.int32).max, size=m)
        jobs = []
        for t, seed in zip(chosen, seeds):
            task = tasks[int(t)]
            Xt, yt = task.X_support, task.y_support
            if self.use_query:
                Xt = np.concatenate([Xt, task.X_query])
                yt = np.concatenate([yt, task.y_query])
            yt = np.asarray(yt) if self.classes_ is not None else np.asarray(yt, dtype=np.float64)
            jobs.append(delayed(_fit_one)(estimator, Xt, yt, seed))
        self.models_ = Parallel(n_jobs=self.n_jobs)(jobs)
        self.task_indices_ = chosen
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def fit_tasks(self, tasks) -> TaskModels:
        """Same as fit(tasks)."""
        return self.fit(tasks)

    def design(self, X) -> np.ndarray:
        """(n, n_basis): column i is model i's prediction."""
        if X.shape[0] == 0:
            return np.zeros((0, self.n_basis), dtype=X.dtype)
        if getattr(self, "classes_", None) is not None:
            return np.hstack([_aligned_proba(model, X, self.classes_)[:, 1:] for model in self.models_])
        return np.column_stack([np.asarray(model.predict(X), dtype=X.dtype) for model in self.models_])


def _class_labels(tasks, estimator) -> np.ndarray:
    """The sorted labels of a classification TaskSet (support and query); anything else, or a
    classifier without predict_proba, is a clear error."""
    if not tasks.is_classification:
        raise TypeError(
            "TaskModels with a classifier needs tasks with integer class labels; these tasks hold float "
            "targets (use a regressor as the estimator)"
        )
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(
            f"TaskModels needs a classifier with predict_proba; {type(estimator).__name__} has none "
            "(wrap it in sklearn.calibration.CalibratedClassifierCV)"
        )
    labels = np.unique(np.concatenate([tasks.y_support, tasks.y_query]))
    if labels.size < 2:
        raise ValueError(
            f"TaskModels with a classifier needs two or more labels over the tasks; they hold only {labels.tolist()}"
        )
    return labels


def _aligned_proba(model, X, classes) -> np.ndarray:
    """(n, K) probabilities of ``classes``; labels the model never saw get 0."""
    out = np.zeros((X.shape[0], classes.size), dtype=X.dtype)
    out[:, np.searchsorted(classes, model.classes_)] = model.predict_proba(X)
    return out
