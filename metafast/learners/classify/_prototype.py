"""The prototype head: class means in basis space under a meta-learned diagonal metric.

Scores are s_c(x) = -sum_j d_j (phi_j(x) - p_cj)^2 (Snell et al. 2017 on a basis, with the metric
d > 0 learned; its overall scale is the temperature).  A prototype is the class mean of a task's
rows; in the shared-label setting it is shrunk toward the class's mean over the training tasks,
p_c = (sum_{i in c} phi_i + kappa g_c) / (n_c + kappa) with kappa = 1 pseudo-example, so a class
missing from a task's support is predicted from g_c.

d is learned by L-BFGS on the leave-one-out log loss over every labelled row of the training
tasks: leaving row i out of its own class moves that prototype so that
phi_i - p_y^(-i) = (n_y + kappa) / (n_y - 1 + kappa) (phi_i - p_y), a per-row factor on one
distance (rows that are their class's only example in an episodic task are skipped).  In the
episodic setting a penalty pulls the log-metric toward a common value (``METRIC_PENALTY``): a
metric fitted freely to a few meta-training classes transfers badly to new classes.
Distances come from the ``_classify.prototype_sqdist`` kernel.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from metafast._kernels import _classify
from metafast.learners.classify._chunks import chunk_data
from metafast.learners.classify._labels import task_ids
from metafast.learners.classify._logistic import masked_log_softmax

KAPPA = 1.0
METRIC_PENALTY = 10.0  # episodic: lam * mean (log d_j - mean log d)^2 added to the LOO loss (digits 0-4 -> 5-9, 1-shot: 0.61 -> 0.72 accuracy)


def class_sums(Phi, codes, offsets, n_classes):
    """(sums (sum_t C_t, m), counts (sum_t C_t,), proto offsets (T+1,)) of each task's classes."""
    p_off = np.zeros(offsets.shape[0], dtype=np.int64)
    np.cumsum(n_classes, out=p_off[1:])
    keys = p_off[task_ids(offsets)] + codes
    n_keys = int(p_off[-1])
    sums = np.zeros((n_keys, Phi.shape[1]))
    np.add.at(sums, keys, Phi)
    counts = np.bincount(keys, minlength=n_keys).astype(np.float64)
    return sums, counts, p_off, keys


def prototypes(Phi, codes, offsets, n_classes, global_means):
    """Prototypes (sum_t C_t, m) of every task's classes, and per-key counts and offsets."""
    sums, counts, p_off, keys = class_sums(Phi, codes, offsets, n_classes)
    if global_means is not None:
        K = global_means.shape[0]
        g = np.tile(global_means, (offsets.shape[0] - 1, 1))
        P = (sums + KAPPA * g[: sums.shape[0]]) / (counts[:, None] + KAPPA) if K else sums
    else:
        P = sums / np.maximum(counts, 1.0)[:, None]
    return P, counts, p_off, keys


def sqdist(Phi, offsets, P, p_off, metric, c_max, n_threads):
    out = np.empty((Phi.shape[0], c_max), dtype=np.float64)
    _classify.prototype_sqdist(
        np.ascontiguousarray(Phi, dtype=np.float64),
        offsets,
        np.ascontiguousarray(P, dtype=np.float64),
        p_off,
        np.ascontiguousarray(metric, dtype=np.float64),
        int(n_threads),
        out,
    )
    return out


def loo_rows(codes, offsets, n_classes, shared: bool) -> np.ndarray:
    """Whether each row enters the LOO loss: its task has >= 2 classes and its class keeps a
    prototype without it (another example of the class, or the shared mean's pseudo-example)."""
    _, counts, _, keys = class_sums(np.zeros((codes.shape[0], 0)), codes, offsets, n_classes)
    kappa = KAPPA if shared else 0.0
    return ((counts[keys] - 1 + kappa) > 0) & (np.repeat(n_classes, np.diff(offsets)) >= 2)


