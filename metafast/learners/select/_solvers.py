"""The solvers behind BasisSelector: the group-lasso path, SOMP and ARD's posterior variances.

The packed per-task designs and validation helpers are in ``_selection_pack``, the
empirical-Bayes refit that scores a selection in ``_selection_refit``; their names are
re-exported here, so ``_selection_solvers`` is the one namespace the selector uses.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _group_lasso
from metafast.learners.select._pack import (
    Packed,
    column_scale,
    median_with_se,
    one_se_choice,
    pack,
    refit_validation,
    ridge_solve,
    segment_sums,
    task_gram,
    task_query_errors,
    validation_mse,
)
from metafast.learners.select._refit import EmpiricalBayesRefit

__all__ = [
    "EmpiricalBayesRefit",
    "GroupLasso",
    "Packed",
    "alpha_grid",
    "ard_posterior_variance",
    "column_scale",
    "median_with_se",
    "one_se_choice",
    "pack",
    "refit_validation",
    "somp",
    "task_gram",
    "validation_mse",
]

WORKING_SET_MIN = 10  # smallest working-set budget of the group-lasso solver


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
            self.XT = np.ascontiguousarray(packed.PhiT[:, :n], dtype=np.float64)  # (m, n)
            self.Y = np.ascontiguousarray(packed.y.reshape(T, n).T)  # (n, T)
            self.XtY = self.XT @ self.Y / n  # (m, T)
            self._gram: dict[int, np.ndarray] = {}
            self.L = np.repeat(np.einsum("jn,jn->j", self.XT, self.XT)[:, None] / n, T, axis=1)
        else:
            self.L = np.ascontiguousarray(packed.column_norms2() * self.inv_n[None, :])
        self.L_max = np.ascontiguousarray(self.L.max(axis=1))
        self.y_dot = self._task_sums(packed.y, packed.y)
        self.norms = self._corr_norms()

    @classmethod
    def shared_design(cls, X: np.ndarray, Y: np.ndarray) -> GroupLasso:
        """The solver for tasks that all share the design X (n, m), targets Y (n, T), without
        packing T copies of X (what scikit-learn's MultiTaskLasso takes)."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        n, T = Y.shape
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(f"argument 'X' must have shape (n, m) with n = {n} rows like Y; got {X.shape}")
        packed = Packed(
            np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T).ravel(), np.arange(T + 1, dtype=np.int64) * n
        )
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
        dual = float(np.dot(self.inv_n, yr)) / s - 0.5 * float(np.dot(self.inv_n, r2)) / s**2
        primal = 0.5 * float(np.dot(self.inv_n, r2)) + lam * self._penalty()
        return primal - dual

    def _sweep(self, active: np.ndarray, lam: float, max_iter: int, inner_tol: float) -> int:
        """Block coordinate descent on the working set; refreshes R and the correlation norms."""
        if self.shared:
            Gc = self._gram_columns(active)  # (m, A)
            G_AA = np.ascontiguousarray(Gc[active])
            W_A = np.ascontiguousarray(self.W[active])
            H = np.ascontiguousarray(self.XtY[active] - G_AA @ W_A)
            done, _, _ = _group_lasso.gram_bcd_sweeps(G_AA, W_A, H, float(lam), int(max_iter), float(inner_tol))
            self.W[active] = W_A
            C = self.XtY - Gc @ W_A
            self.norms = np.sqrt(np.einsum("jt,jt->j", C, C))
            self.R = (self.Y - self.XT[active].T @ W_A).T.ravel()  # task-major, as packed
            return done
        done, _, _ = _group_lasso.bcd_sweeps(
            self.p.PhiT,
            self.p.offsets,
            self.inv_n,
            self.L,
            self.L_max,
            self.W,
            self.R,
            np.ascontiguousarray(active),
            float(lam),
            int(max_iter),
            float(inner_tol),
            self.p.n_threads,
        )
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
        return {
            "sweeps": sweeps,
            "gap": gap,
            "converged": gap <= gap_tol,
            "working_set": int(active.size),
            "covariance_mode": self.shared,
        }

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


def ard_posterior_variance(basis, chunks, prior_var: np.ndarray, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
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
            Phi = np.asarray(basis.design(full.X_support[off[t] : off[t + 1]]), dtype=np.float64)
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
def somp(
    train: Packed, query: Packed, max_features: int, patience: int, bayes: bool = True
) -> tuple[list[dict], list[int]]:
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
        cross = train.correlations(col, per_row_mean=False)[order].T if order else np.zeros((T, 0))  # (T, k)
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
        Wt = eb.fit(cols) if bayes else ridge_solve(gram, rhs)  # (T, k + 1)
        resid = train.y - train.predict(Wt.T, cols)
        val, se = median_with_se(task_query_errors(query, Wt.T, cols))
        path.append({"column": j, "n_selected": len(order), "score": float(score[j]), "val_mse": val, "val_se": se})
        if val < best * (1 - 1e-9):
            best, since_best = val, 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    return path, order
