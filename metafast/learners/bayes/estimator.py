"""MetaBayes: empirical-Bayes hierarchical linear regression on a basis (ALPaCA with EM).

Each task's weights are drawn from a shared Gaussian prior, w_t ~ N(mu, Sigma), and its targets
are y_t | w_t ~ N(Phi_t w_t, sigma^2 I).  ``fit`` learns (mu, Sigma, sigma^2) by EM with the
closed-form M-step (docs/derivations.md 2.4; ``_bayes_em``), with the E-step for all tasks in one Cython
call.  A new task is then fit by exact Bayesian conditioning (``adapt``), which gives calibrated
predictive intervals from a handful of points and can be refined point by point.

This module is the estimator and its EM driver: a quarter of it is the parameter documentation.
The engine is elsewhere (``_bayes_em`` equations, ``_bayes_blocks`` blocked E-step,
``_em_accel`` SQUAREM, ``_basis_opt`` basis learning, ``_bayes_predict`` new tasks,
``_mixture`` the mixture prior).
"""

from __future__ import annotations

import warnings

import numpy as np

from metafast._memory import check_allocation
from metafast._validation import check_positive_float, check_positive_int
from metafast.distributed import DaskChunks
from metafast.learners._base import (
    MetaLearner,
    check_regression,
    check_tasks,
    check_train_rows,
    iter_task_chunks,
    training_source,
    training_view,
)
from metafast.learners._chunks import LocalChunks
from metafast.learners.bayes._accel import combined
from metafast.learners.bayes._blocks import DesignCache
from metafast.learners.bayes._blocks import chunk_estep as _chunk_estep
from metafast.learners.bayes._blocks import scale_sums as _scale_sums
from metafast.learners.bayes._driver import EMDriverMixin, _FromMixture
from metafast.learners.bayes._em import COVARIANCE_TYPES, GaussianPrior, Stats
from metafast.learners.bayes._predict import BayesPredictMixin
from metafast.learners.bayes._task import BayesTaskRegressor  # noqa: F401 (public name of this module)
from metafast.learners.bayes._whiten import missing_columns, to_user, warn_dependent, whitening_map
from metafast.learners.bayes.mixture._dask import mixture_on_workers
from metafast.learners.bayes.mixture.prior import MixturePrior
from metafast.parallel import effective_n_threads, with_one_blas_thread
from metafast.tasks._taskset import TaskSet

_NO_ROWS = (
    "argument 'tasks' has no labelled rows to meta-train on (train_rows={!r}): every task's training rows are empty"
)

# smallest noise variance EM may reach, in units of the (standardised) target variance
ACCELERATIONS = ("lbfgs", "squarem", "overrelax", "none")
_NOISE_FLOOR = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-6}


