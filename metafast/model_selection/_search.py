"""Hyperparameter search over tasks: TaskGridSearchCV and TaskRandomizedSearchCV.

scikit-learn's search, with tasks in place of rows: candidates come from ParameterGrid /
ParameterSampler, each is cross-validated with TaskKFold (or any task splitter), scored on the
held-out tasks through the learner's own ``evaluate`` (greater is better; losses negated), and
the best one is refitted on every task.  ``cv_results_`` has scikit-learn's keys, so
``pandas.DataFrame(search.cv_results_)`` reads it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import ParameterGrid, ParameterSampler

from metafast.learners._base import check_tasks
from metafast.model_selection._scoring import check_scoring, score_all
from metafast.model_selection._split import task_splits
from metafast.model_selection._validation import fit_and_score, fold_tasksets, run_jobs, warn_or_raise_failures
from metafast.tasks._taskset import TaskSet


class _TaskSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Shared fit / results / refit of the task searches; subclasses list the candidates."""

    def _candidates(self) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _refit_metric(self, scorers: dict, multimetric: bool) -> str | None:
        if self.refit is False:
            return None
        if not multimetric:
            return "score"
        if isinstance(self.refit, str) and self.refit in scorers:
            return self.refit
        raise ValueError(
            f"parameter 'refit' must name one of the scorers {sorted(scorers)} when several are "
            f"given (or be False); got {self.refit!r}"
        )

    def fit(self, tasks: TaskSet, y: Any = None, groups: Any = None) -> _TaskSearchCV:
        """Cross-validate every candidate over ``tasks`` and refit the best one on all of them.

        ``groups``: per-task labels or a key of ``tasks.info``; tasks sharing a label share a fold.
        """
        ts = check_tasks(tasks)
        scorers, multimetric = check_scoring(self.scoring, ts)
        refit_metric = self._refit_metric(scorers, multimetric)
        candidates = self._candidates()
        for params in candidates:  # unknown keys fail now, in scikit-learn's words
            clone(self.estimator).set_params(**params)
        splits = task_splits(self.cv, ts, groups)
        folds = fold_tasksets(ts, splits)
        kwargs = dict(return_train_score=self.return_train_score, error_score=self.error_score)
        calls = (
            (fit_and_score, (self.estimator, train, test, params, scorers), kwargs)
            for params in candidates
            for train, test in folds
        )
        n_fits = len(candidates) * len(folds)
        results = run_jobs(
            calls,
            n_fits,
            self.n_jobs,
            self.verbose,
            f"{type(self).__name__}: {len(candidates)} candidates x {len(folds)} folds",
        )
        warn_or_raise_failures(results, self.error_score)
        self.cv_results_ = self._results(candidates, results, len(folds), scorers, multimetric)
        self.multimetric_ = multimetric
        self.scorer_ = scorers if multimetric else scorers["score"]
        self.n_splits_ = len(folds)
        if refit_metric is not None:
            self.best_index_ = int(np.argmin(self.cv_results_[f"rank_test_{refit_metric}"]))
            self.best_params_ = candidates[self.best_index_]
            self.best_score_ = float(self.cv_results_[f"mean_test_{refit_metric}"][self.best_index_])
            start = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(ts)
            self.refit_time_ = time.perf_counter() - start
        return self

    def _results(self, candidates: list[dict], results: list, n_folds: int, scorers: dict, multimetric: bool) -> dict:
        n = len(candidates)
        out: dict[str, Any] = {}
        for key in ("fit_time", "score_time"):
            t = np.array([r[key] for r in results]).reshape(n, n_folds)
            out[f"mean_{key}"], out[f"std_{key}"] = t.mean(axis=1), t.std(axis=1)
        names = sorted({k for p in candidates for k in p})
        for name in names:
            col = np.ma.MaskedArray(np.empty(n, dtype=object), mask=True)
            for i, p in enumerate(candidates):
                if name in p:
                    col[i] = p[name]
            out[f"param_{name}"] = col
        out["params"] = candidates
        sets = ("test", "train") if self.return_train_score else ("test",)
        for name in scorers:
            key = name if multimetric else "score"
            for which in sets:
                s = np.array([r[f"{which}_scores"][name] for r in results], dtype=np.float64).reshape(n, n_folds)
                for k in range(n_folds):
                    out[f"split{k}_{which}_{key}"] = s[:, k]
                with np.errstate(invalid="ignore"):
                    out[f"mean_{which}_{key}"] = s.mean(axis=1)
                    out[f"std_{which}_{key}"] = s.std(axis=1)
            mean = out[f"mean_test_{key}"]
            # greater is better; a candidate with a failed fold (NaN) ranks last
            out[f"rank_test_{key}"] = rankdata(-np.where(np.isnan(mean), -np.inf, mean), method="min").astype(np.int32)
        return out

    # ------------------------------------------------------------------ the refitted best model
    def _best(self):
        if not hasattr(self, "best_estimator_"):
            raise NotFittedError(
                f"This {type(self).__name__} has no refitted best_estimator_: call fit(tasks) "
                "with refit=True (or a metric name) first"
            )
        return self.best_estimator_

    def adapt(self, X, y):
        """``best_estimator_.adapt(X, y)``: a fitted per-task model for a new task."""
        return self._best().adapt(X, y)

    def evaluate(self, tasks: TaskSet) -> dict:
        """``best_estimator_.evaluate(tasks)``."""
        return self._best().evaluate(tasks)

    def score(self, tasks: TaskSet, y: Any = None) -> float:
        """The refit scorer of the best model on ``tasks`` (greater is better)."""
        best = self._best()
        if self.multimetric_:
            return score_all(best, tasks, {self.refit: self.scorer_[self.refit]})[self.refit]
        return score_all(best, tasks, {"score": self.scorer_})["score"]