class LooLoss:
    """Mean leave-one-out log loss of the training rows as a function of theta = log(metric),
    with its gradient (see the module docstring); callable as ``loss(theta) -> (value, grad)``."""

    def __init__(self, Phi, codes, offsets, n_classes, global_means, n_threads):
        self.Phi, self.codes, self.offsets, self.n_threads = Phi, codes, offsets, n_threads
        self.P, self.counts, self.p_off, self.keys = prototypes(Phi, codes, offsets, n_classes, global_means)
        kappa = KAPPA if global_means is not None else 0.0
        n_own = self.counts[self.keys]
        self.per_row = np.repeat(n_classes, np.diff(offsets))
        self.keep = loo_rows(codes, offsets, n_classes, global_means is not None)
        self.loo = ((n_own + kappa) / np.maximum(n_own - 1 + kappa, 1e-12)) ** 2
        self.c_max = int(max(n_classes.max(initial=0), 1))
        self.rows = np.arange(Phi.shape[0])
        self.cand = np.arange(self.c_max)[None, :] < self.per_row[:, None]
        self.key_of = self.p_off[task_ids(offsets)][:, None] + np.arange(self.c_max)[None, :]
        self.n_used = max(int(self.keep.sum()), 1)

    def value_and_dscores(self, theta):
        """(loss, h) with h = n_used dL/dD (N, Cmax): the gradient with respect to the squared
        distances D_ic to the task's class prototypes."""
        total, h = self._sum_and_dscores(theta)
        return total / self.n_used, h

    def _sum_and_dscores(self, theta):
        d = np.exp(theta)
        rows, codes, keep, cand = self.rows, self.codes, self.keep, self.cand
        D = sqdist(self.Phi, self.offsets, self.P, self.p_off, d, self.c_max, self.n_threads)
        D[rows, codes] *= self.loo
        lp = masked_log_softmax(-D, self.per_row)
        total = -lp[rows[keep], codes[keep]].sum()
        pi = np.exp(lp)
        pi[~cand] = 0.0
        h = -pi  # dL/dZ = pi - y and Z = -r D: h = (y - pi) r
        h[rows, codes] += 1.0
        h[rows, codes] *= self.loo
        h[~keep] = 0.0
        return total, h

    def sums(self, theta):
        """(summed LOO log loss, its gradient in theta, rows used): what adds up over chunks."""
        d = np.exp(theta)
        rows, cand, P, Phi = self.rows, self.cand, self.P, self.Phi
        total, h = self._sum_and_dscores(theta)
        H = sparse.csr_matrix(
            (h[cand], (self.key_of[cand], np.broadcast_to(rows[:, None], cand.shape)[cand])),
            shape=(P.shape[0], Phi.shape[0]),
        )
        grad = (
            (Phi**2).T @ h.sum(axis=1)
            - 2 * np.einsum("kj,kj->j", P, H @ Phi)
            + np.einsum("kj,k->j", P**2, np.asarray(H.sum(axis=1)).ravel())
        )
        return total, grad * d, int(self.keep.sum())

    def __call__(self, theta):
        total, grad, _ = self.sums(theta)
        return total / self.n_used, grad / self.n_used


def shared_class_sums(Phi, codes, offsets, n_classes, n_shared: int):
    """(sum of the rows of each shared class (K, m), rows per class (K,))."""
    sums, counts, _, _ = class_sums(Phi, codes, offsets, n_classes)
    cls = np.tile(np.arange(n_shared), offsets.shape[0] - 1)
    g = np.zeros((n_shared, Phi.shape[1]))
    np.add.at(g, cls, sums)
    return g, np.bincount(cls, weights=counts, minlength=n_shared)


def class_mean_terms(chunk, spec, n_shared: int, n_threads: int) -> np.ndarray:
    """[per shared class: sum of its rows' designs (K*m), rows (K)] of one chunk's training rows."""
    d = chunk_data(chunk, spec)
    g, n = shared_class_sums(d.Phi.astype(np.float64, copy=False), d.codes, d.offsets, d.n_classes, n_shared)
    return np.concatenate([g.ravel(), n])


