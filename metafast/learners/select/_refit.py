"""The empirical-Bayes refit that scores a set of selected columns (BasisSelector's validation)."""

from __future__ import annotations

import numpy as np

from metafast.learners.select._pack import Packed, task_query_errors

EB_ITERATIONS = 30  # EM iterations of an empirical-Bayes refit from scratch (a third warm)
EB_BLOCK_TASKS = 512  # tasks per batched block of an empirical-Bayes E-step


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
                tasks = idx[lo : lo + EB_BLOCK_TASKS]
                rows = train.offsets[tasks][:, None] + np.arange(n)[None, :]
                blocks.append(
                    (tasks, np.ascontiguousarray(np.moveaxis(PhiT[:, rows], 0, -1), dtype=np.float64), train.y[rows])
                )
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
            post_var, sq = v * n_empty, 0.0  # an empty task keeps its prior
            for tasks, Phi, y in blocks:
                PV = Phi * v  # (B, n, k)
                K = PV @ np.swapaxes(Phi, 1, 2)
                K[:, np.arange(K.shape[1]), np.arange(K.shape[1])] += self.s2
                Kinv = np.linalg.inv(K)
                r = y - Phi @ mu
                M[tasks] = mu + np.einsum("bnk,bn->bk", PV, np.einsum("bnm,bm->bn", Kinv, r))
                post_var += (v - np.einsum("bnk,bnk->bk", PV, Kinv @ PV)).sum(axis=0)
                res = y - np.einsum("bnk,bk->bn", Phi, M[tasks])
                # E||y - Phi w||^2 = ||y - Phi m||^2 + tr(Phi S Phi^T),  tr = s2 n - s2^2 tr(K^-1)
                sq += float((res**2).sum() + self.s2 * res.size - self.s2**2 * np.einsum("bnn->", Kinv))
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
