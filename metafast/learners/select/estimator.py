"""BasisSelector: choose the columns of a dictionary that the training tasks share.

    sel = mf.BasisSelector(mf.basis.union([...]), method="group-lasso").fit(train_tasks)
    model = mf.MetaBayes(basis=sel.selected_basis_).fit(train_tasks)

Each task has its own design matrix (its rows through the basis); a column is kept or dropped
for all tasks together.  Three methods:

- ``"group-lasso"`` (Obozinski, Taskar and Jordan 2010): min over W of
  sum_t 1/(2 n_t) ||y_t - Phi_t w_t||^2 + alpha sum_j ||W[j, :]||_2, solved by block coordinate
  descent in Cython (metafast/_kernels/_group_lasso.pyx) along a warm-started geometric alpha
  path with strong-rule working sets and a duality-gap stop (covariance mode on the Gram
  columns when all tasks share one design).  **alpha is chosen on the tasks' query sets** (a
  deliberate use of the split): the path is fitted on the support rows and each point scored
  by the median per-task query MSE after refitting every task on that point's columns (the
  relaxed group lasso: the lasso's shrinkage would favour too wide a support; the plain
  lasso's query MSE is kept in ``path_`` as "lasso_val_mse").  The refit (``refit="bayes"``)
  is empirical Bayes: a Gaussian prior N(mu, diag(v)) and the noise estimated across the
  tasks by EM, i.e. the kind of model the selected basis is for; per-task least squares
  (``refit="lstsq"``) degenerates as the support nears n_t.  The point taken is the
  one-standard-error choice (``rule="one-se"``: the fewest columns whose score is within one
  bootstrap standard error of the best), not the minimum: past the true support, extra
  columns barely change the score.  Then (``adaptive=True``, default) an **adaptive group
  lasso** stage (Zou 2006; Wang and Leng 2008): the penalty of column j becomes
  alpha ||W_j|| / w_j with w_j the empirical-Bayes prior RMS weight sqrt(mu_j^2 + v_j) on the
  first stage's columns (the others stay out), and a new validated path runs.  The plain lasso
  under a coherent dictionary (neighbouring RBF centres, close frequencies) keeps correlated
  neighbours of the true columns at every alpha (its irrepresentable condition fails); the
  re-weighting penalises weak columns more and strong ones less, which removes them
  (``first_stage_path_`` keeps the first path).  The chosen alpha is then refitted on every
  row of the training tasks (``refit_rows="all"``) and its non-zero rows are the support.
- ``"somp"``: simultaneous orthogonal matching pursuit (Tropp, Gilbert and Strauss 2006) on the
  support rows: add the column maximising sum_t |<r_t, phi_tj>| / ||phi_tj||, refit every task
  (empirical Bayes as above, or least squares), stop after ``patience`` steps without a better
  query MSE; the support is the prefix of the greedy order chosen by ``rule``.  Being greedy,
  it cannot undo a pick: on a coherent dictionary a column between two true ones can beat
  both and stay (see docs/selection.md).
- ``"ard"``: automatic relevance determination: MetaBayes with a diagonal prior covariance
  (``covariance="diag"``), whose EM drives the prior variances v_j of unused columns toward
  zero, but only slowly (about as 1/iterations), so a threshold on v_j or on the signal power
  depends on how long EM ran.  Pruning therefore uses MacKay's well-determinedness
  gamma_j = 1 - mean_t S_t,jj / v_j (S_t the task's posterior covariance under the fitted
  prior): the share of the prior variance that the tasks' data resolve.  It is scale-free, near
  1 for a column the data use and near 0 for one whose posterior is still its prior; columns
  with gamma_j < ``ard_threshold`` (default 0.5) are pruned.  A column whose weight is the same
  in every task (v_j = 0, the shared mean alone) counts as not determined and is pruned: the
  prior mean is unpenalised and spreads over collinear columns, so it cannot tell relevance.
  MetaBayes runs with ``prior_weight=0`` (plain EM; its default MAP term keeps
  every variance above a floor of about 1e-3 of the prior scale, which would hide the pruning)
  unless ``ard_params`` says otherwise.  Uses every row of the training tasks (MetaBayes's own
  choice); no split.

Honesty: ``fit`` sees only the tasks it is given.  Fit it on training tasks; the selected basis
is then fitted on the same training tasks and evaluated on test tasks it has never seen.

Streams: ``"ard"`` fits from a re-iterable stream of TaskSet chunks (e.g. ``mf.tasks.stream``)
as MetaBayes does; ``"group-lasso"`` and ``"somp"`` accept a stream too but concatenate its
chunks, since each sweep visits every task (memory O(total rows x m)).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from metafast._validation import check_positive_int
from metafast.basis._base import BasisFamily
from metafast.basis.subset import restrict
from metafast.learners._base import iter_task_chunks
from metafast.learners.select import _solvers as solvers
from metafast.learners.select._pack import check_target_magnitude
from metafast.parallel import effective_n_threads
from metafast.tasks._taskset import TaskSet

METHODS = ("group-lasso", "somp", "ard")
REFIT_ROWS = ("all", "support")
REFITS = ("bayes", "lstsq")
RULES = ("one-se", "min")


class BasisSelector(BaseEstimator):
    """Choose the dictionary columns that the training tasks share (see the module docstring).

    Parameters
    ----------
    basis : BasisFamily or str
        The dictionary, e.g. ``mf.basis.union([...])``; fitted on the training tasks unless it
        is already fitted.
    method : {"group-lasso", "somp", "ard"}
    alpha : float, optional
        group-lasso: a fixed penalty (lambda) > 0 instead of a validated path.
    alphas : array-like, optional
        group-lasso: the path itself (decreasing, > 0); default ``n_alphas`` values from the
        smallest alpha that selects nothing down to ``alpha_min_ratio`` times it.
    n_alphas, alpha_min_ratio : path length and depth.
    patience : int
        Path points (group-lasso) or greedy steps (somp) without a better query MSE before the
        search stops.
    max_features : int, optional
        At most this many columns (default: the dictionary size).
    normalize : bool
        Divide every column by its root mean square over the training rows first.
    rule : {"one-se", "min"}
        group-lasso and somp: the path point taken, the one-standard-error choice (fewest columns
        within one standard error of the best score) or the best score.
    refit : {"bayes", "lstsq"}
        group-lasso and somp: how every task is refitted on a candidate support before its query
        error is scored (and, for somp, its residual taken): under a shared Gaussian prior
        estimated across the tasks ("bayes", see the module docstring) or by least squares.
    refit_rows : {"all", "support"}
        group-lasso: rows of the final fit at the chosen alpha.
    adaptive : bool
        group-lasso: a second, adaptive stage re-weighted by the first stage's weights (see the
        module docstring); applies to a validated path, not to a fixed ``alpha``.
    tol, max_iter : group-lasso duality-gap tolerance (relative) and sweep budget per alpha.
    ard_threshold : float in (0, 1)
        ard: the well-determinedness below which a column is pruned (see the module docstring).
    ard_params : dict, optional
        Extra MetaBayes parameters for ard (e.g. ``{"max_iter": 300}``).
    n_jobs : int, optional
        Kernel threads (None = all cores).

    Attributes
    ----------
    support_ : (k,) selected columns, most important first.
    scores_ : (m,) importance of every column (group-lasso: RMS over tasks of its normalised
        weights; somp: the greedy score when picked, 0 if never picked; ard: well-determinedness
        gamma_j).
    path_ : list of dicts, one per path point or greedy step, with "val_mse" and its bootstrap
        standard error "val_se" where validated (ard: columns kept per gamma threshold).
    first_stage_path_ : group-lasso with ``adaptive``: the path of the first, plain stage.
    signal_power_ : ard: (mu_j^2 + v_j) mean(phi_j(x)^2) of every column.
    alpha_ : the chosen alpha (group-lasso; of the adaptive stage when ``adaptive``).
    basis_ : the fitted dictionary.   selected_basis_ : ``basis_`` restricted to ``sorted(support_)``.
    """

    def __init__(
        self,
        basis: Any = None,
        method: str = "group-lasso",
        *,
        alpha: float | None = None,
        alphas: Any = None,
        n_alphas: int = 30,
        alpha_min_ratio: float = 1e-3,
        patience: int = 5,
        max_features: int | None = None,
        normalize: bool = True,
        rule: str = "one-se",
        refit: str = "bayes",
        refit_rows: str = "all",
        adaptive: bool = True,
        tol: float = 1e-4,
        max_iter: int = 300,
        ard_threshold: float = 0.5,
        ard_params: dict | None = None,
        n_jobs: int | None = None,
    ):
        self.basis = basis
        self.method = method
        self.alpha = alpha
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.patience = patience
        self.max_features = max_features
        self.normalize = normalize
        self.rule = rule
        self.refit = refit
        self.refit_rows = refit_rows
        self.adaptive = adaptive
        self.tol = tol
        self.max_iter = max_iter
        self.ard_threshold = ard_threshold
        self.ard_params = ard_params
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"parameter 'method' must be one of {METHODS}; got {self.method!r}")
        if self.rule not in RULES:
            raise ValueError(f"parameter 'rule' must be one of {RULES}; got {self.rule!r}")
        if self.refit not in REFITS:
            raise ValueError(f"parameter 'refit' must be one of {REFITS}; got {self.refit!r}")
        if self.refit_rows not in REFIT_ROWS:
            raise ValueError(f"parameter 'refit_rows' must be one of {REFIT_ROWS}; got {self.refit_rows!r}")
        if self.alpha is not None and not (np.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"parameter 'alpha' (lambda) must be a finite number > 0; got {self.alpha!r}")
        if self.alphas is not None:
            a = np.asarray(self.alphas, dtype=np.float64)
            if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
                raise ValueError(
                    "parameter 'alphas' (the lambda path) must be a non-empty 1-D array of "
                    f"finite numbers > 0; got {self.alphas!r}"
                )
        check_positive_int(self.n_alphas, "n_alphas")
        check_positive_int(self.patience, "patience")
        check_positive_int(self.max_iter, "max_iter")
        if self.max_features is not None:
            check_positive_int(self.max_features, "max_features")
        if not 0 < self.alpha_min_ratio < 1:
            raise ValueError(f"parameter 'alpha_min_ratio' must be in (0, 1); got {self.alpha_min_ratio!r}")
        if not 0 < self.ard_threshold < 1:
            raise ValueError(f"parameter 'ard_threshold' must be in (0, 1); got {self.ard_threshold!r}")
        if not self.tol > 0:
            raise ValueError(f"parameter 'tol' must be > 0; got {self.tol!r}")

    def _fitted_basis(self, tasks: TaskSet) -> BasisFamily:
        from metafast import basis as basis_api

        b = self.basis if self.basis is not None else "rbf"
        b = basis_api.make(b) if isinstance(b, str) else b
        if not isinstance(b, BasisFamily):
            raise TypeError(
                f"parameter 'basis' must be a metafast BasisFamily or a family name; got {type(b).__name__}"
            )
        return copy.deepcopy(b) if b.__sklearn_is_fitted__() else clone(b).fit_tasks(tasks)

    # ------------------------------------------------------------------ fit
    def fit(self, tasks, y=None) -> BasisSelector:
        """Choose the columns from the training ``tasks`` (a TaskSet or a stream of chunks)."""
        self._check_params()
        self._threads = effective_n_threads(self.n_jobs)
        if self.method == "ard":
            return self._fit_ard(tasks)
        chunks = list(iter_task_chunks(tasks))
        ts = chunks[0] if len(chunks) == 1 else TaskSet.concatenate(chunks)
        check_target_magnitude(ts)
        self.basis_ = self._fitted_basis(ts)
        train = solvers.pack(self.basis_, ts.X_support, ts.y_support, ts.support_offsets, None, self._threads)
        self.column_scale_ = solvers.column_scale(train) if self.normalize else np.ones(self.basis_.n_basis)
        if self.normalize:
            train.PhiT /= self.column_scale_.astype(train.PhiT.dtype)[:, None]
            train._norms2 = train._norms2 / self.column_scale_[:, None] ** 2
        needs_query = not (self.method == "group-lasso" and self.alpha is not None)
        query = None
        if needs_query:
            if not np.any(ts.query_sizes > 0):
                raise ValueError(
                    f"argument 'tasks': no task has query points, but method={self.method!r} chooses "
                    "its stopping point on the tasks' query sets; give tasks with a support/query "
                    "split" + (" or a fixed alpha=" if self.method == "group-lasso" else "")
                )
            query = solvers.pack(
                self.basis_, ts.X_query, ts.y_query, ts.query_offsets, self.column_scale_, self._threads
            )
        m = self.basis_.n_basis
        max_features = min(self.max_features or m, m)
        if self.method == "somp":
            self._fit_somp(train, query, max_features)
        else:
            self._fit_group_lasso(ts, train, query, max_features)
        self.support_ = np.asarray(self.support_, dtype=np.int64)
        self.selected_basis_ = restrict(self.basis_, np.sort(self.support_))
        self.n_features_in_ = ts.n_features
        return self

    def _fit_group_lasso(self, ts: TaskSet, train, query, max_features: int) -> None:
        path, W, alpha = self._validated_path(train, query, max_features)
        m, T = W.shape
        columns, factor = np.arange(m), np.ones(m)
        if self.adaptive and query is not None:
            # adaptive group lasso: penalty alpha sum_j ||W_j|| / w_j with w_j the first stage's
            # RMS weight (dropped columns stay out), i.e. column j multiplied by w_j
            self.first_stage_path_ = path
            w = np.linalg.norm(W, axis=1) / np.sqrt(T)
            columns = np.flatnonzero(w > 0)
            if self.refit == "bayes":
                # weights from the empirical-Bayes refit on the first stage's columns: its prior
                # RMS weight sqrt(mu_j^2 + v_j), free of the lasso's shrinkage and of the way the
                # lasso splits a weight between neighbouring columns (Zou's initial estimator
                # should be unbiased; least squares is undefined on tasks this short)
                eb = solvers.EmpiricalBayesRefit(train)
                eb.fit(columns)
                w = np.zeros(m)
                w[columns] = [np.hypot(*eb.prior[int(j)]) for j in columns]
                columns = np.flatnonzero(w > 0)
            factor = w[columns]
            path, W_sub, alpha = self._validated_path(
                train.reweighted(columns, factor), query.reweighted(columns, factor), max_features
            )
        else:
            W_sub = W
        self.path_ = path
        self.alpha_ = alpha
        if self.refit_rows == "all":
            full = ts.all_rows()
            packed = solvers.pack(
                self.basis_, full.X_support, full.y_support, full.support_offsets, self.column_scale_, self._threads
            ).reweighted(columns, factor)
            gl_all = solvers.GroupLasso(packed)
            gl_all.warm_start(W_sub)
            gl_all.solve(alpha, None, self.tol, self.max_iter)
            if np.any(gl_all.W != 0):
                W_sub = gl_all.W
        W = np.zeros((m, T))
        W[columns] = W_sub * factor[:, None]
        self.coef_ = W / self.column_scale_[:, None]
        norms = np.linalg.norm(W, axis=1) / np.sqrt(T)
        self.scores_ = norms
        nz = np.flatnonzero(norms > 0)
        self.support_ = nz[np.argsort(-norms[nz], kind="stable")][:max_features]

    def _validated_path(self, train, query, max_features: int) -> tuple[list, np.ndarray, float]:
        """The warm-started alpha path on ``train``, each point scored on ``query``; returns the
        path records, the chosen point's W and its alpha (one-standard-error rule)."""
        gl = solvers.GroupLasso(train)
        if self.alpha is not None:
            alphas = np.array([float(self.alpha)])
        elif self.alphas is not None:
            alphas = np.sort(np.asarray(self.alphas, dtype=np.float64))[::-1]
        else:
            alphas = solvers.alpha_grid(gl.alpha_max, self.n_alphas, self.alpha_min_ratio)
        path, weights, best, prev, since_best = [], [], None, None, 0
        refit = solvers.EmpiricalBayesRefit(train) if self.refit == "bayes" else None
        for a in alphas:
            stats = gl.solve(float(a), prev, self.tol, self.max_iter)
            prev = float(a)
            nz = np.flatnonzero(np.any(gl.W != 0, axis=1))
            lasso_val = solvers.validation_mse(query, gl.W[nz], nz) if query is not None else np.nan
            val, se = (
                solvers.median_with_se(self._refit_errors(refit, train, query, nz))
                if query is not None
                else (np.nan, 0.0)
            )
            path.append(
                {
                    "alpha": float(a),
                    "n_selected": int(nz.size),
                    "val_mse": val,
                    "val_se": se,
                    "lasso_val_mse": lasso_val,
                    "objective": gl.objective(float(a)),
                    **stats,
                }
            )
            weights.append((nz, gl.W[nz].copy()))  # non-zero rows only
            if nz.size > max_features:
                break
            if nz.size and (best is None or not val >= best["val_mse"]):
                best, since_best = path[-1], 0
            elif best is not None:
                since_best += 1
                if since_best >= self.patience:
                    break
        if best is None:
            raise ValueError(
                f"every point of the group-lasso path selected no column (smallest alpha tried: "
                f"{path[-1]['alpha']:.4g}, while alpha_max = {gl.alpha_max:.4g} selects nothing): pass "
                "a smaller alpha / alphas, lower alpha_min_ratio, or check that the targets vary"
            )
        chosen = path.index(best) if query is None or self.rule == "min" else solvers.one_se_choice(path)
        W = np.zeros_like(gl.W)
        W[weights[chosen][0]] = weights[chosen][1]
        return path, W, path[chosen]["alpha"]

    @staticmethod
    def _refit_errors(refit, train, query, columns: np.ndarray) -> np.ndarray:
        """Per-task query errors after refitting every task on ``columns``."""
        if refit is None:
            return solvers.refit_validation(train, query, columns)
        return refit.query_errors(query, columns)

    def _fit_somp(self, train, query, max_features: int) -> None:
        path, order = solvers.somp(train, query, max_features, self.patience, bayes=self.refit == "bayes")
        self.path_ = path
        if not path:
            raise ValueError(
                "somp selected no column: every column is zero on every task's support "
                "rows, or the targets are zero; check the dictionary and the tasks"
            )
        best = int(np.argmin([p["val_mse"] for p in path])) if self.rule == "min" else solvers.one_se_choice(path)
        self.support_ = np.asarray(order[: path[best]["n_selected"]])
        self.scores_ = np.zeros(self.basis_.n_basis)
        for p in path:
            self.scores_[p["column"]] = p["score"]

    def _fit_ard(self, tasks) -> BasisSelector:
        from metafast.learners.bayes.estimator import MetaBayes

        if not isinstance(tasks, TaskSet) and iter(tasks) is tasks:
            raise TypeError(
                "argument 'tasks': method='ard' runs EM, which passes over the tasks many "
                "times; give a TaskSet, a list of chunks or a re-iterable stream "
                "(mf.tasks.stream), not a one-shot iterator"
            )
        first = next(iter(iter_task_chunks(tasks)))
        if isinstance(tasks, TaskSet):
            self.basis_ = self._fitted_basis(tasks)
        else:
            self.basis_ = self._fitted_basis(first)
        params = dict(self.ard_params or {})
        params.setdefault("n_jobs", self.n_jobs)
        params.setdefault("prior_weight", 0.0)  # no MAP floor: EM may drive variances to zero
        model = MetaBayes(basis=self.basis_, covariance="diag", **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            model.fit(tasks)
        self.ard_model_ = model
        mean = np.asarray(model.mean_, dtype=np.float64)
        var = np.clip(np.diag(model.covariance_), 0.0, None)
        post_var, power = solvers.ard_posterior_variance(
            self.basis_, iter_task_chunks(tasks), var, float(model.noise_var_)
        )
        # MacKay's well-determinedness: 1 - (mean posterior variance) / (prior variance)
        gamma = np.where(var > 0, 1.0 - post_var / np.where(var > 0, var, 1.0), 0.0)
        self.scores_ = gamma
        self.signal_power_ = (mean**2 + var) * power
        order = np.argsort(-gamma, kind="stable")
        keep = order[gamma[order] >= self.ard_threshold]
        max_features = min(self.max_features or gamma.size, gamma.size)
        if keep.size == 0:
            raise ValueError(
                f"ard kept no column: no column's per-task weight is determined by the tasks' "
                f"data (largest well-determinedness {gamma.max(initial=0.0):.3g} < ard_threshold="
                f"{self.ard_threshold}); are the targets constant, or the tasks too noisy?"
            )
        self.support_ = keep[:max_features].astype(np.int64)
        self.path_ = [
            {"threshold": float(g), "n_selected": int(np.sum(gamma >= g))} for g in (0.9, 0.75, 0.5, 0.25, 0.1, 0.01)
        ]
        self.selected_basis_ = restrict(self.basis_, np.sort(self.support_))
        self.n_features_in_ = first.n_features
        return self

    # ------------------------------------------------------------------ helpers
    def get_support(self, indices: bool = False) -> np.ndarray:
        """Mask (or indices, in importance order) of the selected columns."""
        if not hasattr(self, "support_"):
            raise NotFittedError("This BasisSelector is not fitted yet: call fit(tasks) first")
        if indices:
            return self.support_.copy()
        mask = np.zeros(self.basis_.n_basis, dtype=bool)
        mask[self.support_] = True
        return mask

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the selected columns (importance order)."""
        return np.asarray(self.basis_.get_feature_names_out(), dtype=object)[self.get_support(indices=True)]