def centred_square_terms(chunk, spec, mean: np.ndarray, n_threads: int) -> np.ndarray:
    """sum_i (phi_i - mean)^2 per column of one chunk's training design (the spread of the start)."""
    Phi = chunk_data(chunk, spec).Phi.astype(np.float64, copy=False)
    return ((Phi - mean) ** 2).sum(axis=0)


def loo_terms(chunk, spec, global_means, theta: np.ndarray, n_threads: int) -> np.ndarray:
    """[summed LOO log loss, its gradient in theta (m), rows used] of one chunk (``LooLoss.sums``;
    the loss object is kept with the chunk between L-BFGS steps)."""
    d = chunk_data(chunk, spec)
    loss = d.state.get("loo_loss")
    if loss is None:
        loss = d.state["loo_loss"] = LooLoss(
            d.Phi.astype(np.float64, copy=False), d.codes, d.offsets, d.n_classes, global_means, n_threads
        )
    loss.n_threads = n_threads
    total, grad, n_used = loss.sums(theta)
    return np.concatenate([[total], grad, [n_used]])


class PrototypeHead:
    """Learns the metric (and, shared setting, the class means g_c); see the module docstring."""

    def __init__(self, n_shared, max_iter, tol, prior_weight, n_threads, verbose=0):
        self.n_shared = n_shared
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.metric_penalty = METRIC_PENALTY if n_shared is None else 0.0

    def fit(self, source, spec, summary: dict) -> PrototypeHead:
        m, N = summary["col_sum"].shape[0], max(summary["n_rows"], 1.0)
        self.global_means_ = None
        if self.n_shared is not None:
            out = source.map_sum(class_mean_terms, spec, self.n_shared)
            g, counts = out[: -self.n_shared].reshape(self.n_shared, m), out[-self.n_shared :]
            self.global_means_ = g / np.maximum(counts, 1)[:, None]
        lam = self.metric_penalty

        def loss(theta):
            # the penalty pulls log-metric toward a common value (its mean: the temperature is free)
            out = source.map_sum(loo_terms, spec, self.global_means_, theta)
            n_used = max(out[-1], 1.0)
            val, grad = out[0] / n_used, out[1:-1] / n_used
            dev = theta - theta.mean()
            return val + lam * np.dot(dev, dev) / dev.size, grad + 2 * lam * dev / dev.size

        mean = summary["col_sum"] / N
        var = source.map_sum(centred_square_terms, spec, mean) / N
        spread = np.maximum(var, 1e-3 * var.mean()) + 1e-12  # constant columns: a finite start
        theta0 = -np.log(2 * spread * m)
        res = minimize(
            loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter, "ftol": self.tol * 1e-3}
        )
        self.metric_ = np.exp(res.x)
        self.loss_, self.n_iter_, self.converged_ = float(res.fun), int(res.nit), bool(res.success)
        return self

    def logits(self, Phi_s, codes, s_off, n_classes, Phi_q, q_off):
        P, _, p_off, _ = prototypes(np.asarray(Phi_s, dtype=np.float64), codes, s_off, n_classes, self.global_means_)
        return -sqdist(Phi_q, q_off, P, p_off, self.metric_, int(max(n_classes.max(initial=0), 1)), self.n_threads)

    def task_weights(self, Phi, codes, n_classes: int):
        """-d.(phi - p_c)^2 = 2 (d p_c).phi - d.p_c^2 - d.phi^2; the last term is the same for every
        class and dropped: linear scores W (m, C), b (C,)."""
        off = np.array([0, Phi.shape[0]], dtype=np.int64)
        P, _, _, _ = prototypes(
            np.asarray(Phi, dtype=np.float64), codes, off, np.array([n_classes]), self.global_means_
        )
        return (2 * self.metric_[:, None] * P.T), -(P**2) @ self.metric_
