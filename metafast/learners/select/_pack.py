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
from metafast.parallel import threads_for_work

DESIGN_ROWS = 8192  # rows of the design materialised at a time while packing
_WORK_PER_ROW = 16  # multiply-adds per packed row and column sweep (parallel.threads_for_work)


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
        _group_lasso.task_correlations(
            self.PhiT, np.ascontiguousarray(r, dtype=np.float64), self.offsets, scale, out, self.n_threads
        )
        return out

    def shared_design(self) -> bool:
        """True when every task has the same rows (one design X shared by all tasks)."""
        if self._shared is None:
            sizes = self.sizes
            n = int(sizes[0]) if sizes.size else 0
            self._shared = bool(
                n > 0
                and np.all(sizes == n)
                and all(np.array_equal(self.PhiT[:, :n], self.PhiT[:, o : o + n]) for o in self.offsets[1:-1])
            )
        return self._shared

    def column_norms2(self) -> np.ndarray:
        """(m, T) ||phi_tj||^2 (computed once)."""
        if self._norms2 is None:
            sq = np.ascontiguousarray(self.PhiT * self.PhiT)
            out = np.empty((self.PhiT.shape[0], self.n_tasks))
            _group_lasso.task_correlations(
                sq, np.ones(self.PhiT.shape[1]), self.offsets, np.ones(self.n_tasks), out, self.n_threads
            )
            self._norms2 = out
        return self._norms2

    def reweighted(self, columns: np.ndarray, factor: np.ndarray) -> Packed:
        """The packed tasks on ``columns`` only, column i multiplied by ``factor[i]``."""
        PhiT = np.ascontiguousarray(self.PhiT[columns] * np.asarray(factor, dtype=self.PhiT.dtype)[:, None])
        return Packed(PhiT, self.y, self.offsets, self.n_threads)

    def predict(self, W: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(N,) per-task predictions from W (len(columns), T) on the given columns."""
        task = np.repeat(np.arange(self.n_tasks), self.sizes)
        if columns.size == 0:
            return np.zeros(self.PhiT.shape[1])
        return np.einsum("jn,jn->n", self.PhiT[columns].astype(np.float64, copy=False), W[:, task])


def pack(basis, X: np.ndarray, y: np.ndarray, offsets: np.ndarray, scale: np.ndarray | None, n_threads: int) -> Packed:
    """Design of X through ``basis``, transposed and divided by ``scale`` (None: no scaling)."""
    m, N = basis.n_basis, X.shape[0]
    PhiT = np.empty((m, N), dtype=X.dtype)
    for start in range(0, N, DESIGN_ROWS):
        block = basis.design(X[start : start + DESIGN_ROWS])
        PhiT[:, start : start + block.shape[0]] = block.T
    if scale is not None:
        PhiT /= scale.astype(X.dtype)[:, None]
    threads = threads_for_work(n_threads, _WORK_PER_ROW * N)
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
    return per_task_mean(resid**2, packed_query.offsets)[keep]


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


#: targets whose root-mean-square lies outside this range are refused (their squares and the
#: solvers' variances under- or overflow long before float64's own limits)
TARGET_MAGNITUDE = (1e-50, 1e50)


def check_target_magnitude(ts) -> None:
    """Refuse targets too large or too small for the selection's arithmetic, saying how to rescale."""
    y = np.concatenate([ts.y_support, ts.y_query]).astype(np.float64, copy=False)
    if y.size == 0 or not np.isfinite(y).all():
        return  # empty or non-finite: the usual checks report it
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return
    rms = peak * float(np.sqrt(np.mean((y / peak) ** 2)))
    low, high = TARGET_MAGNITUDE
    if not low <= rms <= high:
        raise ValueError(
            f"argument 'tasks': the targets have magnitude {rms:.3g} (root mean square), outside the "
            f"range {low:g} to {high:g} that BasisSelector handles; rescale them (e.g. divide y by "
            f"{rms:.3g}): which functions matter does not depend on the unit of y"
        )