class MetaBayes(EMDriverMixin, BayesPredictMixin, MetaLearner):
    """Hierarchical Bayesian linear regression across tasks, fitted by empirical Bayes (EM).

    Parameters
    ----------
    basis : BasisFamily, family name or None
        The basis; fitted on the training tasks unless already fitted (never modified: the
        fitted copy is ``basis_``).  None means ``"rbf"`` with 40 functions.
    covariance : {"full", "diag", "iso"}
        Structure of the prior covariance Sigma ("diag" is shared ARD across tasks).
    n_components : int or "auto"
        1 is the single Gaussian prior.  Anything else delegates fit/adapt/evaluate to the
        mixture-of-Gaussians prior (``metafast.learners.bayes.mixture.prior.MixturePrior``, in
        ``mixture_``).  "auto" picks C in 1..8 by the log evidence of held-out tasks: about 20%
        of the tasks, chosen by a hash of (random_state, task index), so the same tasks in
        process and on Dask (see MixturePrior).
    max_iter : int
        Maximum EM iterations (M-steps) per EM run.
    tol : float
        Stop when the summed log evidence changes by less than ``tol`` per task.
    prior_weight : float >= 0
        nu, the weight in pseudo-tasks of the inverse-Wishart shrinkage of Sigma toward
        ``prior_scale * I`` (MAP M-step).  Keeps Sigma positive definite when there are fewer
        tasks than basis functions; 0 is plain maximum likelihood.  The mixture prior
        (n_components != 1) applies it to every component covariance (target: its isotropic
        start, see docs/mixture.md; ``prior_scale`` is not used there).
    prior_scale : "auto" or float > 0
        psi, the variance of the shrinkage target, in squared target units; "auto" uses the
        initial isotropic prior (target variance / mean squared norm of a design row).
    learn_basis : bool
        Also learn the basis's ``learnable_params`` by maximising the summed log evidence.
        Alternates L-BFGS on the basis (prior fixed) with EM (basis fixed): the M-step is exact
        and cheap, so each phase monotonically increases the same objective, and Sigma needs no
        positive-definite reparametrisation as it would in a joint gradient method.  Basis phases
        are kept short because the prior is held fixed in them: many short alternations climbed
        much further than a few long ones in our tests (a basis move is only worth as much as the
        prior that goes with it).
    basis_max_iter : int
        L-BFGS iterations per basis phase.
    basis_rounds : int
        Maximum number of (basis phase, EM run) alternations.
    basis_em_iter : int or None
        EM iterations after each basis phase (warm-started from the current prior); EM runs to
        convergence once, after the last phase.  Every partial EM run still increases the
        objective, so the alternation climbs as before at a fraction of the cost (the prior need
        not be converged to give the basis phase a good direction).  None runs EM to convergence
        after every phase (the slower schedule of metafast 0.1).
    n_init : int
        Restarts of the mixture EM (only used when n_components != 1).
    n_jobs : int or None
        Threads of the kernels (None: all cores).  Results do not depend on it.
    backend : {"threads", "dask"}
        "dask" runs the fit on the active dask.distributed Client (``metafast.distributed``): the
        training chunks are built on the workers (from a stream's loader and seed range, from
        files of a ``FileSource``, or, for a TaskSet, split into one chunk per worker thread and
        sent once) and stay there; per EM pass the driver sends the prior and gets back the
        statistics summed on the workers (O(m^2)).  A lost worker's chunks are rebuilt from
        their source and the fit ends as an undisturbed one would.  Kernels on a worker use
        that worker's threads, and so do ``learn_basis`` (its gradient is a sum over chunks) and
        the mixture prior (``metafast.learners.bayes.mixture._dask``), n_components="auto" included
        (its held-out split is a hash of each task's index, the same however the tasks are
        chunked, so a Dask fit equals the in-process one).
    acceleration : {"squarem", "lbfgs", "overrelax", "none"}
        How the objective is maximised; all four are monotone in it.  "lbfgs": L-BFGS-B on
        (mu, Sigma's Cholesky factor, log sigma^2) with the exact gradient from one E-step pass
        (``_lbfgs``), stopping when the gradient per task is below sqrt(tol)/3, with SQUAREM as
        the safeguard; the fastest and most accurate where the optimum is interior (mixed-model
        shapes: noisy tasks, few random effects), slow where it sits on the boundary (noise-free
        tasks: sigma^2 -> 0, Sigma of low rank), hence not the default.  "squarem"
        (default): SQUAREM (Varadhan & Roland 2008), which jumps along the parabola through two
        EM steps and keeps the jump only if the objective did not decrease (else the second EM
        step); "overrelax": adaptive over-relaxed EM (Salakhutdinov & Roweis 2003), the EM step
        stretched by eta (x1.5 per success, at most 16, back to 1 on a decrease); "none": plain
        EM.  The acceleration pays most where EM crawls (noise-free tasks, where sigma^2 keeps
        shrinking).  Not used by partial_fit.
    overrelax : bool or None
        Deprecated: True means ``acceleration="overrelax"``, False ``"none"``.
    train_rows : {"all", "support"}
        The rows of each training task that meta-training uses.  "all" (default): support and
        query rows together, since the evidence-based fit has no use for the split and every
        labelled row sharpens the prior; "support": the support rows only (the behaviour of
        metafast 0.1, or to hold the query rows out).
    random_state : int, Generator or None
        Used by the mixture prior; the single-Gaussian EM is deterministic.
    verbose : int
        > 0 shows a tqdm progress bar over EM iterations on a terminal.
    whiten : bool
        Run EM on the basis times a matrix that makes the pooled training Gram the identity
        (``_whiten``; default).  The model, its optimum and the public attributes do not depend
        on it (they are mapped back), the number of passes does: an ill-conditioned basis
        (polynomial features, unions of families) converges as fast as a well-conditioned one.
        Not used with ``learn_basis``: its basis phases hold the prior fixed in the user's
        coordinates, where a whitened fit's large variances along barely seen directions pin
        the basis (an RBF length-scale stuck at its start: evidence 903 against 2052).

    Attributes
    ----------
    basis_ : the fitted (and, with learn_basis, learned) basis.
    mean_ : (m,) prior mean mu.    covariance_ : (m, m) prior covariance Sigma.
    noise_var_ : float, sigma^2.    (all in the units of y)
    log_evidence_ : (n_evals,) summed log evidence sum_t log p(y_t) after each M-step (the first
        entry is the initial prior); never decreases when prior_weight = 0.
    objective_ : (n_evals,) log evidence + log p(Sigma) (the quantity MAP-EM never decreases).
    n_iter_ : int, EM updates kept in total (one per history entry after the first).
    n_passes_ : int, E-steps done (passes over the training data), extrapolated points and
        line-search trials included.
    converged_ : bool.
    convergence_ : dict, the last EM run's report: ``converged``, ``reason`` (why it stopped),
        ``method``, ``objective`` (trace of kept iterates, never decreasing), ``n_passes``,
        ``gradient_norm`` (max |dF/dx| per task at the end, x centred on the final prior) and
        ``boundary`` (non-empty when sigma^2 is at its floor or Sigma near singular).
    n_tasks_seen_ : int, tasks fitted on (fit + partial_fit).
    mixture_ : the fitted ``MixturePrior`` (n_components != 1 only).  Its ``n_components_``,
        ``weights_``, ``means_``, ``covariances_``, ``noise_var_``, ``log_evidence_``,
        ``objective_`` and ``n_iter_`` are read through the model's attributes of those names
        (``mean_``, ``covariance_`` and ``n_passes_`` are single-Gaussian only).
    """

    _bayesian = True
    # one source of truth: read from mixture_ for a mixture prior, own attributes otherwise
    n_components_ = _FromMixture()
    weights_ = _FromMixture()
    means_ = _FromMixture()
    covariances_ = _FromMixture()
    noise_var_ = _FromMixture()
    log_evidence_ = _FromMixture()
    objective_ = _FromMixture()
    n_iter_ = _FromMixture()

    def __init__(
        self,
        basis=None,
        covariance: str = "full",
        n_components=1,
        max_iter: int = 200,
        tol: float = 1e-5,
        prior_weight: float = 1.0,
        prior_scale="auto",
        learn_basis: bool = False,
        basis_max_iter: int = 10,
        basis_rounds: int = 10,
        basis_em_iter=3,
        n_init: int = 1,
        n_jobs=None,
        backend: str = "threads",
        acceleration: str = "squarem",
        overrelax=None,
        train_rows: str = "all",
        random_state=None,
        verbose: int = 0,
        whiten: bool = True,
    ):
        self.basis = basis
        self.covariance = covariance
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.prior_weight = prior_weight
        self.prior_scale = prior_scale
        self.learn_basis = learn_basis
        self.basis_max_iter = basis_max_iter
        self.basis_rounds = basis_rounds
        self.basis_em_iter = basis_em_iter
        self.n_init = n_init
        self.n_jobs = n_jobs
        self.backend = backend
        self.acceleration = acceleration
        self.overrelax = overrelax
        self.train_rows = train_rows
        self.random_state = random_state
        self.verbose = verbose
        self.whiten = whiten

    # ================================================================== parameters and data
    def _check_params(self) -> None:
        if self.covariance not in COVARIANCE_TYPES:
            raise ValueError(f"parameter 'covariance' must be one of {COVARIANCE_TYPES}; got {self.covariance!r}")
        nc = self.n_components
        if not (nc == "auto" or (isinstance(nc, (int, np.integer)) and not isinstance(nc, bool) and nc >= 1)):
            raise ValueError(f"parameter 'n_components' must be an integer >= 1 or 'auto'; got {nc!r}")
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_positive_float(self.tol, "tol", allow_zero=True)
        check_positive_float(self.prior_weight, "prior_weight", allow_zero=True)
        if not (isinstance(self.prior_scale, str) and self.prior_scale == "auto"):
            check_positive_float(self.prior_scale, "prior_scale")
        check_positive_int(self.basis_max_iter, "basis_max_iter")
        check_positive_int(self.basis_rounds, "basis_rounds", minimum=0)
        if self.basis_em_iter is not None:
            check_positive_int(self.basis_em_iter, "basis_em_iter")
        check_positive_int(self.n_init, "n_init")
        check_train_rows(self.train_rows)
        if not isinstance(self.whiten, (bool, np.bool_)):
            raise ValueError(f"parameter 'whiten' must be True or False; got {self.whiten!r}")
        self._acceleration = self._check_acceleration()
        if self.backend not in ("threads", "dask"):
            raise ValueError(f"parameter 'backend' must be 'threads' or 'dask'; got {self.backend!r}")
        check_positive_int(self.verbose, "verbose", minimum=0) if not isinstance(self.verbose, bool) else None
        self._n_threads = effective_n_threads(self.n_jobs)

    def _check_acceleration(self) -> str:
        if self.acceleration not in ACCELERATIONS:
            raise ValueError(f"parameter 'acceleration' must be one of {ACCELERATIONS}; got {self.acceleration!r}")
        if self.overrelax is None:
            return self.acceleration
        if not isinstance(self.overrelax, (bool, np.bool_)):
            raise ValueError(f"parameter 'overrelax' must be True, False or None; got {self.overrelax!r}")
        warnings.warn(
            "parameter 'overrelax' is deprecated: use acceleration='overrelax' or 'none'", FutureWarning, stacklevel=4
        )
        return "overrelax" if self.overrelax else "none"

    def _chunk_source(self, tasks):
        """(list-or-reiterable of training chunks, first chunk); rejects one-shot iterators.

        The chunks are the rows EM trains on (``train_rows``): by default each task's support
        and query rows together.  With backend="dask" the chunks are built and kept on the
        workers (``metafast.distributed.DaskChunks``) and only chunk 0 comes back here.
        """
        if self.backend == "dask":
            chunks = DaskChunks(tasks, self.train_rows)
            return chunks, chunks.first()
        if isinstance(tasks, TaskSet):
            ts = training_view(check_tasks(tasks), self.train_rows)
            return [ts], ts
        if hasattr(tasks, "__iter__") and iter(tasks) is tasks:
            raise TypeError(
                "argument 'tasks' is a one-shot iterator, but EM passes over the tasks once per "
                "iteration: pass a TaskSet, a list of TaskSet chunks or a re-iterable stream "
                "(mf.tasks.stream), or feed chunks one at a time to partial_fit"
            )
        tasks = training_source(tasks, self.train_rows)
        first = next(iter(iter_task_chunks(tasks)), None)
        if first is None:
            raise ValueError("argument 'tasks' holds no TaskSet chunks")
        return tasks, first

    def _estep_all(self, source, prior: GaussianPrior, cache: dict | None) -> Stats:
        """E-step statistics summed over every chunk, in chunk order.

        Both routes run ``_bayes_blocks.chunk_estep`` on each chunk, in blocks of tasks: in
        process (``learners._chunks.LocalChunks``) the designs of held chunks are cached up to a
        byte budget, else recomputed; with backend="dask" each chunk's statistics are computed
        on the worker holding it and summed on the workers (``metafast.distributed``).
        """
        if isinstance(source, DaskChunks):
            total = source.map_sum(_chunk_estep, self.basis_, self._y_scale, prior, "worker")
        else:
            total = LocalChunks(source, self._n_threads).map_sum(_chunk_estep, self.basis_, self._y_scale, prior, cache)
        if total.n_tasks == 0:
            raise ValueError("argument 'tasks' holds no tasks")
        if total.n_failed:
            raise FloatingPointError(
                f"{total.n_failed} task(s) had a singular posterior even after jitter: the basis or the "
                "targets are degenerate (check for huge magnitudes)"
            )
        self._n_jittered += total.n_jittered
        return total

    # ================================================================== fit
    def fit(self, tasks, y=None) -> MetaBayes:
        """Learn the prior (and, with learn_basis, the basis) from training tasks.

        ``tasks`` is a TaskSet or a re-iterable of TaskSet chunks (a stream); for a stream the
        statistics are accumulated chunk by chunk each EM iteration, so memory stays bounded, and
        an unfitted basis is fitted on the first chunk.  The new model is built aside and swapped
        in at the end: concurrent ``adapt``/``evaluate`` calls see the old model or the new one.
        """
        work = self._work_copy(keep_fitted=False)
        work._fit_aside(tasks)
        self._swap_in(work)
        return self

    @with_one_blas_thread
    def _fit_aside(self, tasks) -> MetaBayes:
        self._check_params()
        for attr in ("mixture_", "_stats"):
            self.__dict__.pop(attr, None)
        if self.n_components != 1:
            return self._fit_mixture(tasks)
        source, first = self._chunk_source(tasks)
        check_regression(first, "MetaBayes")
        basis_fitted = hasattr(self.basis, "__sklearn_is_fitted__") and self.basis.__sklearn_is_fitted__()
        if first.X_support.shape[0] == 0 and not basis_fitted:
            raise ValueError(_NO_ROWS.format(self.train_rows) + " (the first chunk, which fits the basis)")
        try:
            self.basis_ = self._init_basis(first, default="rbf", n_basis=40)
            m = self.basis_.n_basis  # prior, its inverse, statistics, EM copies; m x m scratch per thread
            check_allocation(
                8.0 * m * m * (10 + self._n_threads),
                f"MetaBayes with {m} basis functions",
                "use fewer basis functions or covariance='diag'",
            )
            self._set_scale_and_init(source, first.dtype)
            cache = DesignCache() if isinstance(source, list) else None
            self._n_jittered = 0
            self._history, self._objective, self.n_iter_, self.n_passes_ = [], [], 0, 0
            self._passes_at = []  # n_passes_ when each history entry was recorded
            prior, self.converged_, stats = self._em(source, self._prior, cache)
            if self.learn_basis:
                prior, stats = self._learn_basis(source, prior, stats, cache)
        finally:
            if isinstance(source, DaskChunks):
                source.release()
        self._finish(prior)
        self._stats = stats.without_tasks()  # kept (O(m^2)) for partial_fit
        self.n_tasks_seen_ = self._stats.n_tasks
        self._mf_fitted = True
        return self

    def _set_scale_and_init(self, source, dtype) -> None:
        """Target scale (undone exactly at the end) and the isotropic starting prior.

        One pass over all chunks: y_scale = RMS of the support targets, and the starting prior
        N(0, s0 I) with s0 = 1 / mean squared norm of a design row (so Phi Sigma Phi^T ~ y^2).
        """
        chunks = source if isinstance(source, DaskChunks) else LocalChunks(source, self._n_threads)
        sums = chunks.map_sum(_scale_sums, self.basis_)
        sum_y2, sum_phi2, n_rows = float(sums[0]), float(sums[1]), int(sums[2])
        if n_rows == 0:
            raise ValueError(_NO_ROWS.format(self.train_rows))
        rms = np.sqrt(sum_y2 / n_rows) if n_rows else 0.0
        self._y_scale = float(rms) if np.isfinite(rms) and rms > 0 else 1.0
        row_norm = sum_phi2 / n_rows if n_rows else 0.0
        s0 = 1.0 / row_norm if np.isfinite(row_norm) and row_norm > 0 else 1.0
        m = self.basis_.n_basis
        psi = s0 if isinstance(self.prior_scale, str) else float(self.prior_scale) / self._y_scale**2
        self._nu = float(self.prior_weight)
        self._noise_floor = _NOISE_FLOOR[np.dtype(dtype)]
        gram = np.asarray(sums[3:]).reshape(m, m)
        self._wmap = (
            whitening_map(gram, n_rows, self.covariance, dtype) if self.whiten and not self.learn_basis else None
        )
        warn_dependent(missing_columns(gram, n_rows, dtype), m)
        A = None if self._wmap is None else self._wmap.A
        if A is not None:  # the isotropic start of the whitened coordinates
            white_norm = float(np.sum((A.T @ gram) * A.T)) / n_rows
            s0 = 1.0 / white_norm if np.isfinite(white_norm) and white_norm > 0 else 1.0
        self._psi = psi if self._wmap is None else self._wmap.target(psi)
        self._prior = GaussianPrior(np.zeros(m), s0 * np.eye(m), 0.25, self.covariance, A)

    def _finish(self, prior: GaussianPrior) -> None:
        """Store the prior and the public attributes (in the units of y)."""
        if not (np.isfinite(prior.mean).all() and np.isfinite(prior.cov).all() and np.isfinite(prior.noise_var)):
            raise FloatingPointError(
                "MetaBayes EM reached a non-finite prior: the tasks or the basis "
                "hold values too large to represent (check for huge magnitudes)"
            )
        mean, cov = to_user(prior.mean, prior.cov, getattr(self, "_wmap", None))
        self._prior = GaussianPrior(mean, cov, prior.noise_var, prior.kind)  # what adapt/predict use
        c = self._y_scale
        self.mean_ = mean * c
        self.covariance_ = cov * c**2
        self.noise_var_ = float(prior.noise_var * c**2)
        self.log_evidence_ = np.asarray(self._history)
        self.objective_ = np.asarray(self._objective)
        if self._n_jittered:
            warnings.warn(
                f"MetaBayes: {self._n_jittered} per-task factorisations needed diagonal jitter "
                "(near-singular design or noise variance at its floor)",
                RuntimeWarning,
                stacklevel=3,
            )

    # ================================================================== partial_fit
    def partial_fit(self, tasks) -> MetaBayes:
        """Keep meta-learning as new tasks arrive (incremental EM with frozen old statistics).

        The E-step statistics of earlier tasks are kept, summed, as computed at the prior of their
        own fit; EM then runs on the new tasks with the M-step using old + new statistics, and the
        new tasks' statistics (at the final prior) join the store.  Memory is O(m^2) whatever the
        number of tasks seen.  This equals a full refit when the prior barely moves; the basis is
        fixed after the first call.  The first call on an unfitted model is ``fit``.
        """
        if not getattr(self, "_mf_fitted", False) or getattr(self, "_stats", None) is None:
            return self.fit(tasks)
        work = self._work_copy(keep_fitted=True)
        work._partial_fit_aside(tasks)
        self._swap_in(work)
        return self

    @with_one_blas_thread
    def _partial_fit_aside(self, tasks) -> MetaBayes:
        self._check_params()
        if self.n_components != 1:
            raise NotImplementedError("partial_fit is only available with n_components=1")
        source, _ = self._chunk_source(tasks)
        cache = DesignCache() if isinstance(source, list) else None
        self._n_jittered = 0
        self._history, self._objective, self._passes_at = [], [], []  # this call's (new tasks only)
        self.n_passes_ = getattr(self, "n_passes_", 0)
        try:
            prior, self.converged_, new = self._em(source, self._whitened(self._prior), cache, fixed=self._stats)
        finally:
            if isinstance(source, DaskChunks):
                source.release()
        self._finish(prior)
        self._stats = combined(new, self._stats).without_tasks()
        self.n_tasks_seen_ = self._stats.n_tasks
        return self

    # ================================================================== mixture delegation
    def _mixture_prior(self) -> MixturePrior:
        """The unfitted MixturePrior this model's parameters describe (MetaBayes says "iso" where
        the mixture module says "spherical": one variance per component)."""
        covariance = "spherical" if self.covariance == "iso" else self.covariance
        return MixturePrior(
            self.n_components,
            covariance=covariance,
            max_iter=self.max_iter,
            tol=self.tol,
            n_init=self.n_init,
            random_state=self.random_state,
            n_threads=self._n_threads,
            verbose=self.verbose,
            prior_weight=self.prior_weight,
        )

    def _fit_mixture(self, tasks) -> MetaBayes:
        if self.backend == "dask":  # statistics summed on the Dask workers
            return self._set_mixture(*mixture_on_workers(self, tasks))
        ts = training_view(check_tasks(tasks), self.train_rows)
        check_regression(ts, "MetaBayes")
        if ts.X_support.shape[0] == 0:
            raise ValueError(_NO_ROWS.format(self.train_rows))
        self.basis_ = self._init_basis(ts, default="rbf", n_basis=40)
        Phi = np.ascontiguousarray(self.basis_.design(ts.X_support))
        y = np.asarray(ts.y_support, dtype=np.float64)
        prior = self._mixture_prior().fit(Phi, y, ts.support_offsets)
        return self._set_mixture(prior, len(ts))

    def _set_mixture(self, prior, n_tasks: int) -> MetaBayes:
        self.mixture_ = prior  # the mixture's fitted attributes are read from it (_FromMixture)
        self.n_tasks_seen_ = n_tasks
        self._mf_fitted = True
        return self