class TaskGridSearchCV(_TaskSearchCV):
    """Exhaustive search over a parameter grid, cross-validated over tasks.

    Parameters
    ----------
    estimator : an unfitted meta-learner (MetaBayes, MetaRidge, ...; cloned for every fit).
    param_grid : dict or list of dicts, as in scikit-learn's GridSearchCV; nested parameters
        use ``__`` (``basis__n_basis``, ``basis__rbf__length_scale`` for a Pipeline basis).
    scoring : metric name of the learner's ``evaluate`` ("mse", "nll", "accuracy", ...), a
        callable ``scorer(estimator, tasks) -> float``, or a list/dict of them.  Greater is
        better: losses (mse, nll, ece) are negated, so ``best_score_`` is e.g. minus the MSE.
        None: "mse" ("accuracy" for classification tasks).
    cv : int (TaskKFold(cv)), TaskKFold, scikit-learn splitter or (train, test) task indices.
    n_jobs : joblib workers over the (candidate, fold) fits.
    refit : True (or the scorer name when there are several): refit the best candidate on
        every task as ``best_estimator_``; False: only ``cv_results_``.
    verbose : > 0 shows a tqdm progress bar over the fits (on a terminal).
    error_score : score of a fit that raises (a FitFailedWarning says so), or "raise".
    return_train_score : also score the training tasks (their query sets) in each fold.

    Attributes
    ----------
    cv_results_ : dict of arrays (scikit-learn's keys: params, param_<name>, split<k>_test_score,
        mean/std/rank_test_score, mean/std_fit_time, mean/std_score_time).
    best_index_, best_params_, best_score_ (mean cross-validated score), best_estimator_,
    refit_time_, n_splits_, scorer_, multimetric_.
    """

    def __init__(
        self,
        estimator: Any,
        param_grid: Any,
        *,
        scoring: Any = None,
        cv: Any = 5,
        n_jobs: Any = None,
        refit: Any = True,
        verbose: int = 0,
        error_score: Any = np.nan,
        return_train_score: bool = False,
    ):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.cv = cv
        self.n_jobs = n_jobs
        self.refit = refit
        self.verbose = verbose
        self.error_score = error_score
        self.return_train_score = return_train_score

    def _candidates(self) -> list[dict]:
        return list(ParameterGrid(self.param_grid))


class TaskRandomizedSearchCV(_TaskSearchCV):
    """Random search: ``n_iter`` candidates drawn from ``param_distributions`` (lists are
    sampled uniformly, scipy distributions by their ``rvs``), as scikit-learn's
    RandomizedSearchCV; reproducible with ``random_state``.  Other parameters as
    :class:`TaskGridSearchCV`."""

    def __init__(
        self,
        estimator: Any,
        param_distributions: Any,
        *,
        n_iter: int = 10,
        scoring: Any = None,
        cv: Any = 5,
        n_jobs: Any = None,
        refit: Any = True,
        verbose: int = 0,
        random_state: Any = None,
        error_score: Any = np.nan,
        return_train_score: bool = False,
    ):
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.scoring = scoring
        self.cv = cv
        self.n_jobs = n_jobs
        self.refit = refit
        self.verbose = verbose
        self.random_state = random_state
        self.error_score = error_score
        self.return_train_score = return_train_score

    def _candidates(self) -> list[dict]:
        return list(ParameterSampler(self.param_distributions, self.n_iter, random_state=self.random_state))
