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

import sys
from typing import Any, Iterable

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from metafast._kernels import _ridge
from metafast._pickle import VersionTagged
from metafast._validation import check_positive_float, check_positive_int, check_X, check_y
from metafast.basis._base import BasisFamily
from metafast.learners._bayes_task import check_task_y
from metafast.learners._base import (MetaLearner, check_regression, check_tasks, check_train_rows, iter_task_chunks,
                                     training_view)
from metafast._memory import check_allocation
from metafast._distributed_fits import RidgeChunks
from metafast.parallel import effective_n_threads
from metafast.tasks._taskset import TaskSet

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
_METRIC_MIN = 1e-8  # smallest prior scale kept for a basis function, relative to the mean of 1


# ---------------------------------------------------------------------------- per-task regressor
class BiasedRidgeRegressor(VersionTagged, RegressorMixin, BaseEstimator):
    """Ridge regression on a basis, shrunk towards ``prior_mean`` instead of zero.

    coef_ = argmin ||Phi w - y||^2 + alpha * sum_j (w_j - prior_mean_j)^2 / prior_scale_j^2,
    with Phi = basis.design(X) (an unfitted basis is first fitted on X, as in a Pipeline; the
    fitted one is ``basis_``).  ``MetaRidge.adapt`` returns one of these, already fitted; it is
    an ordinary scikit-learn regressor (clone, cross_val_score, pipelines).  It is not Bayesian:
    ``predict(X, return_std=True)`` raises (use MetaBayes for predictive uncertainty).
    """

    def __init__(self, basis=None, prior_mean=None, alpha: float = 1.0, prior_scale=None):
        self.basis = basis
        self.prior_mean = prior_mean
        self.alpha = alpha
        self.prior_scale = prior_scale

    def _prior(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        h = np.zeros(m) if self.prior_mean is None else np.asarray(self.prior_mean, dtype=np.float64)
        s = np.ones(m) if self.prior_scale is None else np.asarray(self.prior_scale, dtype=np.float64)
        if h.shape != (m,) or s.shape != (m,):
            raise ValueError(
                f"parameters 'prior_mean' and 'prior_scale' must have shape ({m},) for a basis of "
                f"{m} functions; got {h.shape} and {s.shape}"
            )
        return np.ascontiguousarray(h), np.ascontiguousarray(s)

    def fit(self, X, y) -> "BiasedRidgeRegressor":
        """Solve the biased ridge problem on (X, y); the basis must already be fitted."""
        basis = self.basis
        if not isinstance(basis, BasisFamily):
            raise TypeError(f"parameter 'basis' must be a metafast BasisFamily; got {type(basis).__name__}")
        if not basis.__sklearn_is_fitted__():       # as in a Pipeline: fit an unfitted basis on X
            basis = clone(basis).fit(X)
        self.basis_ = basis
        Phi = _as_f64(basis.design(X))
        yc = _fast_y(y, Phi.shape[0]) if isinstance(y, np.ndarray) and y.ndim == 1 else \
            check_task_y(y, Phi.shape[0], type(self).__name__)
        h, s = self._prior(Phi.shape[1])
        alpha = check_positive_float(self.alpha, "alpha")
        w = np.empty(Phi.shape[1])
        self.n_jitter_ = _ridge.adapt_predict(Phi, yc, h, s, alpha, w, np.empty((0, Phi.shape[1])), _EMPTY_1D)
        self.coef_ = w
        self.intercept_ = 0.0
        self.n_features_in_ = basis.n_features_in_
        return self

    def predict(self, X, return_std: bool = False) -> np.ndarray:
        """Predictions Phi(X) @ coef_ (float64)."""
        if return_std:
            raise ValueError(
                "BiasedRidgeRegressor (from MetaRidge.adapt) gives point predictions only: "
                "return_std=True needs a Bayesian learner such as mf.MetaBayes"
            )
        if not hasattr(self, "coef_"):
            raise NotFittedError("This BiasedRidgeRegressor is not fitted yet: call fit(X, y)")
        return self.basis_.weighted_sum(X, self.coef_.astype(_dtype_of(X), copy=False)).astype(np.float64, copy=False)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")


_EMPTY_1D = np.empty(0)


def _dtype_of(X) -> np.dtype:
    return np.dtype(np.float32) if getattr(X, "dtype", None) == np.float32 else np.dtype(np.float64)


def _as_f64(A: np.ndarray) -> np.ndarray:
    return A if (A.dtype == np.float64 and A.flags.c_contiguous) else np.ascontiguousarray(A, dtype=np.float64)


def _fast_y(y, n: int, name: str = "y") -> np.ndarray:
    """check_y with a fast path for an already valid float64 vector."""
    if (type(y) is np.ndarray and y.dtype == np.float64 and y.ndim == 1 and y.shape[0] == n
            and y.flags.c_contiguous and np.isfinite(y).all()):
        return y
    return check_y(y, name, n_samples=n)


# ---------------------------------------------------------------------------- the meta-learner
class MetaRidge(MetaLearner):
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

    def __init__(self, basis=None, *, alphas=DEFAULT_ALPHAS, cv: str = "loo", mean: str = "envelope",
                 metric: str | None = None,
                 learn_basis: bool = False, max_iter: int = 100, tol: float = 1e-6,
                 train_rows: str = "all", n_jobs: int | None = None, backend: str = "threads",
                 random_state=None, verbose: int = 0):
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
    def fit(self, tasks, y=None) -> "MetaRidge":
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
        dask = getattr(self, "backend", "threads") != "threads"   # older pickles have no backend
        source = RidgeChunks(self, tasks) if dask else _TaskSource(tasks, self.train_rows)
        first = source.first
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
            raise FloatingPointError("MetaRidge reached a non-finite prior mean or metric: the tasks or "
                                     "the basis hold values too large to represent")
        self.alphas_ = alphas
        self.prior_mean_ = h
        self.alpha_ = float(alpha)
        self.prior_scale_ = s
        self.metric_ = s ** 2
        self.n_iter_ = n_iter
        self._mf_fitted = True

    def _check_params(self) -> np.ndarray:
        try:
            alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64)).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"parameter 'alphas' must be a number or a sequence of numbers; "
                            f"got {self.alphas!r}") from None
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"parameter 'alphas' must be positive finite numbers; got {self.alphas!r}")
        if self.cv not in ("loo", "query"):
            raise ValueError(f"parameter 'cv' must be 'loo' or 'query'; got {self.cv!r}")
        if self.mean not in ("envelope", "split"):
            raise ValueError(f"parameter 'mean' must be 'envelope' or 'split'; got {self.mean!r}")
        if self.metric not in (None, "none", "diag"):
            raise ValueError(f"parameter 'metric' must be None or 'diag'; got {self.metric!r}")
        if self.metric == "diag" and self.mean == "split":
            raise ValueError("metric='diag' is learned on the envelope objective together with its "
                             "closed-form mean: use mean='envelope' with it")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        check_train_rows(self.train_rows)
        return alphas

    # ------------------------------------------------------------------ closed-form h and alpha
    def _design(self, basis, X) -> np.ndarray:
        return _as_f64(basis.design(X))

    def _stats(self, source: "_TaskSource", alphas: np.ndarray, s: np.ndarray, with_loo: bool = True):
        """One pass: the GLS statistics (M, b) and the LOO quadratic (Q, q, sq) for each alpha."""
        if isinstance(source, RidgeChunks):               # summed on the Dask workers
            return source.meta_stats(self, alphas, s, with_loo)
        m = self.basis_.n_basis
        k = alphas.size
        check_allocation(8.0 * m * m * (2 * k + 2 + self._n_threads),
                         f"MetaRidge statistics for {k} alphas and {m} basis functions",
                         "use fewer basis functions or fewer alphas")
        M = np.zeros((k, m, m)); b = np.zeros((k, m)); Q = np.zeros((k, m, m)); q = np.zeros((k, m))
        sq = np.zeros(k); n_tasks = 0
        Mi = np.empty((m, m)); bi = np.empty(m); Qi = np.empty((m, m)); qi = np.empty(m); sqi = np.empty(1)
        for chunk in source.chunks(progress=self.verbose, what="statistics"):
            check_regression(chunk, "MetaRidge")
            Phi = self._design(self.basis_, chunk.X_support)
            y = _as_f64(chunk.y_support)
            off = chunk.support_offsets
            n_tasks += int(np.count_nonzero(np.diff(off)))
            for i, a in enumerate(alphas):
                with _blas_single_thread(self._n_threads):
                    self.n_jitter_ += _ridge.meta_stats(Phi, y, off, s, float(a), Mi, bi, Qi, qi, sqi,
                                                        _threads_for(self._n_threads, off), with_loo)
                M[i] += Mi; b[i] += bi; Q[i] += Qi; q[i] += qi; sq[i] += sqi[0]
        if n_tasks == 0:
            raise ValueError("argument 'tasks': every task has an empty support set; nothing to learn from")
        return M, b, Q, q, sq, n_tasks

    def _select_alpha(self, source, alphas, s):
        """Closed-form h for each alpha and the alpha with the best cross-validation score."""
        with_loo = self.cv == "loo" and alphas.size > 1
        if self.mean == "envelope" or with_loo:
            M, b, Q, q, sq, n_tasks = self._stats(source, alphas, s, with_loo)
        if self.mean == "split":
            hs = self._split_means(source, alphas, s)
        else:
            hs = np.stack([gls_mean(M[i], b[i]) for i in range(alphas.size)])
        if alphas.size == 1:                     # nothing to choose: no score computed
            return hs[0], float(alphas[0]), np.empty(0)
        if self.cv == "loo":
            scores = np.array([(sq[i] - 2 * q[i] @ hs[i] + hs[i] @ Q[i] @ hs[i]) / n_tasks
                               for i in range(alphas.size)])
            scores = np.maximum(scores, 0.0)
        else:
            scores = self._query_scores(source, alphas, hs, s)
        best = int(np.argmin(scores))
        return hs[best], float(alphas[best]), scores

    def _split_means(self, source, alphas, s) -> np.ndarray:
        """The transfer-risk closed form of h for each alpha (docs/derivations.md 1.2), one pass."""
        if isinstance(source, RidgeChunks):               # summed on the Dask workers
            return source.split_means(self, alphas, s)
        m = self.basis_.n_basis
        A = np.zeros((alphas.size, m, m)); b = np.zeros((alphas.size, m)); n_tasks = 0
        Ai, bi, ci = np.empty((m, m)), np.empty(m), np.empty(1)
        for chunk in source.chunks(progress=self.verbose, what="split statistics", split=True):
            check_regression(chunk, "MetaRidge")
            Phi = self._design(self.basis_, chunk.X_support)
            Phiq = self._design(self.basis_, chunk.X_query)
            y, yq = _as_f64(chunk.y_support), _as_f64(chunk.y_query)
            n_tasks += int(np.count_nonzero(np.diff(chunk.query_offsets)))
            for i, a in enumerate(alphas):
                with _blas_single_thread(self._n_threads):
                    self.n_jitter_ += _ridge.split_stats(Phi, y, chunk.support_offsets, Phiq, yq,
                                                         chunk.query_offsets, s, float(a), Ai, bi, ci,
                                                         _threads_for(self._n_threads, chunk.query_offsets))
                A[i] += Ai; b[i] += bi
        if n_tasks == 0:
            raise ValueError("mean='split' needs training tasks with query points; none has any "
                             "(use mean='envelope')")
        return np.stack([gls_mean(A[i], b[i]) for i in range(alphas.size)])

    def _query_scores(self, source, alphas, hs, s) -> np.ndarray:
        """Mean over tasks of the query MSE after adapting on the support set, for each alpha."""
        if isinstance(source, RidgeChunks):               # summed on the Dask workers
            return source.query_scores(self, alphas, hs, s)
        total = np.zeros(alphas.size); n_tasks = 0
        for chunk in source.chunks(progress=self.verbose, what="query scores", split=True):
            Phi = self._design(self.basis_, chunk.X_support)
            Phiq = self._design(self.basis_, chunk.X_query)
            y, yq = _as_f64(chunk.y_support), _as_f64(chunk.y_query)
            has_q = np.diff(chunk.query_offsets) > 0
            n_tasks += int(has_q.sum())
            for i, a in enumerate(alphas):
                loss = self._heldout(Phi, y, chunk.support_offsets, Phiq, yq, chunk.query_offsets,
                                     hs[i], s, float(a), 1.0)[0]
                total[i] += loss.sum()
        if n_tasks == 0:
            raise ValueError("cv='query' needs training tasks with query points; none has any "
                             "(use cv='loo')")
        return total / n_tasks

    def _heldout(self, Phi, y, off, Phiq, yq, qoff, h, s, lam, scale):
        T = off.shape[0] - 1
        G = np.empty_like(Phi); Gq = np.empty_like(Phiq)
        loss = np.empty(T); dlam = np.empty(T); dh = np.empty((T, Phi.shape[1]))
        with _blas_single_thread(self._n_threads):
            self.n_jitter_ += _ridge.heldout_grad(Phi, y, off, Phiq, yq, qoff, h, s, lam, scale,
                                                  G, Gq, loss, dlam, dh, _threads_for(self._n_threads, off))
        return loss, G, Gq, dlam, dh

    # ------------------------------------------------------------------ diagonal metric
    def _fit_metric(self, source, h, alpha, s):
        """Alternate: D by L-BFGS on the envelope objective (h fixed), then h in closed form."""
        m = s.size
        z = np.log(np.maximum(s ** 2, _METRIC_MIN))
        n_iter = 0
        prev = np.inf
        bar = _progress(self.verbose, None, "metric rounds")
        for _ in range(self.max_iter):
            if bar is not None:
                bar.update(1)
            def objective(zv):
                d = _softmax_scale(zv)
                val, grad_d = self._envelope(source, h, np.sqrt(d), alpha)
                # d = m softmax(z):  dd_j/dz_k = d_j (delta_jk - d_k / m)
                gz = d * grad_d - d * (d @ grad_d) / m
                return val, gz
            res = minimize(objective, z, jac=True, method="L-BFGS-B",
                           options={"maxiter": self.max_iter, "gtol": self.tol})
            z = res.x
            n_iter += int(res.nit)
            s = np.sqrt(np.maximum(_softmax_scale(z), _METRIC_MIN))
            M, b, *_ = self._stats(source, np.array([alpha]), s, with_loo=False)
            h = gls_mean(M[0], b[0])
            val = self._envelope(source, h, s, alpha)[0]
            if prev - val <= self.tol * max(abs(prev), 1.0):
                break
            prev = val
        if bar is not None:
            bar.close()
        return h, s, n_iter

    def _envelope(self, source, h, s, alpha):
        if isinstance(source, RidgeChunks):               # summed on the Dask workers
            return source.envelope(self, h, s, alpha)
        m = s.size
        total = 0.0; grad = np.zeros(m); n_tasks = 0
        for chunk in source.chunks():
            Phi = self._design(self.basis_, chunk.X_support)
            off = chunk.support_offsets
            T = off.shape[0] - 1
            val = np.empty(T); dd = np.empty((T, m))
            with _blas_single_thread(self._n_threads):
                self.n_jitter_ += _ridge.envelope_grad(Phi, _as_f64(chunk.y_support), off, h, s, alpha,
                                                       val, dd, _threads_for(self._n_threads, off))
            total += val.sum(); grad += dd.sum(axis=0)
            n_tasks += int(np.count_nonzero(np.diff(off)))
        return total / n_tasks, grad / n_tasks

    # ------------------------------------------------------------------ basis learning
    def _fit_basis(self, source, h, alpha, s):
        """L-BFGS on (basis params, log alpha, h) jointly, held-out loss with exact gradients."""
        base = self.basis_
        objective, pack, unpack = self._basis_objective(source, base, s)
        params0 = base.learnable_params()
        keys = sorted(params0)
        m = base.n_basis
        x0 = pack(params0, np.log(alpha), h)
        n_theta = x0.size - 1 - m
        bounds = [(None, None)] * n_theta + [(np.log(1e-8), np.log(1e8))] + [(None, None)] * m
        bar = _progress(self.verbose, self.max_iter, "basis learning")
        trace = []

        def callback(intermediate_result):
            trace.append(float(intermediate_result.fun))
            if bar is not None:
                bar.update(1)

        try:
            res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                           options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": self.tol * 1e-3})
        finally:
            if bar is not None:
                bar.close()
        theta, log_lam, hv = unpack(res.x)
        self.basis_ = base.with_params(**theta) if keys else base
        self.basis_loss_ = [float(objective(x0)[0])] + trace
        self.basis_result_ = res
        return np.array(hv, dtype=np.float64), float(np.exp(log_lam)), int(res.nit)

    def _basis_objective(self, source, base, s):
        """The basis-learning objective over x = (basis params flattened, log alpha, h):
        mean over tasks of the query MSE after adapting on the support set (or of the LOO MSE on
        the support set when some task has no query points), with its exact gradient
        (docs/derivations.md 0.3 / 3.3; G matrices from the kernel, contracted by design_vjp)."""
        params0 = base.learnable_params()
        keys = sorted(params0)
        shapes = [np.shape(params0[k]) for k in keys]
        sizes = [int(np.prod(sh)) for sh in shapes]
        m = base.n_basis
        use_query = source.all_have_queries()
        n_total = source.n_tasks()

        def unpack(x):
            out, pos = {}, 0
            for k, sh, n in zip(keys, shapes, sizes):
                out[k] = x[pos:pos + n].reshape(sh)
                pos += n
            return out, x[pos], x[pos + 1:pos + 1 + m]

        def objective(x):
            theta, log_lam, hv = unpack(x)
            basis = base.with_params(**theta) if keys else base
            lam = float(np.exp(log_lam))
            if isinstance(source, RidgeChunks):           # summed on the Dask workers
                total, g_flat, g_lam, g_h = source.heldout(self, basis, hv, s, lam, use_query, n_total)
                return total, np.concatenate([g_flat, [g_lam * lam], g_h])
            total = 0.0
            g_theta = {k: np.zeros(sh) for k, sh in zip(keys, shapes)}
            g_lam = 0.0
            g_h = np.zeros(m)
            for chunk in source.chunks(split=True):
                Phi = self._design(basis, chunk.X_support)
                y = _as_f64(chunk.y_support)
                off = chunk.support_offsets
                if use_query:
                    Phiq = self._design(basis, chunk.X_query)
                    loss, G, Gq, dlam, dh = self._heldout(Phi, y, off, Phiq, _as_f64(chunk.y_query),
                                                          chunk.query_offsets, hv, s, lam, 1.0 / n_total)
                else:
                    T = off.shape[0] - 1
                    G = np.empty_like(Phi); loss = np.empty(T); dlam = np.empty(T); dh = np.empty((T, m))
                    with _blas_single_thread(self._n_threads):
                        self.n_jitter_ += _ridge.loo_grad(Phi, y, off, hv, s, lam, 1.0 / n_total, G, loss,
                                                          dlam, dh, _threads_for(self._n_threads, off))
                total += float(loss.sum())
                g_lam += float(dlam.sum())
                g_h += dh.sum(axis=0)
                if keys:
                    for k, v in basis.design_vjp(chunk.X_support, G).items():
                        g_theta[k] += v
                    if use_query:
                        for k, v in basis.design_vjp(chunk.X_query, Gq).items():
                            g_theta[k] += v
            grad = np.concatenate([np.ravel(g_theta[k]) for k in keys] + [[g_lam * lam], g_h])
            return total, grad

        def pack(theta, log_lam, hv):
            return np.concatenate([np.ravel(np.asarray(theta[k], dtype=np.float64)) for k in keys]
                                  + [[log_lam], hv])

        return objective, pack, unpack

    # ------------------------------------------------------------------ adapt, predict, evaluate
    def adapt(self, X, y) -> BiasedRidgeRegressor:
        """A fitted BiasedRidgeRegressor for a new task's support points (X, y)."""
        model = self._fitted_view()
        return BiasedRidgeRegressor(basis=model.basis_, prior_mean=model.prior_mean_, alpha=model.alpha_,
                                    prior_scale=model.prior_scale_).fit(X, y)

    def adapt_predict(self, X, y, X_query) -> np.ndarray:
        """Adapt to (X, y) and predict X_query in one kernel call (the fastest one-task path)."""
        model = self._fitted_view()
        Phi = _as_f64(model.basis_.design(X))
        Phiq = _as_f64(model.basis_.design(X_query))
        yc = _fast_y(y, Phi.shape[0])
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
        with _blas_single_thread(n_threads):
            _ridge.solve_tasks(Phi, _as_f64(ts.y_support), ts.support_offsets, self.prior_mean_,
                               self.prior_scale_, self.alpha_, W, _EMPTY_1D,
                               _threads_for(n_threads, ts.support_offsets))
        return W

    def _predict_tasks(self, tasks: TaskSet):
        W = self._adapt_tasks(tasks)
        Xq = tasks.X_query
        mean = self.basis_.weighted_sum_tasks(Xq, tasks.query_offsets, W.astype(Xq.dtype, copy=False))
        return np.asarray(mean, dtype=np.float64), None


