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


@dataclass
class Packed:
    """Tasks' rows through the basis: PhiT (m, N) scaled columns, y (N,), offsets (T+1,)."""

    PhiT: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    n_threads: int = 1
    _norms2: np.ndarray | None = field(default=None, repr=False)

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

    def column_norms2(self) -> np.ndarray:
        """(m, T) ||phi_tj||^2 (computed once)."""
        if self._norms2 is None:
            sq = np.ascontiguousarray(self.PhiT * self.PhiT)
            out = np.empty((self.PhiT.shape[0], self.n_tasks))
            _group_lasso.task_correlations(sq, np.ones(self.PhiT.shape[1]), self.offsets,
                                           np.ones(self.n_tasks), out, self.n_threads)
            self._norms2 = out
        return self._norms2

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


def validation_mse(packed_query: Packed, W: np.ndarray, columns: np.ndarray) -> float:
    """Median over tasks with query rows of the per-task query MSE.

    The median, not the mean: a few tasks whose support points happen to make their refit
    ill-conditioned would otherwise decide the choice for all tasks."""
    resid = packed_query.y - packed_query.predict(W, columns)
    keep = packed_query.sizes > 0
    return float(np.median(per_task_mean(resid ** 2, packed_query.offsets)[keep]))


def task_gram(train: Packed, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-task Gram matrices (T, k, k) and right-hand sides (T, k) of the given columns."""
    k, T = columns.size, train.n_tasks
    gram = np.empty((T, k, k))
    sub = np.ascontiguousarray(train.PhiT[columns])
    for a in range(k):
        gram[:, :, a] = train.correlations(np.asarray(sub[a], dtype=np.float64), per_row_mean=False).T[:, :k]
    rhs = train.correlations(train.y, per_row_mean=False)[columns].T
    return gram, np.ascontiguousarray(rhs)


def refit_validation(train: Packed, query: Packed, columns: np.ndarray) -> float:
    """Query MSE after refitting every task by least squares on ``columns`` (the "relaxed"
    score: free of the lasso's shrinkage, so it prefers the right support, not a wider one)."""
    if columns.size == 0:
        return validation_mse(query, np.zeros((0, train.n_tasks)), columns)
    sub = Packed(np.ascontiguousarray(train.PhiT[columns]), train.y, train.offsets, train.n_threads)
    gram, rhs = task_gram(sub, np.arange(columns.size))
    W = ridge_solve(gram, rhs)
    return validation_mse(query, W.T, columns)


# ---------------------------------------------------------------------- group lasso
class GroupLasso:
    """Block coordinate descent for the multi-task group lasso on one packed problem.

    Working set: only the columns that are non-zero or pass the strong rule are swept; after
    they converge every column's KKT condition ||c_j|| <= lam is checked (c_tj = phi_tj . r_t
    / n_t), violators join, and the solve stops when the duality gap is below
    ``tol`` times the objective at W = 0.
    """

    def __init__(self, packed: Packed):
        self.p = packed
        sizes = packed.sizes
        self.inv_n = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1), 0.0)
        self.L = np.ascontiguousarray(packed.column_norms2() * self.inv_n[None, :])
        self.L_max = np.ascontiguousarray(self.L.max(axis=1))
        m, T = self.L.shape
        self.W = np.zeros((m, T))
        self.R = packed.y.copy()
        self.task_of_row = np.repeat(np.arange(T), sizes)
        self.y_dot = self._segment(packed.y * packed.y)
        self.norms = self._corr_norms()

    def _segment(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.task_of_row, weights=v, minlength=self.p.n_tasks)

    def _corr_norms(self) -> np.ndarray:
        C = self.p.correlations(self.R, per_row_mean=True)
        return np.sqrt(np.einsum("jt,jt->j", C, C))

    @property
    def alpha_max(self) -> float:
        """Smallest lambda at which W = 0 (the largest correlation norm at W = 0)."""
        return float(self._corr_norms_at_zero().max())

    def _corr_norms_at_zero(self) -> np.ndarray:
        C = self.p.correlations(self.p.y, per_row_mean=True)
        return np.sqrt(np.einsum("jt,jt->j", C, C))

    def objective(self, lam: float) -> float:
        r2 = self._segment(self.R * self.R)
        return float(0.5 * np.dot(self.inv_n, r2) + lam * np.linalg.norm(self.W, axis=1).sum())

    def duality_gap(self, lam: float) -> float:
        r2 = self._segment(self.R * self.R)
        yr = self._segment(self.p.y * self.R)
        s = max(1.0, float(self.norms.max(initial=0.0)) / lam)
        dual = float(np.dot(self.inv_n, yr)) / s - 0.5 * float(np.dot(self.inv_n, r2)) / s ** 2
        return self.objective(lam) - dual

    def solve(self, lam: float, lam_prev: float | None, tol: float, max_iter: int) -> dict:
        """Minimise at ``lam`` from the current W (warm start); returns solver statistics."""
        nonzero = np.flatnonzero(np.any(self.W != 0, axis=1))
        if lam_prev is None:
            strong = np.flatnonzero(self.norms >= lam)
        else:  # sequential strong rule (Tibshirani et al. 2012); KKT checks make it safe
            strong = np.flatnonzero(self.norms >= 2 * lam - lam_prev)
        active = np.union1d(nonzero, strong).astype(np.int64)
        gap_tol = tol * 0.5 * float(np.dot(self.inv_n, self.y_dot))
        inner_tol, sweeps, gap = min(1e-4, 1e-3 * np.sqrt(tol)), 0, np.inf
        for _ in range(max(1, max_iter)):
            if active.size:
                done, _, _ = _group_lasso.bcd_sweeps(
                    self.p.PhiT, self.p.offsets, self.inv_n, self.L, self.L_max, self.W, self.R,
                    np.ascontiguousarray(active), float(lam), int(max_iter), float(inner_tol),
                    self.p.n_threads)
                sweeps += done
            self.norms = self._corr_norms()
            zero = ~np.any(self.W != 0, axis=1)
            violators = np.flatnonzero(zero & (self.norms > lam * (1 + 1e-12)))
            violators = np.setdiff1d(violators, active)
            if violators.size:
                active = np.union1d(active, violators).astype(np.int64)
                continue
            gap = self.duality_gap(lam)
            if gap <= gap_tol or sweeps >= max_iter:
                break
            inner_tol = max(inner_tol * 0.01, 1e-15)
        return {"sweeps": sweeps, "gap": gap, "converged": gap <= gap_tol, "working_set": int(active.size)}


def alpha_grid(alpha_max: float, n_alphas: int, ratio: float) -> np.ndarray:
    """Geometric grid from alpha_max down to alpha_max * ratio."""
    return alpha_max * np.geomspace(1.0, ratio, n_alphas)


# ---------------------------------------------------------------------- SOMP
def somp(train: Packed, query: Packed, max_features: int, patience: int) -> tuple[list[dict], list[int]]:
    """Simultaneous OMP (Tropp, Gilbert and Strauss 2006) with per-task least-squares refits.

    Each step adds the column maximising sum_t |phi_tj . r_t| / ||phi_tj|| (tasks where the
    column is zero contribute 0), refits every task on the chosen columns (a tiny relative
    ridge keeps the solves defined when a task has fewer rows than columns) and records the
    query MSE.  Stops after ``patience`` steps without a better query MSE, or at
    ``max_features``.  Returns the path records and the greedy order.
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
        Wt = ridge_solve(gram, rhs)                                       # (T, k + 1)
        cols = np.asarray(order)
        resid = train.y - train.predict(Wt.T, cols)
        val = validation_mse(query, Wt.T, cols)
        path.append({"column": j, "n_selected": len(order), "score": float(score[j]),
                     "val_mse": val})
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
