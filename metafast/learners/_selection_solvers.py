"""The solvers behind BasisSelector: packed per-task designs, the group-lasso path, SOMP.

Every task has its own design matrix Phi_t (its rows of the packed X through the basis).  The
designs are stored transposed, PhiT (m, N), so one column of every task is contiguous (what the
kernels in metafast/_kernels/_group_lasso.pyx sweep).  Columns are divided by a scale shared by
all tasks (root mean square over the tasks' rows) so that the penalty treats families of
different magnitude alike; an all-zero column keeps scale 1 (no division by zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metafast._kernels import _group_lasso
from metafast.learners._base import per_task_mean

DESIGN_ROWS = 8192     # rows of the design materialised at a time while packing
# Below this many packed rows the per-column parallel loops of the kernels run on one thread:
# waking threads for every column costs more than the column's work.
MIN_PARALLEL_ROWS = 1 << 16
WORKING_SET_MIN = 10   # smallest working-set budget of the group-lasso solver


@dataclass
class Packed:
    """Tasks' rows through the basis: PhiT (m, N) scaled columns, y (N,), offsets (T+1,)."""

    PhiT: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    n_threads: int = 1
    _norms2: np.ndarray | None = field(default=None, repr=False)
    _shared: bool | None = field(default=None, repr=False)

    @property
    def n_tasks(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def correlations(self, r: np.ndarray, per_row_mean: bool) -> np.ndarray:
        """(m, T): phi_tj . r_t, divided by n_t when ``per_row_mean``."""
        sizes = self.sizes
        scale = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1), 0.0) if per_row_mean else np.ones(len(sizes))
        out = np.empty((self.PhiT.shape[0], self.n_tasks))
        _group_lasso.task_correlations(self.PhiT, np.ascontiguousarray(r, dtype=np.float64), self.offsets,
                                       scale, out, self.n_threads)
        return out

    def shared_design(self) -> bool:
        """True when every task has the same rows (one design X shared by all tasks)."""
        if self._shared is None:
            sizes = self.sizes
            n = int(sizes[0]) if sizes.size else 0
            self._shared = bool(n > 0 and np.all(sizes == n) and all(
                np.array_equal(self.PhiT[:, :n], self.PhiT[:, o:o + n]) for o in self.offsets[1:-1]))
        return self._shared

    def column_norms2(self) -> np.ndarray:
        """(m, T) ||phi_tj||^2 (computed once)."""
        if self._norms2 is None:
            sq = np.ascontiguousarray(self.PhiT * self.PhiT)
            out = np.empty((self.PhiT.shape[0], self.n_tasks))
            _group_lasso.task_correlations(sq, np.ones(self.PhiT.shape[1]), self.offsets,
                                           np.ones(self.n_tasks), out, self.n_threads)
            self._norms2 = out
        return self._norms2

    def reweighted(self, columns: np.ndarray, factor: np.ndarray) -> "Packed":
        """The packed tasks on ``columns`` only, column i multiplied by ``factor[i]``."""
        PhiT = np.ascontiguousarray(self.PhiT[columns] * np.asarray(factor, dtype=self.PhiT.dtype)[:, None])
        return Packed(PhiT, self.y, self.offsets, self.n_threads)

    def predict(self, W: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(N,) per-task predictions from W (len(columns), T) on the given columns."""
        task = np.repeat(np.arange(self.n_tasks), self.sizes)
        if columns.size == 0:
            return np.zeros(self.PhiT.shape[1])
        return np.einsum("jn,jn->n", self.PhiT[columns].astype(np.float64, copy=False), W[:, task])


def pack(basis, X: np.ndarray, y: np.ndarray, offsets: np.ndarray, scale: np.ndarray | None,
         n_threads: int) -> Packed:
    """Design of X through ``basis``, transposed and divided by ``scale`` (None: no scaling)."""
    m, N = basis.n_basis, X.shape[0]
    PhiT = np.empty((m, N), dtype=X.dtype)
    for start in range(0, N, DESIGN_ROWS):
        block = basis.design(X[start:start + DESIGN_ROWS])
        PhiT[:, start:start + block.shape[0]] = block.T
    if scale is not None:
        PhiT /= scale.astype(X.dtype)[:, None]
    threads = n_threads if N >= MIN_PARALLEL_ROWS else 1
    return Packed(PhiT, np.asarray(y, dtype=np.float64), np.asarray(offsets, dtype=np.int64), threads)


def column_scale(packed: Packed) -> np.ndarray:
    """Root mean square of each column over the tasks' rows; 1 for an all-zero column."""
    n = max(int(packed.sizes.sum()), 1)
    rms = np.sqrt(packed.column_norms2().sum(axis=1) / n)
    return np.where(rms > 0, rms, 1.0)


def task_query_errors(packed_query: Packed, W: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per-task query MSE of the tasks that have query rows."""
    resid = packed_query.y - packed_query.predict(W, columns)
    keep = packed_query.sizes > 0
    return per_task_mean(resid ** 2, packed_query.offsets)[keep]


def validation_mse(packed_query: Packed, W: np.ndarray, columns: np.ndarray) -> float:
    """Median over tasks with query rows of the per-task query MSE.

    The median, not the mean: a few tasks whose support points happen to make their refit
    ill-conditioned would otherwise decide the choice for all tasks."""
    return float(np.median(task_query_errors(packed_query, W, columns)))


def median_with_se(errors: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Median of the per-task errors and its bootstrap standard error over tasks (fixed seed:
    the same tasks give the same answer)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size < 2:
        return float(np.median(errors)) if errors.size else np.nan, 0.0
    rng = np.random.default_rng(seed)
    boot = np.median(errors[rng.integers(0, errors.size, (n_boot, errors.size))], axis=1)
    return float(np.median(errors)), float(boot.std(ddof=1))


def one_se_choice(path: list[dict], key: str = "n_selected") -> int:
    """The one-standard-error rule (Breiman et al. 1984; glmnet's lambda.1se): among the points
    whose validation error is within one standard error of the best, the one with the fewest
    columns.  Points need "val_mse" and "val_se"; points selecting nothing are skipped."""
    ok = [i for i, p in enumerate(path) if p[key] > 0 and np.isfinite(p["val_mse"])]
    if not ok:
        return -1
    best = min(ok, key=lambda i: path[i]["val_mse"])
    bound = path[best]["val_mse"] + path[best]["val_se"]
    return min((i for i in ok if path[i]["val_mse"] <= bound), key=lambda i: (path[i][key], i))


def task_gram(train: Packed, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-task Gram matrices (T, k, k) and right-hand sides (T, k) of the given columns."""
    k, T = columns.size, train.n_tasks
    gram = np.empty((T, k, k))
    sub = np.ascontiguousarray(train.PhiT[columns])
    for a in range(k):
        gram[:, :, a] = train.correlations(np.asarray(sub[a], dtype=np.float64), per_row_mean=False).T[:, :k]
    rhs = train.correlations(train.y, per_row_mean=False)[columns].T
    return gram, np.ascontiguousarray(rhs)


def refit_validation(train: Packed, query: Packed, columns: np.ndarray) -> np.ndarray:
    """Per-task query MSE after refitting every task by least squares on ``columns`` (the
    "relaxed" score: free of the lasso's shrinkage, so it prefers the right support, not a
    wider one)."""
    if columns.size == 0:
        return task_query_errors(query, np.zeros((0, train.n_tasks)), columns)
    sub = Packed(np.ascontiguousarray(train.PhiT[columns]), train.y, train.offsets, train.n_threads)
    gram, rhs = task_gram(sub, np.arange(columns.size))
    W = ridge_solve(gram, rhs)
    return task_query_errors(query, W.T, columns)


# ---------------------------------------------------------------------- empirical-Bayes refit
EB_ITERATIONS = 30        # EM iterations of an empirical-Bayes refit from scratch (a third warm)
EB_BLOCK_TASKS = 512      # tasks per batched block of an empirical-Bayes E-step


class EmpiricalBayesRefit:
    """Score a set of columns as the learner that will use it would: every task refitted under
    a Gaussian prior w_t ~ N(mu, diag(v)) with noise s2, all three estimated across the tasks by
    EM (the hierarchical model of MetaBayes with a diagonal covariance).

    A per-task least-squares refit needs more rows than columns and degenerates as the support
    grows toward n_t (its query error explodes), so it favours too small a support whenever the
    tasks are short; the shared prior keeps each refit defined and shrinks the weights the tasks
    do not determine.  The E-step works per task in the n_t x n_t form (Woodbury), batched over
    tasks of one size.  Priors are remembered per column, so a path warm-starts.
    """

    def __init__(self, train: Packed, n_iter: int = EB_ITERATIONS):
        """``n_iter`` EM iterations for the first fit, a third of them once warm."""
        self.train = train
        self.n_iter = n_iter
        self.prior: dict[int, tuple[float, float]] = {}
        self._scored: dict[tuple, np.ndarray] = {}
        sizes = train.sizes
        self.groups = [(np.flatnonzero(sizes == n), int(n)) for n in np.unique(sizes) if n > 0]
        y2 = float(np.dot(train.y, train.y)) / max(int(sizes.sum()), 1)
        self.s2 = 0.5 * y2 if y2 > 0 else 1.0
        self.s2_floor = 1e-10 * y2 + 1e-300

    def fit(self, columns: np.ndarray) -> np.ndarray:
        """Posterior means (T, k) of every task's weights on ``columns``."""
        train, k, T = self.train, columns.size, self.train.n_tasks
        if k == 0:
            return np.zeros((T, 0))
        PhiT = train.PhiT[columns]
        blocks = []
        for idx, n in self.groups:
            for lo in range(0, idx.size, EB_BLOCK_TASKS):
                tasks = idx[lo:lo + EB_BLOCK_TASKS]
                rows = train.offsets[tasks][:, None] + np.arange(n)[None, :]
                blocks.append((tasks, np.ascontiguousarray(np.moveaxis(PhiT[:, rows], 0, -1), dtype=np.float64),
                               train.y[rows]))
        start = np.median([v for _, v in self.prior.values()]) if self.prior else None
        if start is None:
            power = np.mean(train.column_norms2()[columns].sum(axis=1)) / max(int(train.sizes.sum()), 1)
            start = 2 * self.s2 / max(k * power, 1e-300)
        mu = np.array([self.prior.get(int(j), (0.0, start))[0] for j in columns])
        v = np.array([self.prior.get(int(j), (0.0, start))[1] for j in columns])
        N = float(train.sizes.sum())
        n_empty = int(np.sum(train.sizes == 0))
        M = np.tile(mu, (T, 1))
        for _ in range(self.n_iter if not self.prior else max(1, self.n_iter // 3)):
            M = np.tile(mu, (T, 1))
            post_var, sq = v * n_empty, 0.0                           # an empty task keeps its prior
            for tasks, Phi, y in blocks:
                PV = Phi * v                                           # (B, n, k)
                K = PV @ np.swapaxes(Phi, 1, 2)
                K[:, np.arange(K.shape[1]), np.arange(K.shape[1])] += self.s2
                Kinv = np.linalg.inv(K)
                r = y - Phi @ mu
                M[tasks] = mu + np.einsum("bnk,bn->bk", PV, np.einsum("bnm,bm->bn", Kinv, r))
                post_var += (v - np.einsum("bnk,bnk->bk", PV, Kinv @ PV)).sum(axis=0)
                res = y - np.einsum("bnk,bk->bn", Phi, M[tasks])
                # E||y - Phi w||^2 = ||y - Phi m||^2 + tr(Phi S Phi^T),  tr = s2 n - s2^2 tr(K^-1)
                sq += float((res ** 2).sum() + self.s2 * res.size
                            - self.s2 ** 2 * np.einsum("bnn->", Kinv))
            mu = M.mean(axis=0)
            v = np.maximum(((M - mu) ** 2).sum(axis=0) / T + post_var / T, 0.0)
            self.s2 = max(sq / N, self.s2_floor)
        self.prior.update({int(j): (float(a), float(b)) for j, a, b in zip(columns, mu, v)})
        return M

    def query_errors(self, query: Packed, columns: np.ndarray) -> np.ndarray:
        """Per-task query MSE (tasks with query rows) of the refit on ``columns`` (a support met
        before, e.g. at neighbouring points of a path, is not refitted)."""
        key = tuple(np.sort(columns).tolist())
        if key not in self._scored:
            self._scored[key] = task_query_errors(query, self.fit(columns).T, columns)
        return self._scored[key]


# ---------------------------------------------------------------------- group lasso
class GroupLasso:
    """Block coordinate descent for the multi-task group lasso on one packed problem.

    Working set: only the columns that are non-zero or pass the strong rule are swept; after
    they converge every column's KKT condition ||c_j|| <= lam is checked (c_tj = phi_tj . r_t
    / n_t), violators join, and the solve stops when the duality gap is below
    ``tol`` times the objective at W = 0.

    When every task shares one design X (n rows), the solver works in covariance mode: it
    keeps C = X^T Y / n - G W with G = X^T X / n, computes only the Gram columns of the
    columns that ever enter the working set, and sweeps the working set on its (A, A) Gram
    (``gram_bcd_sweeps``): a block update costs A T instead of n T, and the KKT check is one
    (m, A) x (A, T) product instead of a pass over the n T residuals.
    """

    def __init__(self, packed: Packed):
        self.p = packed
        sizes = packed.sizes
        m, T = packed.PhiT.shape[0], packed.n_tasks
        self.inv_n = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1), 0.0)
        self.W = np.zeros((m, T))
        self.R = packed.y.copy()
        self.task_of_row = np.repeat(np.arange(T), sizes)
        self.shared = packed.shared_design()
        if self.shared:
            n = int(sizes[0])
            self.XT = np.ascontiguousarray(packed.PhiT[:, :n], dtype=np.float64)   # (m, n)
            self.Y = np.ascontiguousarray(packed.y.reshape(T, n).T)                  # (n, T)
            self.XtY = self.XT @ self.Y / n                                           # (m, T)
            self._gram: dict[int, np.ndarray] = {}
            self.L = np.repeat(np.einsum("jn,jn->j", self.XT, self.XT)[:, None] / n, T, axis=1)
        else:
            self.L = np.ascontiguousarray(packed.column_norms2() * self.inv_n[None, :])
        self.L_max = np.ascontiguousarray(self.L.max(axis=1))
        self.y_dot = self._task_sums(packed.y, packed.y)
        self.norms = self._corr_norms()

    @classmethod
    def shared_design(cls, X: np.ndarray, Y: np.ndarray) -> "GroupLasso":
        """The solver for tasks that all share the design X (n, m), targets Y (n, T), without
        packing T copies of X (what scikit-learn's MultiTaskLasso takes)."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        n, T = Y.shape
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(f"argument 'X' must have shape (n, m) with n = {n} rows like Y; got {X.shape}")
        packed = Packed(np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T).ravel(),
                        np.arange(T + 1, dtype=np.int64) * n)
        packed._shared = True
        return cls(packed)

    def _task_sums(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(T,) per-task sums of a * b over the packed rows."""
        if self.shared:
            n = self.Y.shape[0]
            return np.einsum("tn,tn->t", a.reshape(-1, n), b.reshape(-1, n))
        return np.bincount(self.task_of_row, weights=a * b, minlength=self.p.n_tasks)

    def _penalty(self) -> float:
        nz = np.flatnonzero(np.any(self.W != 0, axis=1))
        return float(np.sqrt(np.einsum("jt,jt->j", self.W[nz], self.W[nz])).sum())

    def _gram_columns(self, columns: np.ndarray) -> np.ndarray:
        """(m, len(columns)) columns of G = X^T X / n (shared design), computed once each."""
        new = [int(j) for j in columns if int(j) not in self._gram]
        if new:
            block = self.XT @ self.XT[new].T / self.XT.shape[1]
            for i, j in enumerate(new):
                self._gram[j] = block[:, i].copy()
        if not len(columns):
            return np.zeros((self.XT.shape[0], 0))
        return np.stack([self._gram[int(j)] for j in columns], axis=1)

    def _correlations(self) -> np.ndarray:
        """(m, T) c_tj = phi_tj . r_t / n_t at the current W."""
        if self.shared:
            nz = np.flatnonzero(np.any(self.W != 0, axis=1))
            return self.XtY - self._gram_columns(nz) @ self.W[nz]
        return self.p.correlations(self.R, per_row_mean=True)

    def _corr_norms(self) -> np.ndarray:
        C = self._correlations()
        return np.sqrt(np.einsum("jt,jt->j", C, C))

    def warm_start(self, W: np.ndarray) -> None:
        """Start the next solve from W (m, T): residuals and correlations follow."""
        self.W[:] = W
        nz = np.flatnonzero(np.any(self.W != 0, axis=1))
        if self.shared:
            self.R = (self.Y - self.XT[nz].T @ self.W[nz]).T.ravel()
        else:
            self.R = self.p.y - self.p.predict(self.W[nz], nz)
        self.norms = self._corr_norms()

    @property
    def alpha_max(self) -> float:
        """Smallest lambda at which W = 0 (the largest correlation norm at W = 0)."""
        return float(self._corr_norms_at_zero().max())

    def _corr_norms_at_zero(self) -> np.ndarray:
        C = self.XtY if self.shared else self.p.correlations(self.p.y, per_row_mean=True)
        return np.sqrt(np.einsum("jt,jt->j", C, C))

    def objective(self, lam: float) -> float:
        r2 = self._task_sums(self.R, self.R)
        return float(0.5 * np.dot(self.inv_n, r2) + lam * self._penalty())

    def duality_gap(self, lam: float) -> float:
        r2 = self._task_sums(self.R, self.R)
        yr = self._task_sums(self.p.y, self.R)
        s = max(1.0, float(self.norms.max(initial=0.0)) / lam)
        dual = float(np.dot(self.inv_n, yr)) / s - 0.5 * float(np.dot(self.inv_n, r2)) / s ** 2
        primal = 0.5 * float(np.dot(self.inv_n, r2)) + lam * self._penalty()
        return primal - dual

    def _sweep(self, active: np.ndarray, lam: float, max_iter: int, inner_tol: float) -> int:
        """Block coordinate descent on the working set; refreshes R and the correlation norms."""
        if self.shared:
            Gc = self._gram_columns(active)                                # (m, A)
            G_AA = np.ascontiguousarray(Gc[active])
            W_A = np.ascontiguousarray(self.W[active])
            H = np.ascontiguousarray(self.XtY[active] - G_AA @ W_A)
            done, _, _ = _group_lasso.gram_bcd_sweeps(G_AA, W_A, H, float(lam), int(max_iter), float(inner_tol))
            self.W[active] = W_A
            C = self.XtY - Gc @ W_A
            self.norms = np.sqrt(np.einsum("jt,jt->j", C, C))
            self.R = (self.Y - self.XT[active].T @ W_A).T.ravel()     # task-major, as packed
            return done
        done, _, _ = _group_lasso.bcd_sweeps(
            self.p.PhiT, self.p.offsets, self.inv_n, self.L, self.L_max, self.W, self.R,
            np.ascontiguousarray(active), float(lam), int(max_iter), float(inner_tol), self.p.n_threads)
        self.norms = self._corr_norms()
        return done

    def solve(self, lam: float, lam_prev: float | None, tol: float, max_iter: int) -> dict:
        """Minimise at ``lam`` from the current W (warm start); returns solver statistics.

        Working sets as in celer / skglm (Massias et al. 2018): the non-zero columns plus the
        strongest candidates of the sequential strong rule (Tibshirani et al. 2012), at most
        max(10, 2 x non-zero) of them; after the working set converges, every column's KKT
        condition is checked, and the strongest violators join with the working-set budget
        doubled.  The solve ends when the duality gap of the full problem is below ``tol``
        times the objective at W = 0."""
        nonzero = np.flatnonzero(np.any(self.W != 0, axis=1))
        budget = max(WORKING_SET_MIN, 2 * nonzero.size)
        threshold = lam if lam_prev is None else 2 * lam - lam_prev
        active = self._grow(nonzero, threshold, budget)
        gap_tol = tol * 0.5 * float(np.dot(self.inv_n, self.y_dot))
        inner_tol, sweeps, gap = min(1e-4, 1e-3 * np.sqrt(tol)), 0, np.inf
        for _ in range(max(1, max_iter)):
            if active.size:
                sweeps += self._sweep(active, lam, max_iter, inner_tol)
            budget = max(budget, 2 * int(np.count_nonzero(np.any(self.W != 0, axis=1))))
            grown = self._grow(active, lam * (1 + 1e-12), budget)
            if grown.size > active.size:
                active, budget = grown, 2 * budget
                continue
            gap = self.duality_gap(lam)
            if gap <= gap_tol or sweeps >= max_iter:
                break
            inner_tol = max(inner_tol * 0.01, 1e-15)
        return {"sweeps": sweeps, "gap": gap, "converged": gap <= gap_tol, "working_set": int(active.size),
                "covariance_mode": self.shared}

    def _grow(self, active: np.ndarray, threshold: float, budget: int) -> np.ndarray:
        """``active`` plus the columns outside it whose correlation norm exceeds ``threshold``,
        strongest first, up to ``budget`` columns in all (at least one newcomer if any)."""
        outside = np.ones(self.norms.size, dtype=bool)
        outside[active] = False
        cand = np.flatnonzero(outside & (self.norms > threshold))
        room = max(budget - active.size, 1)
        if cand.size > room:
            cand = cand[np.argpartition(-self.norms[cand], room - 1)[:room]]
        return np.union1d(active, cand).astype(np.int64)


def ard_posterior_variance(basis, chunks, prior_var: np.ndarray, noise_var: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Mean over tasks of each weight's posterior variance under the prior N(., diag(prior_var))
    and noise ``noise_var``, from every labelled row of each task (the rows the ARD EM used),
    and each column's mean square phi_j(x)^2 over those rows.

    Per task, by Woodbury: diag S_t = v - diag(V Phi^T K^-1 Phi V), K = s2 I + Phi V Phi^T
    (n_t x n_t: cheap for the few rows of a task)."""
    m = prior_var.size
    post, power, n_tasks, n_rows = np.zeros(m), np.zeros(m), 0, 0
    s2 = max(noise_var, 1e-300)
    for chunk in chunks:
        full = chunk.all_rows()
        off = full.support_offsets
        for t in range(len(full)):
            Phi = np.asarray(basis.design(full.X_support[off[t]:off[t + 1]]), dtype=np.float64)
            PV = Phi * prior_var
            K = PV @ Phi.T
            K[np.diag_indices_from(K)] += s2
            Z = np.linalg.solve(K, PV) if Phi.shape[0] else PV
            post += prior_var - np.einsum("ij,ij->j", PV, Z)
            power += np.einsum("ij,ij->j", Phi, Phi)
            n_rows += Phi.shape[0]
        n_tasks += len(full)
    return post / max(n_tasks, 1), power / max(n_rows, 1)


def alpha_grid(alpha_max: float, n_alphas: int, ratio: float) -> np.ndarray:
    """Geometric grid from alpha_max down to alpha_max * ratio."""
    return alpha_max * np.geomspace(1.0, ratio, n_alphas)


# ---------------------------------------------------------------------- SOMP
def somp(train: Packed, query: Packed, max_features: int, patience: int,
         bayes: bool = True) -> tuple[list[dict], list[int]]:
    """Simultaneous OMP (Tropp, Gilbert and Strauss 2006) with per-task least-squares refits.

    Each step adds the column maximising sum_t |phi_tj . r_t| / ||phi_tj|| (tasks where the
    column is zero contribute 0), refits every task on the chosen columns (a tiny relative
    ridge keeps the solves defined when a task has fewer rows than columns) and records the
    query MSE.  Stops after ``patience`` steps without a better query MSE, or at
    ``max_features``.  With ``bayes`` (default) the refit is the empirical-Bayes one
    (``EmpiricalBayesRefit``) instead of least squares.  Returns the path records and the greedy
    order.
    """
    norms = np.sqrt(train.column_norms2())
    inv_norm = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    T = train.n_tasks
    order: list[int] = []
    gram = np.zeros((T, 0, 0))
    rhs = np.zeros((T, 0))
    resid = train.y.copy()
    path: list[dict] = []
    best, since_best = np.inf, 0
    eb = EmpiricalBayesRefit(train)
    for _ in range(max_features):
        C = train.correlations(resid, per_row_mean=False)
        score = np.einsum("jt,jt->j", np.abs(C), inv_norm)
        score[order] = -np.inf
        j = int(np.argmax(score))
        if not score[j] > 0:
            break
        col = np.ascontiguousarray(train.PhiT[j], dtype=np.float64)
        cross = (train.correlations(col, per_row_mean=False)[order].T if order
                 else np.zeros((T, 0)))                                   # (T, k)
        k = len(order)
        new = np.zeros((T, k + 1, k + 1))
        new[:, :k, :k] = gram
        new[:, :k, k] = cross
        new[:, k, :k] = cross
        new[:, k, k] = norms[j] ** 2
        gram = new
        rhs = np.concatenate([rhs, segment_sums(col * train.y, train.offsets)[:, None]], axis=1)
        order.append(j)
        cols = np.asarray(order)
        Wt = eb.fit(cols) if bayes else ridge_solve(gram, rhs)           # (T, k + 1)
        resid = train.y - train.predict(Wt.T, cols)
        val, se = median_with_se(task_query_errors(query, Wt.T, cols))
        path.append({"column": j, "n_selected": len(order), "score": float(score[j]),
                     "val_mse": val, "val_se": se})
        if val < best * (1 - 1e-9):
            best, since_best = val, 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    return path, order


def segment_sums(v: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T,) sums of v over each task's rows (empty tasks give 0)."""
    cs = np.concatenate([[0.0], np.cumsum(v)])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def ridge_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Per-task solves of (G_t + eps_t I) w_t = b_t, eps_t = 1e-6 mean diag(G_t) + 1e-12."""
    k = gram.shape[1]
    diag = np.einsum("tii->t", gram) / k
    eps = 1e-6 * diag + 1e-12
    A = gram + eps[:, None, None] * np.eye(k)[None]
    return np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
