"""Baselines that every benchmark table shows next to the meta-learners.

- ``PerTaskRidge``: the same basis, a ridge fit on each task's support points alone (no
  meta-learning): what a meta-learner must beat to be worth it.
- ``PooledRidge``: one ridge model on the same basis fit to every training task pooled, used
  unchanged for every new task: what ignoring task identity gives.
- ``Oracle``: the noise-free target of each task, where the task family knows it (the floor).

They follow the meta-learner API (``fit(tasks)``, ``adapt(X, y)``, ``evaluate(tasks)``) so the
harness treats them like any learner.  Per-task work is batched over tasks of equal support
size (numpy, no Python loop over tasks).

Why one module of ~400 lines: three small baselines and the shared batching helper they use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from metafast._validation import check_positive_float, check_X, check_y
from metafast.bench._skip import Unavailable
from metafast.learners._base import MetaLearner, check_tasks
from metafast.tasks._taskset import TaskSet


# ---------------------------------------------------------------------------------- the oracle seam
def noise_free_target(family: str, infos: Sequence[dict], X: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """Noise-free targets f_t(x) of packed tasks, or None when they are not known.

    Rows ``offsets[t]:offsets[t+1]`` of X belong to task t, whose generating parameters are
    ``infos[t]`` (a TaskSet's ``info``).  This is the ONE place that knows how to compute a task
    family's true function: it asks the tasks module (``metafast.tasks.noise_free(infos, X,
    offsets)``, where that exists) and otherwise knows the built-in ``sinusoid``.
    """
    import metafast.tasks as tasks_api

    X = np.asarray(X, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    api = getattr(tasks_api, "noise_free", None)
    if api is not None:
        try:
            return np.asarray(api(infos, X, offsets), dtype=np.float64)
        except (ValueError, KeyError, TypeError):
            pass  # tasks without generating parameters (real data, plugin families)
    if family == "sinusoid":
        try:
            amp = np.array([info["amplitude"] for info in infos], dtype=np.float64)
            phase = np.array([info["phase"] for info in infos], dtype=np.float64)
        except KeyError:
            return None
        task_of_row = np.repeat(np.arange(len(infos)), np.diff(offsets))
        return amp[task_of_row] * np.sin(X[:, 0] - phase[task_of_row])
    return None


# ---------------------------------------------------------------------------------- batched ridge
def _ridge_batch(Phi: np.ndarray, y: np.ndarray, alpha: float, fit_intercept: bool):
    """Ridge weights of G tasks of equal size: Phi (G, n, m), y (G, n) -> W (G, m), b (G,).

    Uses the dual (n x n) system when n < m and the primal (m x m) one otherwise; both give
    the same minimiser of ||y - Phi w - b||^2 + alpha ||w||^2 (intercept not penalised).
    """
    G, n, m = Phi.shape
    if fit_intercept:
        phi_mean = Phi.mean(axis=1)
        y_mean = y.mean(axis=1)
        Phi = Phi - phi_mean[:, None, :]
        y = y - y_mean[:, None]
    if G == 1 and n >= m:  # one big task (the pooled model): plain 2-D BLAS products
        P = Phi[0]
        W = np.linalg.solve(P.T @ P + alpha * np.eye(m), P.T @ y[0])[None, :]
    elif n < m:
        K = Phi @ Phi.transpose(0, 2, 1) + alpha * np.eye(n)
        W = np.einsum("gnm,gn->gm", Phi, np.linalg.solve(K, y[..., None])[..., 0])
    else:
        A = Phi.transpose(0, 2, 1) @ Phi + alpha * np.eye(m)
        W = np.linalg.solve(A, np.einsum("gnm,gn->gm", Phi, y)[..., None])[..., 0]
    b = y_mean - np.einsum("gm,gm->g", phi_mean, W) if fit_intercept else np.zeros(G)
    return W, b


def _ridge_tasks(Phi: np.ndarray, y: np.ndarray, offsets: np.ndarray, alpha: float, fit_intercept: bool):
    """Per-task ridge over packed rows: tasks grouped by support size, each group in one batch."""
    sizes = np.diff(offsets)
    T, m = len(sizes), Phi.shape[1]
    W, b = np.zeros((T, m)), np.zeros(T)
    for n in np.unique(sizes):  # a loop over distinct sizes, not over tasks
        ids = np.flatnonzero(sizes == n)
        if n == 0:
            continue  # no data: predict 0
        rows = offsets[ids][:, None] + np.arange(n)
        W[ids], b[ids] = _ridge_batch(Phi[rows], y[rows], alpha, fit_intercept)
    return W, b


class BasisRegressor(RegressorMixin, BaseEstimator):
    """A fitted linear model on a fitted basis: predict(X) = design(X) @ coef_ + intercept_."""

    def __init__(self, basis=None, coef=None, intercept=0.0):
        self.basis = basis
        self.coef = coef
        self.intercept = intercept

    def fit(self, X=None, y=None):
        """Already fitted by the meta-learner that made it; kept for the scikit-learn API."""
        self.coef_ = np.asarray(self.coef, dtype=np.float64)
        self.intercept_ = float(self.intercept)
        self.n_features_in_ = self.basis.n_features_in_
        return self

    def predict(self, X, return_std: bool = False):
        Phi = self.basis.design(X).astype(np.float64, copy=False)
        mean = Phi @ self.coef_ + self.intercept_
        if return_std:
            raise ValueError(f"{type(self).__name__} is not Bayesian: it has no predictive std")
        return mean


class _BasisBaseline(MetaLearner):
    """Shared set-up of the ridge baselines: basis (default 40 RBFs), alpha, intercept."""

    def __init__(self, basis=None, alpha: float | str = 1.0, fit_intercept: bool = True):
        self.basis = basis
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _setup(self, tasks: TaskSet) -> TaskSet:
        tasks = check_tasks(tasks)
        if isinstance(self.alpha, str):
            if self.alpha != "tuned" or not isinstance(self, PerTaskRidge):
                allowed = "a positive float or 'tuned'" if isinstance(self, PerTaskRidge) else "a positive float"
                raise ValueError(f"parameter 'alpha' must be {allowed}; got {self.alpha!r}")
        else:
            self.alpha_ = check_positive_float(self.alpha, "alpha", allow_zero=False)
        self.basis_ = self._init_basis(tasks, default="rbf", n_basis=40)
        self.n_features_in_ = tasks.n_features
        return tasks

    def _design(self, X) -> np.ndarray:
        """float64 design matrix with subnormal entries (|v| < 2.2e-308, e.g. far RBF tails) set
        to 0: they change no result but make BLAS products many times slower."""
        Phi = np.array(self.basis_.design(X), dtype=np.float64)
        Phi[np.abs(Phi) < np.finfo(np.float64).tiny] = 0.0
        return Phi


ALPHA_GRID = tuple(10.0 ** np.arange(-4, 3))  # candidate penalties for alpha="tuned"
TUNING_TASKS = 500  # training tasks used to pick alpha


class PerTaskRidge(_BasisBaseline):
    """Ridge on the same basis, fit to each task's support points alone (no meta-learning).

    ``fit`` fits the basis on the training tasks' inputs (so it is the same basis the
    meta-learners start from) and, with ``alpha="tuned"``, picks the penalty from ``ALPHA_GRID``
    that gives the lowest query MSE on (up to 500 of) the training tasks: a fair, tuned baseline.
    Every new task is then a separate ridge regression with that one penalty (``alpha_``).
    """

    def fit(self, tasks, y=None):
        tasks = self._setup(tasks)
        if self.alpha == "tuned":
            tune = tasks if len(tasks) <= TUNING_TASKS else tasks[np.arange(TUNING_TASKS)]
            if int(tune.query_sizes.sum()) == 0:
                raise ValueError("alpha='tuned' needs training tasks with query points")
            scores = []
            for alpha in ALPHA_GRID:
                self.alpha_ = alpha
                mean, _ = self._predict_tasks(tune)
                scores.append(float(np.mean((np.asarray(tune.y_query, dtype=np.float64) - mean) ** 2)))
            self.alpha_ = ALPHA_GRID[int(np.argmin(scores))]
        self._mf_fitted = True
        return self

    def adapt(self, X, y) -> BasisRegressor:
        self._check_fitted()
        X = check_X(X, "X", n_features=self.n_features_in_, min_samples=1)
        y = check_y(y, "y", n_samples=X.shape[0], dtype=np.float64)
        W, b = _ridge_tasks(self._design(X), y, np.array([0, X.shape[0]]), self.alpha_, self.fit_intercept)
        return BasisRegressor(self.basis_, W[0], b[0]).fit()

    def _predict_tasks(self, tasks: TaskSet):
        W, b = _ridge_tasks(
            self._design(tasks.X_support),
            np.asarray(tasks.y_support, dtype=np.float64),
            tasks.support_offsets,
            self.alpha_,
            self.fit_intercept,
        )
        task_of_row = np.repeat(np.arange(len(tasks)), tasks.query_sizes)
        Phi_q = self._design(tasks.X_query)
        return np.einsum("rm,rm->r", Phi_q, W[task_of_row]) + b[task_of_row], None


class PooledRidge(_BasisBaseline):
    """One ridge model on the same basis fit to every training point of every task, pooled.

    It ignores which task a point came from, so it predicts the same function for every new
    task and ``adapt`` does not use the support points.
    """

    def fit(self, tasks, y=None):
        tasks = self._setup(tasks)
        X = np.concatenate([tasks.X_support, tasks.X_query])
        y = np.concatenate([tasks.y_support, tasks.y_query]).astype(np.float64)
        W, b = _ridge_tasks(self._design(X), y, np.array([0, X.shape[0]]), self.alpha_, self.fit_intercept)
        self.coef_, self.intercept_ = W[0], float(b[0])
        self._mf_fitted = True
        return self

    def adapt(self, X=None, y=None) -> BasisRegressor:
        self._check_fitted()
        return BasisRegressor(self.basis_, self.coef_, self.intercept_).fit()

    def _predict_tasks(self, tasks: TaskSet):
        return self._design(tasks.X_query) @ self.coef_ + self.intercept_, None


class Oracle(MetaLearner):
    """The noise-free target of each task (known for synthetic families): the error floor.

    Needs the tasks' generating parameters (``TaskSet.info``), so it cannot ``adapt`` from
    points alone; ``evaluate`` works on TaskSets of ``family``.
    """

    def __init__(self, family: str = "sinusoid"):
        self.family = family

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        if self._targets(tasks, tasks.X_support, tasks.support_offsets) is None:
            raise Unavailable(f"the noise-free target of task family {self.family!r} is not known")
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def adapt(self, X, y):
        raise TypeError("Oracle needs a task's generating parameters, not its points: use evaluate(tasks)")

    def _targets(self, tasks: TaskSet, X, offsets):
        return noise_free_target(self.family, tasks.info, X, offsets)

    def _predict_tasks(self, tasks: TaskSet):
        mean = self._targets(tasks, tasks.X_query, tasks.query_offsets)
        if mean is None:
            raise Unavailable(f"the noise-free target of task family {self.family!r} is not known")
        return mean, None


# ---------------------------------------------------------------------------------- classification
def _summarise(per_task: np.ndarray, key: str) -> dict:
    """Mean over tasks and 1.96 x its standard error (as the learners' evaluate reports it)."""
    n = per_task.shape[0]
    sem = per_task.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
    return {key: float(per_task.mean()), key + "_ci95": float(1.96 * sem), "n_tasks": int(n)}


class PerTaskCentroid(MetaLearner):
    """Few-shot classification without meta-learning: each query point gets the label of the
    nearest class mean (Euclidean, raw features) of its own task's support points.

    Vectorised over tasks: class means by one grouped sum, distances one candidate class at a time.
    """

    def __init__(self, basis=None):
        self.basis = basis  # accepted for a uniform factory signature; raw features are used

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def adapt(self, X, y):
        from sklearn.neighbors import NearestCentroid

        self._check_fitted()
        return NearestCentroid().fit(check_X(X, "X", n_features=self.n_features_in_), np.asarray(y))

    def predict_tasks(self, tasks: TaskSet) -> np.ndarray:
        """Predicted label of every packed query row."""
        self._check_fitted()
        T = len(tasks)
        labels, lab_idx = np.unique(np.asarray(tasks.y_support), return_inverse=True)
        L = labels.shape[0]
        task_s = np.repeat(np.arange(T), tasks.support_sizes)
        keys, inv = np.unique(task_s * L + lab_idx, return_inverse=True)  # one key per (task, class)
        Xs = np.asarray(tasks.X_support, dtype=np.float64)
        centroids = np.zeros((keys.shape[0], Xs.shape[1]))
        np.add.at(centroids, inv, Xs)
        centroids /= np.bincount(inv, minlength=keys.shape[0])[:, None]
        start = np.searchsorted(keys // L, np.arange(T))  # classes of task t: start[t]:end[t]
        end = np.searchsorted(keys // L, np.arange(T), side="right")
        task_q = np.repeat(np.arange(T), tasks.query_sizes)
        if np.any(end[task_q] == start[task_q]):
            bad = int(task_q[end[task_q] == start[task_q]][0])
            raise ValueError(f"task {bad} has query points but no support points to classify them with")
        Xq = np.asarray(tasks.X_query, dtype=np.float64)
        best = np.full(Xq.shape[0], np.inf)
        pred_key = np.zeros(Xq.shape[0], dtype=np.int64)
        for c in range(int((end - start).max(initial=0))):  # candidate classes, not tasks
            k = start[task_q] + c
            valid = k < end[task_q]
            k = np.where(valid, k, start[task_q])
            d = np.einsum("nd,nd->n", Xq - centroids[k], Xq - centroids[k])
            better = valid & (d < best)
            best[better], pred_key[better] = d[better], k[better]
        return labels[keys[pred_key] % L]

    def evaluate(self, tasks) -> dict:
        """Mean query accuracy over tasks with its 95% CI ("accuracy", "accuracy_ci95", "n_tasks")."""
        from metafast.learners._base import per_task_mean

        tasks = check_tasks(tasks)
        correct = (self.predict_tasks(tasks) == np.asarray(tasks.y_query)).astype(np.float64)
        keep = tasks.query_sizes > 0
        return _summarise(per_task_mean(correct, tasks.query_offsets)[keep], "accuracy")


# ---------------------------------------------------------------------------------- classification
class _ClassificationBaseline(MetaLearner):
    """A few-shot classifier baseline scored like MetaClassifier: accuracy, nll and ece per query
    set (``classification_metrics``).  Subclasses give the log probabilities of one task's query
    rows over its classes (``_task_log_proba``)."""

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.n_features_in_ = tasks.n_features
        self._mf_fitted = True
        return self

    def _classes(self, task) -> np.ndarray:
        return np.unique(task.y_support)

    def evaluate(self, tasks) -> dict:
        from metafast.learners.classify.estimator import classification_metrics

        self._check_fitted()
        tasks = check_tasks(tasks)
        rows, codes, ncls = [], [], []
        c_max = 1
        for task in tasks:
            classes = self._classes(task)
            pos = np.searchsorted(classes, task.y_query)
            if task.n_query and (
                np.any(pos >= classes.size) or np.any(classes[np.minimum(pos, classes.size - 1)] != task.y_query)
            ):
                raise ValueError("a query label is absent from its task's support set")
            L = self._task_log_proba(task, classes) if task.n_query else np.zeros((0, classes.size))
            rows.append(L)
            codes.append(pos)
            ncls.append(classes.size)
            c_max = max(c_max, classes.size)
        Z = np.full((sum(r.shape[0] for r in rows), c_max), -np.inf)
        i = 0
        for L in rows:
            Z[i : i + L.shape[0], : L.shape[1]] = L
            i += L.shape[0]
        Z = np.maximum(Z, -1e300)  # finite scores; masked columns stay out of the softmax
        return classification_metrics(
            Z, np.concatenate(codes).astype(np.int64), tasks.query_offsets, np.asarray(ncls, dtype=np.int64)
        )


class PerEpisodeLogistic(_ClassificationBaseline):
    """scikit-learn LogisticRegression (default C = 1) fitted on each task's support set alone, on
    the raw features: the usual "no meta-learning" baseline.  A one-class support predicts it.
    With shared labels, classes missing from a task's support get probability ``floor`` each (the
    rest renormalised), so log loss stays finite."""

    def __init__(self, basis=None, C: float = 1.0, floor: float = 1e-3):
        self.basis = basis
        self.C = C
        self.floor = floor

    def fit(self, tasks, y=None):
        tasks = check_tasks(tasks)
        self.classes_ = (
            np.unique(np.concatenate([tasks.y_support, tasks.y_query])) if tasks.label_setting == "shared" else None
        )
        return super().fit(tasks)

    def _classes(self, task):
        return np.unique(task.y_support) if self.classes_ is None else self.classes_

    def _task_log_proba(self, task, classes):
        from sklearn.linear_model import LogisticRegression

        seen = np.unique(task.y_support)
        if seen.size < 2:
            P = np.ones((task.n_query, 1))
        else:
            P = (
                LogisticRegression(C=self.C, max_iter=1000)
                .fit(task.X_support, task.y_support)
                .predict_proba(task.X_query)
            )
        if seen.size == classes.size:
            return np.log(P)
        full = np.full((task.n_query, classes.size), self.floor)
        full[:, np.searchsorted(classes, seen)] = P * (1 - self.floor * (classes.size - seen.size))
        return np.log(full)


class PooledClassifier(_ClassificationBaseline):
    """One LogisticRegression on every training row pooled, used unchanged for every task (shared
    label setting only: in episodes labels mean nothing across tasks)."""

    _max_iter = 1000

    def __init__(self, basis=None, C: float = 1.0):
        self.basis = basis
        self.C = C

    def fit(self, tasks, y=None):
        from sklearn.linear_model import LogisticRegression

        tasks = check_tasks(tasks)
        if tasks.label_setting != "shared":
            raise Unavailable("the pooled classifier needs shared labels (labels are re-drawn in episodes)")
        self._fit_inputs(tasks)
        full = tasks.all_rows()
        self.model_ = LogisticRegression(C=self.C, max_iter=self._max_iter).fit(
            self._inputs(full.X_support), full.y_support
        )
        return super().fit(tasks)

    def _fit_inputs(self, tasks) -> None:
        """Fit whatever maps raw rows to the model's inputs (nothing here: the raw rows)."""

    def _inputs(self, X):
        return X

    def _classes(self, task):
        return self.model_.classes_

    def _task_log_proba(self, task, classes):
        return self.model_.predict_log_proba(self._inputs(task.X_query))


class OracleClassifier(_ClassificationBaseline):
    """The true class probabilities of each task (the ``logistic`` family knows its weights)."""

    def __init__(self, family: str = "logistic"):
        self.family = family

    def fit(self, tasks, y=None):
        if self.family != "logistic":
            raise Unavailable(f"no oracle probabilities for task family {self.family!r}")
        return super().fit(tasks)

    def _classes(self, task):
        return np.arange(np.asarray(task.info["weights"]).shape[0])

    def _task_log_proba(self, task, classes):
        from metafast.tasks.classes import logistic_features

        Z = logistic_features(task.X_query) @ np.asarray(task.info["weights"], dtype=np.float64).T
        Z -= Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
