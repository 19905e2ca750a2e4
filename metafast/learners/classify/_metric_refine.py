"""Refinement of the learned map L (m x r) on the leave-one-out log loss of every training row.

Scores are s_ic = -|L^T (phi_i - p_c^(-i))|^2 over the classes of row i's episode (prototypes in
basis space, row i left out of its own class: ``_prototype.LooLoss``, whose per-distance gradient
h = dLoss/dD is reused).  With D_ic = (phi_i - p_c)^T L L^T (phi_i - p_c) (times the leave-one-out
factor for the own class, already inside h),

    dLoss/dL = 2 M L,  M = sum_ic h_ic (phi_i - p_c)(phi_i - p_c)^T
             = Phi^T diag(sum_c h_ic) Phi - (H Phi)^T P - P^T (H Phi) + P^T diag(sum_i h_ic) P,

with H the (prototypes x rows) sparse matrix of h.  L-BFGS from the closed-form start (``_metric``),
a few iterations (the start is already good; many iterations fit the meta-train classes).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from metafast.learners.classify._prototype import LooLoss

MAX_ITER = 15


class MapLoss:
    """Mean LOO log loss of episodes as a function of the flattened map L; ``(value, gradient)``."""

    def __init__(self, Phi, codes, offsets, n_classes, rank: int, n_threads: int = 1):
        self.Phi = np.ascontiguousarray(Phi, dtype=np.float64)
        self.codes, self.offsets, self.n_classes, self.rank = codes, offsets, n_classes, rank
        self.n_threads = n_threads
        self.base = LooLoss(self.Phi, codes, offsets, n_classes, None, n_threads)  # prototypes in basis space

    def __call__(self, flat: np.ndarray):
        m = self.Phi.shape[1]
        L = flat.reshape(m, self.rank)
        loss = LooLoss(self.Phi @ L, self.codes, self.offsets, self.n_classes, None, self.n_threads)
        total, h = loss._sum_and_dscores(np.zeros(self.rank))
        b = self.base
        cand = b.cand
        H = sparse.csr_matrix(
            (h[cand], (b.key_of[cand], np.broadcast_to(b.rows[:, None], cand.shape)[cand])),
            shape=(b.P.shape[0], self.Phi.shape[0]),
        )
        HPhi = H @ self.Phi
        P = b.P
        cross = HPhi.T @ P
        M = (
            (self.Phi * h.sum(axis=1)[:, None]).T @ self.Phi
            - cross
            - cross.T
            + (P * np.asarray(H.sum(axis=1)).ravel()[:, None]).T @ P
        )
        n = loss.n_used
        return total / n, (2.0 * M @ L).ravel() / n


def refine_map(L0: np.ndarray, Phi, codes, offsets, n_classes, max_iter: int = MAX_ITER) -> np.ndarray:
    """L after at most ``max_iter`` L-BFGS iterations on ``MapLoss`` from ``L0``."""
    f = MapLoss(Phi, codes, offsets, n_classes, L0.shape[1])
    res = minimize(f, L0.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(L0.shape)


__all__ = ["MapLoss", "refine_map"]
