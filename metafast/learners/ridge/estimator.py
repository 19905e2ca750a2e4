"""MetaRidge: biased ridge regression around a meta-learned mean (Denevi et al. 2018, 2019).

Each task is fit by ridge regression pulled towards a shared mean h instead of towards zero,

    w_t(h) = argmin_w ||Phi_t w - y_t||^2 + alpha (w - h)^T D^{-1} (w - h),

and meta-training learns h (closed form), alpha (leave-one-out or held-out points over a grid),
optionally the diagonal metric D (``metric="diag"``) and the basis hyperparameters
(``learn_basis=True``).  See docs/metaridge.md for the equations and the choices made.

Every per-task step runs in metafast._kernels._ridge over the packed TaskSet (no Python loop
over tasks); Python only loops over alphas, stream chunks and optimiser iterations.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _ridge
from metafast._memory import check_allocation
from metafast._validation import check_positive_float, check_positive_int
from metafast.learners._arrays import as_f64, fast_y
from metafast.learners._base import MetaLearner, check_regression, check_tasks, check_train_rows, training_view
from metafast.learners.ridge._dask import RidgeChunks, ridge_meta_stats
from metafast.learners.ridge._learn import RidgeMetricBasisMixin
from metafast.learners.ridge._math import gls_mean
from metafast.learners.ridge._source import _TaskSource, _threads_for
from metafast.learners.ridge._task import _EMPTY_1D, BiasedRidgeRegressor
from metafast.parallel import effective_n_threads, one_blas_thread
from metafast.tasks._taskset import TaskSet

__all__ = ["MetaRidge", "BiasedRidgeRegressor", "gls_mean"]

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


# ---------------------------------------------------------------------------- the meta-learner
class MetaRidge(RidgeMetricBasisMixin, MetaLearner):
    """Biased ridge meta-learner: learns the mean h (and alpha, a diagonal metric, the basis).

    Parameters
    ----------
    basis : BasisFamily, family name or None (``"rbf"`` with 40 functions)
        Fitted on the training tasks unless already fitted; never modified (see ``basis_``).
    alphas : float or sequence of floats
        Ridge strengths to choose from (like RidgeCV); a single value is used as given.
    cv : {"loo", "query"}
        How alpha is chosen: leave-one-out on the support sets (PRESS identity, one pass over
        the tasks, works on streams) or the query sets of the training tasks.
    mean : {"envelope", "split"}
        Closed form of h: ``"envelope"`` (default) minimises the summed Moreau envelopes of the
        support losses (GLS; needs no query sets); ``"split"`` minimises the query MSE after
        adapting on the support set (transfer risk, Denevi et al. 2018; needs query sets).
    metric : {None, "diag"}
        ``"diag"`` learns a per-basis-function prior scale D (mean 1): w ~ N(h, D/alpha) up to the
        noise level, by minimising the Moreau-envelope objective over D alternately with h.
    learn_basis : bool
        Optimise the basis's learnable parameters, log alpha and h jointly on the held-out
        loss (query sets, or LOO on the support sets when tasks have no query points).
    max_iter, tol : L-BFGS iterations and tolerance of the metric / basis optimisation.
    train_rows : {"all", "support"}
        Rows of each training task behind the closed-form statistics (envelope mean h, LOO
        choice of alpha, the metric): "all" (default) uses support and query rows together;
        "support" the support rows only.  The held-out objectives use the support/query split
        on purpose, whatever this says: ``cv="query"`` (scores alpha on the query sets),
        ``mean="split"`` (transfer risk) and ``learn_basis=True`` (query loss after adapting on
        the support).
    n_jobs : threads of the kernels (None = all cores).
    backend : {"threads", "dask"}
        "dask" computes the statistics on the workers of the active dask.distributed Client,
        where the chunks are built and kept (sources as for MetaBayes, ``metafast.distributed``):
        every pass of every option; per pass only O(m^2) numbers per alpha come back.
    random_state : MetaRidge is deterministic; accepted for API uniformity.
    verbose : int; > 0 shows a progress bar on the iterative fits.

    Attributes
    ----------
    basis_, prior_mean_ (h, shape (m,)), alpha_, prior_scale_ (sqrt of the metric, (m,)),
    metric_ (diag D), cv_scores_ (score of each alpha; empty when a single alpha is given), alphas_, n_iter_, n_tasks_,
    basis_loss_ (held-out loss trace of the basis learning), n_jitter_.
    """

    def __init__(
        self,
        basis=None,
        *,
        alphas=DEFAULT_ALPHAS,
        cv: str = "loo",
        mean: str = "envelope",
        metric: str | None = None,
        learn_basis: bool = False,
        max_iter: int = 100,
        tol: float = 1e-6,
        train_rows: str = "all",
        n_jobs: int | None = None,
        backend: str = "threads",
        random_state=None,
        verbose: int = 0,
    ):
        self.basis = basis
        self.alphas = alphas
        self.cv = cv
        self.mean = mean
        self.metric = metric
        self.learn_basis = learn_basis
        self.max_iter = max_iter
        self.tol = tol
        self.train_rows = train_rows
        self.n_jobs = n_jobs
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, tasks, y=None) -> MetaRidge:
        """Meta-train on a TaskSet or a stream (iterable) of TaskSet chunks.

        The new model is built aside and swapped in at the end: concurrent ``adapt`` /
        ``evaluate`` calls see the old model or the new one, never a mix.
        """
        work = self._work_copy(keep_fitted=False)
        work._fit_aside(tasks)
        self._swap_in(work)
        return self

    def _fit_aside(self, tasks) -> None:
        alphas = self._check_params()
        self._n_threads = effective_n_threads(self.n_jobs)
        dask = getattr(self, "backend", "threads") != "threads"  # older pickles have no backend
        source = (
            RidgeChunks(self, tasks) if dask else _TaskSource(tasks, self.train_rows, self._n_threads, self.verbose)
        )
        first = source.first()
        check_regression(first, "MetaRidge")
        self.basis_ = self._init_basis(training_view(first, self.train_rows))
        m = self.basis_.n_basis
        self.n_features_in_ = first.n_features
        self.n_jitter_ = 0
        s = np.ones(m)

        h, alpha, self.cv_scores_ = self._select_alpha(source, alphas, s)
        n_iter = 0
        if self.metric == "diag":
            h, s, n_iter = self._fit_metric(source, h, alpha, s)
            if len(alphas) > 1:
                h, alpha, self.cv_scores_ = self._select_alpha(source, alphas, s)
        self.basis_loss_ = []
        self.basis_result_ = None
        if self.learn_basis:
            h, alpha, it = self._fit_basis(source, h, alpha, s)
            n_iter += it
        if not (np.all(np.isfinite(h)) and np.isfinite(alpha) and np.all(np.isfinite(s))):
            raise FloatingPointError(
                "MetaRidge reached a non-finite prior mean or metric: the tasks or "
                "the basis hold values too large to represent"
            )
        self.alphas_ = alphas
        self.prior_mean_ = h
        self.alpha_ = float(alpha)
        self.prior_scale_ = s
        self.metric_ = s**2
        self.n_iter_ = n_iter
        self._mf_fitted = True

    def _check_params(self) -> np.ndarray:
        try:
            alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64)).ravel()
        except (TypeError, ValueError):
            raise TypeError(
                f"parameter 'alphas' must be a number or a sequence of numbers; got {self.alphas!r}"
            ) from None
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"parameter 'alphas' must be positive finite numbers; got {self.alphas!r}")
        if self.cv not in ("loo", "query"):
            raise ValueError(f"parameter 'cv' must be 'loo' or 'query'; got {self.cv!r}")
        if self.mean not in ("envelope", "split"):
            raise ValueError(f"parameter 'mean' must be 'envelope' or 'split'; got {self.mean!r}")
        if self.metric not in (None, "none", "diag"):
            raise ValueError(f"parameter 'metric' must be None or 'diag'; got {self.metric!r}")
        if self.metric == "diag" and self.mean == "split":
            raise ValueError(
                "metric='diag' is learned on the envelope objective together with its "
                "closed-form mean: use mean='envelope' with it"
            )
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        check_train_rows(self.train_rows)
        return alphas

    # ------------------------------------------------------------------ closed-form h and alpha
    def _design(self, basis, X) -> np.ndarray:
        return as_f64(basis.design(X))

    def _stats(self, source: _TaskSource, alphas: np.ndarray, s: np.ndarray, with_loo: bool = True):
        """One pass: the GLS statistics (M, b) and the LOO quadratic (Q, q, sq) for each alpha."""
        m = self.basis_.n_basis
        k = alphas.size
        check_allocation(
            8.0 * m * m * (2 * k + 2 + self._n_threads),
            f"MetaRidge statistics for {k} alphas and {m} basis functions",
            "use fewer basis functions or fewer alphas",
        )
        return ridge_meta_stats(source, self, alphas, s, with_loo)

    def _select_alpha(self, source, alphas, s):
        """Closed-form h for each alpha and the alpha with the best cross-validation score."""
        with_loo = self.cv == "loo" and alphas.size > 1
        if self.mean == "envelope" or with_loo:
            M, b, Q, q, sq, n_tasks = self._stats(source, alphas, s, with_loo)
        if self.mean == "split":
            hs = self._split_means(source, alphas, s)
        else:
            hs = np.stack([gls_mean(M[i], b[i]) for i in range(alphas.size)])
        if alphas.size == 1:  # nothing to choose: no score computed
            return hs[0], float(alphas[0]), np.empty(0)
        if self.cv == "loo":
            scores = np.array([(sq[i] - 2 * q[i] @ hs[i] + hs[i] @ Q[i] @ hs[i]) / n_tasks for i in range(alphas.size)])
            scores = np.maximum(scores, 0.0)
        else:
            scores = self._query_scores(source, alphas, hs, s)
        best = int(np.argmin(scores))
        return hs[best], float(alphas[best]), scores

    def _split_means(self, source, alphas, s) -> np.ndarray:
        """The transfer-risk closed form of h for each alpha (docs/derivations.md 1.2), one pass
        (in process or summed on the Dask workers: the same per-chunk function)."""
        return source.split_means(self, alphas, s)

    def _query_scores(self, source, alphas, hs, s) -> np.ndarray:
        """Mean over tasks of the query MSE after adapting on the support set, for each alpha."""
        return source.query_scores(self, alphas, hs, s)

    # ------------------------------------------------------------------ adapt, predict, evaluate
    def adapt(self, X, y) -> BiasedRidgeRegressor:
        """A fitted BiasedRidgeRegressor for a new task's support points (X, y)."""
        model = self._fitted_view()
        return BiasedRidgeRegressor(
            basis=model.basis_, prior_mean=model.prior_mean_, alpha=model.alpha_, prior_scale=model.prior_scale_
        ).fit(X, y)

    def adapt_predict(self, X, y, X_query) -> np.ndarray:
        """Adapt to (X, y) and predict X_query in one kernel call (the fastest one-task path)."""
        model = self._fitted_view()
        Phi = as_f64(model.basis_.design(X))
        Phiq = as_f64(model.basis_.design(X_query))
        yc = fast_y(y, Phi.shape[0])
        w = np.empty(Phi.shape[1])
        pred = np.empty(Phiq.shape[0])
        _ridge.adapt_predict(Phi, yc, model.prior_mean_, model.prior_scale_, model.alpha_, w, Phiq, pred)
        return pred

    def adapt_tasks(self, tasks: TaskSet) -> np.ndarray:
        """Per-task weights (T, m) after adapting to every task's support set."""
        return self._fitted_view()._adapt_tasks(check_tasks(tasks))

    def _adapt_tasks(self, ts: TaskSet) -> np.ndarray:
        Phi = self._design(self.basis_, ts.X_support)
        W = np.empty((len(ts), self.basis_.n_basis))
        n_threads = effective_n_threads(self.n_jobs)
        with one_blas_thread():
            _ridge.solve_tasks(
                Phi,
                as_f64(ts.y_support),
                ts.support_offsets,
                self.prior_mean_,
                self.prior_scale_,
                self.alpha_,
                W,
                _EMPTY_1D,
                _threads_for(n_threads, ts.support_offsets),
            )
        return W

    def _predict_tasks(self, tasks: TaskSet):
        W = self._adapt_tasks(tasks)
        Xq = tasks.X_query
        mean = self.basis_.weighted_sum_tasks(Xq, tasks.query_offsets, W.astype(Xq.dtype, copy=False))
        return np.asarray(mean, dtype=np.float64), None