def _threads_for(n_threads: int, offsets: np.ndarray) -> int:
    """Threads worth starting for a kernel call: one for small task sets, where starting a
    parallel region costs more than the work (results never depend on the thread count)."""
    return n_threads if offsets[-1] >= 2048 else 1


def gls_mean(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_h sum_t (y_t - Phi_t h)^T G_t (y_t - Phi_t h) from M = sum Phi^T G Phi, b = sum Phi^T G y;
    the minimum-norm minimiser when M is singular (fewer data than basis functions)."""
    m = b.shape[0]
    if not np.any(M):
        return np.zeros(m)
    rcond = max(m, 1) * np.finfo(np.float64).eps * 10
    return np.linalg.lstsq(M, b, rcond=rcond)[0]


def _softmax_scale(z: np.ndarray) -> np.ndarray:
    """m * softmax(z): positive, mean 1."""
    e = np.exp(z - z.max())
    return z.size * e / e.sum()


class _TaskSource:
    """A TaskSet or a stream of TaskSet chunks, iterated once per pass over the tasks.

    A re-iterable stream (a list of chunks, a generator factory's result wrapped in a list...)
    may be read many times; a one-shot iterator only once, which is enough for the default
    closed-form fit and gives a clear error for the fits that need several passes.
    """

    def __init__(self, tasks: Any, train_rows: str = "all"):
        self.train_rows = check_train_rows(train_rows)
        if isinstance(tasks, TaskSet):
            check_tasks(tasks)
        elif not hasattr(tasks, "__iter__"):
            raise TypeError(f"argument 'tasks' must be a TaskSet or an iterable of TaskSet chunks; "
                            f"got {type(tasks).__name__}")
        self._tasks = tasks
        self._one_shot = not isinstance(tasks, TaskSet) and iter(tasks) is tasks
        self._passes = 0
        self._stream = iter_task_chunks(tasks) if self._one_shot else None
        self.first = next((c for c in (self._stream or iter_task_chunks(tasks)) if len(c)), None)
        if self.first is None:
            raise ValueError("argument 'tasks' holds no tasks")

    def chunks(self, progress: int = 0, what: str = "", split: bool = False) -> Iterable[TaskSet]:
        """Each non-empty chunk once; as training rows (``train_rows``) unless ``split`` asks
        for the support/query split as given (the held-out objectives)."""
        if self._one_shot:
            if self._passes > 0:
                raise ValueError(
                    "this fit needs several passes over the tasks (metric='diag', learn_basis=True "
                    "or cv='query'), but 'tasks' is a one-shot iterator: pass a TaskSet or a "
                    "re-iterable sequence of TaskSet chunks (e.g. a list)"
                )
            it: Iterable[TaskSet] = _prepend(self.first, self._stream)
        else:
            it = iter_task_chunks(self._tasks)
        self._passes += 1
        bar = None if isinstance(self._tasks, TaskSet) else _progress(progress, None, what)
        for c in it:
            if len(c):
                yield c if split else training_view(c, self.train_rows)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def all_have_queries(self) -> bool:
        return all(bool(np.all(np.diff(c.query_offsets) > 0)) for c in self.chunks(split=True))

    def n_tasks(self) -> int:
        return sum(len(c) for c in self.chunks())


def _prepend(first, rest):
    yield first
    yield from rest


def _progress(verbose: int, total, desc: str):
    if not verbose or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"MetaRidge {desc}", leave=False)


class _blas_single_thread:
    """Limit BLAS to one thread while a kernel calls it: the kernels' BLAS calls are small (tasks or
    blocks of tasks), where a threaded BLAS only adds synchronisation (measured: 10x slower fits),
    and inside prange it would oversubscribe the cores."""

    def __init__(self, n_threads: int):
        self.n_threads = n_threads
        self._ctx = None

    def __enter__(self):
        from threadpoolctl import threadpool_limits

        self._ctx = threadpool_limits(1, "blas")
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
        return False
