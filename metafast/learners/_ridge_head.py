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
from metafast.learners._logistic import ClassPrior, mean_log_loss, prior_logits


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
    _classify.ridge_estep(Phi_w, R, offsets, np.ascontiguousarray(n_classes, dtype=np.int64), float(noise_var),
                          int(n_threads), A, G, cinv, logp, noise, status)
    if (status < 0).any():
        raise FloatingPointError(f"{int((status < 0).sum())} task(s) had a singular ridge system even after jitter")
    return A, G, cinv, logp, noise, R, Phi_w, U


class RidgeHead:
    """EM for (Sigma, mu_c, s2), then the LOO temperature (see the module docstring)."""

    def __init__(self, n_shared, max_iter, tol, prior_weight, n_threads, verbose=0):
        self.n_shared = n_shared
        self.max_iter = max_iter
        self.tol = tol
        self.prior_weight = prior_weight
        self.n_threads = n_threads

    def fit(self, Phi, codes, offsets, n_classes, calib=None) -> "RidgeHead":
        m = Phi.shape[1]
        T = offsets.shape[0] - 1
        row = float(np.einsum("ij,ij->", Phi, Phi, dtype=np.float64)) / max(Phi.shape[0], 1)
        psi = 1.0 / row if np.isfinite(row) and row > 0 else 1.0
        prior = ClassPrior(psi * np.eye(m), np.zeros((self.n_shared, m)) if self.n_shared else None)
        s2 = 0.25
        sizes = np.diff(offsets)
        n_points = float((sizes * n_classes).sum())
        tc = float(n_classes.sum())
        nu = (9.0 * tc if self.n_shared is None else 1.0) if isinstance(self.prior_weight, str) \
            else float(self.prior_weight)
        self.log_evidence_, self.n_iter_, self.converged_ = [], 0, False
        for it in range(self.max_iter + 1):
            A, G, cinv, logp, noise, R, Phi_w, U = ridge_estep(Phi, codes, offsets, n_classes, prior, s2,
                                                                self.n_threads)
            self.log_evidence_.append(float(logp.sum()))
            if it > 0 and abs(self.log_evidence_[-1] - self.log_evidence_[-2]) < self.tol * T:
                self.converged_ = True
                break
            if it == self.max_iter:
                break
            Q = Phi_w.T.astype(np.float64, copy=False) @ G.astype(np.float64, copy=False)
            S = np.eye(m) + 0.5 * (Q + Q.T) / tc
            means = prior.means
            if means is not None:
                dv = Phi_w.T.astype(np.float64, copy=False) @ A[:, :self.n_shared].astype(np.float64, copy=False) / T
                means = means + (U @ dv).T
                S -= dv @ dv.T / self.n_shared
            cov = U @ S @ U.T
            cov = (tc * 0.5 * (cov + cov.T) + nu * psi * np.eye(m)) / (tc + nu)
            prior = ClassPrior(cov, means)
            s2 = max(float(noise.sum()) / max(n_points, 1.0), 1e-8)
            self.n_iter_ += 1
        self.prior_, self.noise_var_ = prior, s2
        # leave-one-out scores of every training row, from the last E-step
        loo = (R - A / cinv[:, None]).astype(np.float64, copy=False)
        if prior.means is not None:
            loo += prior_logits(Phi.astype(np.float64, copy=False), prior, A.shape[1])
        self.temperature_ = self._temperature(loo, codes, offsets, n_classes)
        self.log_evidence_ = np.asarray(self.log_evidence_)
        return self

    @staticmethod
    def _temperature(scores, codes, offsets, n_classes) -> float:
        res = minimize_scalar(lambda lt: mean_log_loss(np.exp(lt) * scores, codes, offsets, n_classes),
                              bounds=(np.log(1e-2), np.log(1e3)), method="bounded", options={"xatol": 1e-3})
        return float(np.exp(res.x))

    def _scores(self, Phi_s, codes, s_off, n_classes, Phi_q, q_off):
        A, _, _, _, _, _, Phi_w, U = ridge_estep(Phi_s, codes, s_off, n_classes, self.prior_, self.noise_var_,
                                                 self.n_threads)
        Phi_wq = np.ascontiguousarray(Phi_q @ U.astype(Phi_q.dtype, copy=False))
        out = np.empty((Phi_q.shape[0], A.shape[1]), dtype=Phi_s.dtype)
        _classify.task_logits(Phi_w, A, s_off, np.ascontiguousarray(n_classes, dtype=np.int64), Phi_wq, q_off,
                              int(self.n_threads), out)
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
