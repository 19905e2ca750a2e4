"""MetaBayes on new tasks: ``adapt``, ``adapt_predict`` and ``predict_tasks``.

A mixin of ``MetaBayes`` (the fit lives in ``bayes``): exact Bayesian conditioning of the fitted
prior on a task's support points, one kernel call per task (``metafast._kernels._bayes``), or the
mixture prior's conditioning when ``n_components > 1``.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _bayes
from metafast._validation import check_X, check_y
from metafast.learners._arrays import as_f64, fast_y
from metafast.learners._base import check_tasks
from metafast.learners.bayes._blocks import chunk_design as _chunk_design
from metafast.learners.bayes._task import BayesTaskRegressor
from metafast.parallel import effective_n_threads, with_one_blas_thread
from metafast.tasks._taskset import TaskSet


class BayesPredictMixin:
    """What a fitted MetaBayes does with a new task (``_prior``, ``basis_``, ``_y_scale`` and the
    public attributes set by the fit)."""

    def adapt(self, X, y) -> BayesTaskRegressor:
        """A fitted BayesTaskRegressor for a new task with support points (X, y).

        Its posterior is computed by one kernel call (the dual n x n form when n < m, the primal
        m x m form otherwise, as in ``evaluate``); it holds a reference to ``basis_``, which no
        per-task estimator modifies.
        """
        return self._fitted_view()._adapt(X, y)

    def _adapt(self, X, y) -> BayesTaskRegressor:
        if hasattr(self, "mixture_"):
            Xc = check_X(X, "X", n_features=self.basis_.n_features_in_)
            return self.mixture_.task_regressor(self.basis_, Xc, check_y(y, "y", n_samples=Xc.shape[0]))
        Phi = as_f64(self.basis_.design(X))
        yc = fast_y(y, Phi.shape[0], finite_checked_by_caller=True)
        m = Phi.shape[1]
        coef, cov = np.empty(m), np.empty((m, m))
        _check_status(_bayes.adapt_one(self._one_task_prior(), Phi, yc, coef, cov), yc)
        reg = BayesTaskRegressor(
            basis=self.basis_, prior_mean=self.mean_, prior_covariance=self.covariance_, noise_var=self.noise_var_
        )
        return reg._set_posterior(coef, cov, Phi.shape[0])

    def adapt_predict(self, X, y, X_query, return_std: bool = False):
        """Adapt to (X, y) and predict X_query in one kernel call (the fastest one-task path).

        Equals ``adapt(X, y).predict(X_query, return_std)`` (to round-off) without forming the
        per-task estimator or the posterior covariance: the predictive mean, and with
        ``return_std`` the predictive std (observation noise included).
        """
        return self._fitted_view()._adapt_predict(X, y, X_query, return_std)

    def _adapt_predict(self, X, y, X_query, return_std: bool):
        if hasattr(self, "mixture_"):
            return self._adapt(X, y).predict(X_query, return_std=return_std)
        Phi, Phi_q = self._support_query_design(X, X_query)
        yc = fast_y(y, Phi.shape[0], finite_checked_by_caller=True)
        nq = Phi_q.shape[0]
        mean, std = np.empty(nq), np.empty(nq if return_std else 0)
        _check_status(
            _bayes.adapt_predict(
                self._one_task_prior(), Phi, yc, Phi_q, bool(return_std), np.empty(Phi.shape[1]), mean, std
            ),
            yc,
        )
        return (mean, std) if return_std else mean

    def _support_query_design(self, X, X_query) -> tuple[np.ndarray, np.ndarray]:
        """float64 designs of X and X_query.  Design is row-wise (the basis contract), so two
        float64 arrays of the same width go through one basis call (its fixed cost is a good part
        of a one-task adapt); anything else, or an input the basis rejects, takes two calls, so
        errors name the rows of the argument they are in."""
        if (
            type(X) is np.ndarray
            and type(X_query) is np.ndarray
            and X.ndim == 2
            and X_query.ndim == 2
            and X.dtype == np.float64
            and X_query.dtype == np.float64
            and X.shape[1] == X_query.shape[1]
        ):
            try:
                Phi = as_f64(self.basis_.design(np.concatenate((X, X_query))))
            except ValueError:
                pass  # redone below, argument by argument, for the error message
            else:
                n = X.shape[0]
                return Phi[:n], Phi[n:]
        return as_f64(self.basis_.design(X)), as_f64(self.basis_.design(X_query))

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_one_task_cache", None)  # derived from _prior; rebuilt on first use
        return state

    def _fitted_view(self) -> BayesPredictMixin:
        # the views share one slot caching the one-task prior (see _one_task_prior)
        self.__dict__.setdefault("_one_task_cache", [None])
        return super()._fitted_view()

    def _one_task_prior(self) -> _bayes.OneTaskPrior:
        """The fitted prior in float64 for the one-task kernels (mu, Sigma, Sigma^{-1},
        Sigma^{-1} mu, noise variance, y scale); built once per fitted prior (O(m^3)).

        Kept in a one-slot list shared by the fitted views and keyed on the prior object, which
        fit and partial_fit replace (never modify), so a refit invalidates it; concurrent callers
        at worst build the same object twice.
        """
        slot = self.__dict__.get("_one_task_cache")
        cached = slot[0] if slot else None
        if cached is None or cached[0] is not self._prior:
            mu, Sigma, Sinv, h, _, s2, diag = self._prior.kernel_args(np.float64)
            cached = (self._prior, _bayes.OneTaskPrior(mu, Sigma, Sinv, h, s2, diag, float(self._y_scale)))
            if slot:
                slot[0] = cached
        return cached[1]

    @with_one_blas_thread
    def _predict_tasks(self, tasks: TaskSet):
        """Predictive mean and std at every query row, each task conditioned on its support."""
        if hasattr(self, "mixture_"):
            Phi_s, Phi_q = self.basis_.design(tasks.X_support), self.basis_.design(tasks.X_query)
            return self.mixture_.predict_tasks(
                Phi_s, np.asarray(tasks.y_support, dtype=np.float64), tasks.support_offsets, Phi_q, tasks.query_offsets
            )
        n_threads = effective_n_threads(self.n_jobs)  # local: concurrent predict calls share nothing
        Phi, ys, off = _chunk_design(self.basis_, tasks, self._y_scale)
        Phi_q = np.ascontiguousarray(self.basis_.design(tasks.X_query), dtype=Phi.dtype)
        mu, Sigma, Sinv, h, _, s2, sigma_diag = self._prior.kernel_args(Phi.dtype)
        T = len(tasks)
        means = np.empty((T, Phi.shape[1]), dtype=Phi.dtype)
        pmean = np.empty(Phi_q.shape[0], dtype=Phi.dtype)
        pvar = np.empty(Phi_q.shape[0], dtype=Phi.dtype)
        status = np.empty(T, dtype=np.intc)
        _bayes.predict_tasks(
            Phi,
            ys,
            off,
            Phi_q,
            tasks.query_offsets,
            mu,
            Sigma,
            Sinv,
            h,
            s2,
            sigma_diag,
            n_threads,
            means,
            pmean,
            pvar,
            status,
        )
        if (status < 0).any():
            raise FloatingPointError(f"{int((status < 0).sum())} task(s) had a singular posterior")
        c = self._y_scale
        return pmean.astype(np.float64) * c, np.sqrt(pvar.astype(np.float64)) * c

    def predict_tasks(self, tasks: TaskSet) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the posterior predictive at every packed query row of ``tasks``."""
        return self._fitted_view()._predict_tasks(check_tasks(tasks))


def _check_status(status: int, y: np.ndarray) -> None:
    """Raise for a failed one-task kernel: -2 is a non-finite target (check_y names it)."""
    if status == -2:
        check_y(y, "y")
    if status < 0:
        raise FloatingPointError(
            "the task's posterior is singular even after jitter: the basis or the targets are "
            "degenerate (check for huge magnitudes)"
        )
