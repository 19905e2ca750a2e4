"""BasisSelector: choose the columns of a dictionary that the training tasks share.

    sel = mf.BasisSelector(mf.basis.union([...]), method="group-lasso").fit(train_tasks)
    model = mf.MetaBayes(basis=sel.selected_basis_).fit(train_tasks)

Each task has its own design matrix (its rows through the basis); a column is kept or dropped
for all tasks together.  Three methods:

- ``"group-lasso"`` (Obozinski, Taskar and Jordan 2010): min over W of
  sum_t 1/(2 n_t) ||y_t - Phi_t w_t||^2 + alpha sum_j ||W[j, :]||_2, solved by block coordinate
  descent in Cython (metafast/_kernels/_group_lasso.pyx) along a warm-started geometric alpha
  path with strong-rule screening, working sets and a duality-gap stop.  **alpha is chosen on
  the tasks' query sets**: the path is fitted on the support rows and each point scored by the
  median per-task query MSE after refitting every task by least squares on that point's columns
  (the relaxed group lasso: the lasso's shrinkage would favour too wide a support; the plain
  lasso's query MSE is kept in ``path_`` as "lasso_val_mse"); this is a deliberate use of the
  split.  The chosen alpha is then
  refitted on every row of the training tasks (``refit_rows="all"``) and its non-zero rows are
  the support.
- ``"somp"``: simultaneous orthogonal matching pursuit (Tropp, Gilbert and Strauss 2006) on the
  support rows: add the column maximising sum_t |<r_t, phi_tj>| / ||phi_tj||, refit every task
  by least squares, stop after ``patience`` steps without a better query MSE; the support is
  the prefix of the greedy order with the best query MSE.
- ``"ard"``: automatic relevance determination: MetaBayes with a diagonal prior covariance
  (``covariance="diag"``), whose EM drives the prior variances of unused columns toward zero.
  A column's relevance is its expected signal power (mean_j^2 + var_j) * mean(phi_j(x)^2) over
  the training rows; columns whose relevance is below ``ard_threshold`` (default 1e-3) times the
  largest are pruned, i.e. those that would carry less than 0.1 % of the strongest column's
  signal power.  MetaBayes runs with ``prior_weight=0`` (plain EM; its default MAP term keeps
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
from metafast.learners import _selection_solvers as solvers
from metafast.learners._base import iter_task_chunks
from metafast.parallel import effective_n_threads
from metafast.tasks._taskset import TaskSet

METHODS = ("group-lasso", "somp", "ard")
REFIT_ROWS = ("all", "support")


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
    refit_rows : {"all", "support"}
        group-lasso: rows of the final fit at the chosen alpha.
    tol, max_iter : group-lasso duality-gap tolerance (relative) and sweep budget per alpha.
    ard_threshold : float
        ard: relative relevance below which a column is pruned.
    ard_params : dict, optional
        Extra MetaBayes parameters for ard (e.g. ``{"max_iter": 300}``).
    n_jobs : int, optional
        Kernel threads (None = all cores).

    Attributes
    ----------
    support_ : (k,) selected columns, most important first.
    scores_ : (m,) importance of every column (group-lasso: RMS over tasks of its normalised
        weights; somp: the greedy score when picked, 0 if never picked; ard: relative relevance).
    path_ : list of dicts, one per path point or greedy step, with "val_mse" where validated.
    alpha_ : the chosen alpha (group-lasso).
    basis_ : the fitted dictionary.   selected_basis_ : ``basis_`` restricted to ``sorted(support_)``.
    """

    def __init__(self, basis: Any = None, method: str = "group-lasso", *, alpha: float | None = None,
                 alphas: Any = None, n_alphas: int = 30, alpha_min_ratio: float = 1e-3,
                 patience: int = 5, max_features: int | None = None, normalize: bool = True,
                 refit_rows: str = "all", tol: float = 1e-4, max_iter: int = 300,
                 ard_threshold: float = 1e-3, ard_params: dict | None = None, n_jobs: int | None = None):
        self.basis = basis
        self.method = method
        self.alpha = alpha
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.patience = patience
        self.max_features = max_features
        self.normalize = normalize
        self.refit_rows = refit_rows
        self.tol = tol
        self.max_iter = max_iter
        self.ard_threshold = ard_threshold
        self.ard_params = ard_params
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"parameter 'method' must be one of {METHODS}; got {self.method!r}")
        if self.refit_rows not in REFIT_ROWS:
            raise ValueError(f"parameter 'refit_rows' must be one of {REFIT_ROWS}; got {self.refit_rows!r}")
        if self.alpha is not None and not (np.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"parameter 'alpha' (lambda) must be a finite number > 0; got {self.alpha!r}")
        if self.alphas is not None:
            a = np.asarray(self.alphas, dtype=np.float64)
            if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
                raise ValueError("parameter 'alphas' (the lambda path) must be a non-empty 1-D array of "
                                 f"finite numbers > 0; got {self.alphas!r}")
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
            raise TypeError(f"parameter 'basis' must be a metafast BasisFamily or a family name; "
                            f"got {type(b).__name__}")
        return copy.deepcopy(b) if b.__sklearn_is_fitted__() else clone(b).fit_tasks(tasks)

    # ------------------------------------------------------------------ fit
    def fit(self, tasks, y=None) -> "BasisSelector":
        """Choose the columns from the training ``tasks`` (a TaskSet or a stream of chunks)."""
        self._check_params()
        self._threads = effective_n_threads(self.n_jobs)
        if self.method == "ard":
            return self._fit_ard(tasks)
        chunks = list(iter_task_chunks(tasks))
        ts = chunks[0] if len(chunks) == 1 else TaskSet.concatenate(chunks)
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
                    "split" + (" or a fixed alpha=" if self.method == "group-lasso" else ""))
            query = solvers.pack(self.basis_, ts.X_query, ts.y_query, ts.query_offsets,
                                 self.column_scale_, self._threads)
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
        gl = solvers.GroupLasso(train)
        if self.alpha is not None:
            alphas = np.array([float(self.alpha)])
        elif self.alphas is not None:
            alphas = np.sort(np.asarray(self.alphas, dtype=np.float64))[::-1]
        else:
            alphas = solvers.alpha_grid(gl.alpha_max, self.n_alphas, self.alpha_min_ratio)
        path, best, best_W, prev, since_best = [], None, None, None, 0
        for a in alphas:
            stats = gl.solve(float(a), prev, self.tol, self.max_iter)
            prev = float(a)
            nz = np.flatnonzero(np.any(gl.W != 0, axis=1))
            lasso_val = solvers.validation_mse(query, gl.W[nz], nz) if query is not None else np.nan
            val = solvers.refit_validation(train, query, nz) if query is not None else np.nan
            path.append({"alpha": float(a), "n_selected": int(nz.size), "val_mse": val,
                         "lasso_val_mse": lasso_val,
                         "objective": gl.objective(float(a)), **stats})
            if nz.size > max_features:
                break
            if nz.size and (best is None or not val >= best["val_mse"]):
                best, best_W, since_best = path[-1], gl.W.copy(), 0
            elif best is not None:
                since_best += 1
                if since_best >= self.patience:
                    break
        self.path_ = path
        if best is None:
            raise ValueError(
                f"every point of the group-lasso path selected no column (smallest alpha tried: "
                f"{path[-1]['alpha']:.4g}, while alpha_max = {gl.alpha_max:.4g} selects nothing): pass "
                "a smaller alpha / alphas, lower alpha_min_ratio, or check that the targets vary")
        self.alpha_ = best["alpha"]
        W = best_W
        if self.refit_rows == "all":
            full = ts.all_rows()
            packed = solvers.pack(self.basis_, full.X_support, full.y_support, full.support_offsets,
                                  self.column_scale_, self._threads)
            gl_all = solvers.GroupLasso(packed)
            gl_all.W[:] = best_W
            gl_all.R = packed.y - packed.predict(best_W, np.arange(best_W.shape[0]))
            gl_all.norms = gl_all._corr_norms()
            gl_all.solve(self.alpha_, None, self.tol, self.max_iter)
            if np.any(gl_all.W != 0):
                W = gl_all.W
        self.coef_ = W / self.column_scale_[:, None]
        norms = np.linalg.norm(W, axis=1) / np.sqrt(W.shape[1])
        self.scores_ = norms
        nz = np.flatnonzero(norms > 0)
        self.support_ = nz[np.argsort(-norms[nz], kind="stable")][:max_features]

    def _fit_somp(self, train, query, max_features: int) -> None:
        path, order = solvers.somp(train, query, max_features, self.patience)
        self.path_ = path
        if not path:
            raise ValueError("somp selected no column: every column is zero on every task's support "
                             "rows, or the targets are zero; check the dictionary and the tasks")
        best = int(np.argmin([p["val_mse"] for p in path]))
        self.support_ = np.asarray(order[:best + 1])
        self.scores_ = np.zeros(self.basis_.n_basis)
        for p in path:
            self.scores_[p["column"]] = p["score"]

    def _fit_ard(self, tasks) -> "BasisSelector":
        from metafast.learners.bayes import MetaBayes

        if not isinstance(tasks, TaskSet) and iter(tasks) is tasks:
            raise TypeError("argument 'tasks': method='ard' runs EM, which passes over the tasks many "
                            "times; give a TaskSet, a list of chunks or a re-iterable stream "
                            "(mf.tasks.stream), not a one-shot iterator")
        first = next(iter(iter_task_chunks(tasks)))
        if isinstance(tasks, TaskSet):
            self.basis_ = self._fitted_basis(tasks)
        else:
            self.basis_ = self._fitted_basis(first)
        params = dict(self.ard_params or {})
        params.setdefault("n_jobs", self.n_jobs)
        params.setdefault("prior_weight", 0.0)   # no MAP floor: EM may drive variances to zero
        model = MetaBayes(basis=self.basis_, covariance="diag", **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            model.fit(tasks)
        self.ard_model_ = model
        power = np.zeros(self.basis_.n_basis)
        n = 0
        for chunk in iter_task_chunks(tasks):
            for X in (chunk.X_support, chunk.X_query):
                for start in range(0, X.shape[0], solvers.DESIGN_ROWS):
                    Phi = self.basis_.design(X[start:start + solvers.DESIGN_ROWS]).astype(np.float64)
                    power += np.einsum("ij,ij->j", Phi, Phi)
                n += X.shape[0]
        power /= max(n, 1)
        relevance = (np.asarray(model.mean_) ** 2 + np.diag(model.covariance_)) * power
        top = float(relevance.max())
        rel = relevance / top if top > 0 else np.zeros_like(relevance)
        self.scores_ = rel
        order = np.argsort(-rel, kind="stable")
        keep = order[rel[order] >= self.ard_threshold]
        max_features = min(self.max_features or rel.size, rel.size)
        if keep.size == 0:
            raise ValueError("ard kept no column: every prior variance and mean is zero (are the "
                             "targets constant?)")
        self.support_ = keep[:max_features].astype(np.int64)
        self.path_ = [{"threshold": float(t), "n_selected": int(np.sum(rel >= t))}
                      for t in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)]
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
