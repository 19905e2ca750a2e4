"""The ridge head: one-hot least squares with a meta-learned Gaussian prior (R2-D2 with EM).

Each class's one-hot column is a regression target, y_c = Phi w_c + N(0, s2 I), with
w_c ~ N(mu_c, Sigma) (mu_c learned in the shared setting, 0 in the episodic one, where the targets
are centred at 1/C so that the prior mean is exchangeable).  Per task the posterior means are the
closed-form ridge solution of Bertinetto et al. (2019) with the prior in place of the isotropic
penalty, all classes sharing one Cholesky of Phi Sigma Phi^T + s2 I (``_classify.ridge_estep``).
EM (as MetaBayes, with the same whitened statistic as the logistic head) learns Sigma, mu_c and
s2; probabilities are softmax(tau * scores), with tau chosen to minimise the leave-one-out log
loss over every training row, which the dual solve gives for free:
score_{-i,c} = y_ic - a_ic / [(K + s2 I)^{-1}]_ii.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from metafast._kernels import _classify
from metafast.learners.classify._chunks import chunk_data
from metafast.learners.classify._logistic import ClassPrior, log_loss_sum, prior_logits


def one_hot_residuals(Phi, codes, offsets, n_classes, prior: ClassPrior, c_max: int) -> np.ndarray:
    """R = Y - prior scores: one-hot targets (centred at 1/C in the episodic setting) minus Phi mu."""
    N = codes.shape[0]
    Y = np.zeros((N, c_max), dtype=Phi.dtype)
    if N:
        Y[np.arange(N), codes] = 1.0
    if prior.means is None:
        per_row = np.repeat(n_classes, np.diff(offsets)).astype(Phi.dtype, copy=False)
        Y -= np.where(np.arange(c_max)[None, :] < per_row[:, None], 1.0 / np.maximum(per_row[:, None], 1), 0.0)
        return np.ascontiguousarray(Y)
    return np.ascontiguousarray(Y - prior_logits(Phi, prior, c_max))


def ridge_estep(Phi, codes, offsets, n_classes, prior: ClassPrior, noise_var: float, n_threads: int):
    """(A, G, diag C^{-1}, log evidence (T,), noise statistic (T,), R, Phi_w, U) of every task."""
    dtype = Phi.dtype
    U = prior.factor()
    Phi_w = np.ascontiguousarray(Phi @ U.astype(dtype, copy=False))
    c_max = int(max(n_classes.max(initial=0), 1))
    R = one_hot_residuals(Phi, codes, offsets, n_classes, prior, c_max)
    N, T = Phi.shape[0], offsets.shape[0] - 1
    A = np.empty((N, c_max), dtype=dtype)
    G = np.empty((N, Phi.shape[1]), dtype=dtype)
    cinv = np.empty(N, dtype=dtype)
    logp, noise = np.empty(T), np.empty(T)
    status = np.empty(T, dtype=np.intc)
    _classify.ridge_estep(
        Phi_w,
        R,
        offsets,
        np.ascontiguousarray(n_classes, dtype=np.int64),
        float(noise_var),
        int(n_threads),
        A,
        G,
        cinv,
        logp,
        noise,
        status,
    )
    if (status < 0).any():
        raise FloatingPointError(f"{int((status < 0).sum())} task(s) had a singular ridge system even after jitter")
    return A, G, cinv, logp, noise, R, Phi_w, U


def estep_terms(chunk, spec, prior: ClassPrior, noise_var: float, it: int, n_threads: int) -> np.ndarray:
    """[sum_t log evidence, sum_t noise statistic, Phi_w^T G (m*m), shared: Phi_w^T A (m*K)] of one
    chunk's training tasks (see ``_classify_chunks``).  The E-step is kept with the chunk, tagged
    with the pass ``it``, for the leave-one-out scores of the last one."""
    d = chunk_data(chunk, spec)
    A, G, cinv, logp, noise, R, Phi_w, _ = ridge_estep(
        d.Phi, d.codes, d.offsets, d.n_classes, prior, noise_var, n_threads
    )
    d.state["last_estep"] = (it, A, cinv, R)
    Pw = Phi_w.T.astype(np.float64, copy=False)
    out = [[float(logp.sum()), float(noise.sum())], np.ravel(Pw @ G.astype(np.float64, copy=False))]
    if prior.means is not None:
        out.append(np.ravel(Pw @ A[:, : prior.means.shape[0]].astype(np.float64, copy=False)))
    return np.concatenate(out)


def loo_loss_terms(
    chunk, spec, prior: ClassPrior, noise_var: float, it: int, temperature: float, n_threads: int
) -> np.ndarray:
    """[summed leave-one-out log loss of the training rows at this temperature, rows counted],
    from the E-step of pass ``it`` (recomputed when the chunk lost it, e.g. rebuilt on another
    worker)."""
    d = chunk_data(chunk, spec)
    held = d.state.get("last_estep")
    if held is None or held[0] != it:
        estep_terms(chunk, spec, prior, noise_var, it, n_threads)
        held = d.state["last_estep"]
    loo = d.state.get("loo")
    if loo is None or loo[0] != it:
        _, A, cinv, R = held
        scores = (R - A / cinv[:, None]).astype(np.float64, copy=False)
        if prior.means is not None:
            scores += prior_logits(d.Phi.astype(np.float64, copy=False), prior, A.shape[1])
        loo = d.state["loo"] = (it, scores)
    return np.array(log_loss_sum(temperature * loo[1], d.codes, d.offsets, d.n_classes))


class RidgeHead:
    """EM for (Sigma, mu_c, s2), then the LOO temperature (see the module docstring); one pass over
    a chunk source (``_classify_chunks``) per EM iteration and per trial temperature."""

    def __init__(self, n_shared, max_iter, tol, prior_weight, n_threads, verbose=0):
        self.n_shared = n_shared
        self.max_iter = max_iter
        self.tol = tol
        self.prior_weight = prior_weight
        self.n_threads = n_threads

    def fit(self, source, spec, summary: dict) -> RidgeHead:
        m = summary["col_sum"].shape[0]
        T = summary["n_tasks"]
        row = summary["phi2"] / max(summary["n_rows"], 1.0)
        psi = 1.0 / row if np.isfinite(row) and row > 0 else 1.0
        prior = ClassPrior(psi * np.eye(m), np.zeros((self.n_shared, m)) if self.n_shared else None)
        s2 = 0.25
        n_points, tc = summary["n_points"], summary["tc"]
        nu = (
            (9.0 * tc if self.n_shared is None else 1.0)
            if isinstance(self.prior_weight, str)
            else float(self.prior_weight)
        )
        self.log_evidence_, self.n_iter_, self.converged_ = [], 0, False
        for it in range(self.max_iter + 1):
            U = prior.factor()  # computed here, so the workers use the same factor
            out = source.map_sum(estep_terms, spec, prior, s2, it)
            self.log_evidence_.append(float(out[0]))
            if it > 0 and abs(self.log_evidence_[-1] - self.log_evidence_[-2]) < self.tol * T:
                self.converged_ = True
                break
            if it == self.max_iter:
                break
            Q = out[2 : 2 + m * m].reshape(m, m)
            S = np.eye(m) + 0.5 * (Q + Q.T) / tc
            means = prior.means
            if means is not None:
                dv = out[2 + m * m :].reshape(m, self.n_shared) / T
                means = means + (U @ dv).T
                S -= dv @ dv.T / self.n_shared
            cov = U @ S @ U.T
            cov = (tc * 0.5 * (cov + cov.T) + nu * psi * np.eye(m)) / (tc + nu)
            prior = ClassPrior(cov, means)
            s2 = max(float(out[1]) / max(n_points, 1.0), 1e-8)
            self.n_iter_ += 1
        self.prior_, self.noise_var_ = prior, s2
        self.temperature_ = self._temperature(source, spec, prior, s2, it)
        self.log_evidence_ = np.asarray(self.log_evidence_)
        return self

    @staticmethod
    def _temperature(source, spec, prior, s2, it) -> float:
        """tau minimising the leave-one-out log loss of every training row, from the last E-step."""

        def loss(log_tau):
            total, count = source.map_sum(loo_loss_terms, spec, prior, s2, it, float(np.exp(log_tau)))
            return total / count if count else 0.0

        res = minimize_scalar(loss, bounds=(np.log(1e-2), np.log(1e3)), method="bounded", options={"xatol": 1e-3})
        return float(np.exp(res.x))

    def _scores(self, Phi_s, codes, s_off, n_classes, Phi_q, q_off):
        A, _, _, _, _, _, Phi_w, U = ridge_estep(
            Phi_s, codes, s_off, n_classes, self.prior_, self.noise_var_, self.n_threads
        )
        Phi_wq = np.ascontiguousarray(Phi_q @ U.astype(Phi_q.dtype, copy=False))
        out = np.empty((Phi_q.shape[0], A.shape[1]), dtype=Phi_s.dtype)
        _classify.task_logits(
            Phi_w, A, s_off, np.ascontiguousarray(n_classes, dtype=np.int64), Phi_wq, q_off, int(self.n_threads), out
        )
        out = out.astype(np.float64, copy=False)
        if self.prior_.means is not None:
            out += Phi_q.astype(np.float64, copy=False) @ self.prior_.means.T
        return out, A, Phi_w, U

    def logits(self, Phi_s, codes, s_off, n_classes, Phi_q, q_off):
        return self.temperature_ * self._scores(Phi_s, codes, s_off, n_classes, Phi_q, q_off)[0]

    def task_weights(self, Phi, codes, n_classes: int):
        """One task's posterior means, times the temperature.  Solved here with numpy (one n x n
        Cholesky): for a single task the kernel's OpenMP region would only add overhead."""
        off = np.array([0, Phi.shape[0]], dtype=np.int64)
        U = self.prior_.factor()
        Phi64 = np.asarray(Phi, dtype=np.float64)
        Phi_w = Phi64 @ U
        R = one_hot_residuals(Phi64, codes, off, np.array([n_classes]), self.prior_, max(n_classes, 1))
        Kn = Phi_w @ Phi_w.T
        Kn[np.diag_indices_from(Kn)] += self.noise_var_
        A = np.linalg.solve(Kn, R) if Phi.shape[0] else R
        W = U @ (Phi_w.T @ A[:, :n_classes])
        if self.prior_.means is not None:
            W += self.prior_.means.T
        return self.temperature_ * W, np.zeros(n_classes)
