"""The E-step for one or two basis functions (m <= ``SMALL_M``) in closed form over all tasks.

With q = 2 random effects and 4 rows a group, the kernel's per-task LAPACK calls cost more than
their arithmetic (about 2 us a group).  Here every task's whitened posterior comes from a few
segment sums and the closed-form 2 x 2 inverse, as whole-array operations:

    Pw_t = Phi_t U,  P_t = I + Pw_t^T Pw_t / s2,  S'_t = P_t^-1,  v_t = S'_t Pw_t^T r_t / s2
    log p(r_t) = -1/2 [ n log(2 pi s2) + log|P_t| + (r_t^T r_t - b_t^T S'_t b_t / s2) / s2 ],
                 b_t = Pw_t^T r_t
    noise_t = ||r_t - Pw_t v_t||^2 + tr(Pw_t S'_t Pw_t^T)

(the same quantities as the kernel, ``_kernels/_bayes.pyx``; in float64 whatever the data's
dtype).  P_t is the identity plus a PSD matrix, so it is always invertible: no jitter.
"""

from __future__ import annotations

import numpy as np

SMALL_M = 2  # basis functions up to which the closed-form path is used


def _posterior(G: np.ndarray, b: np.ndarray, s2: float):
    """Per task (S', log|P|) of P = I + G / s2 in closed form (m = 1 or 2; arrays over tasks)."""
    m = G.shape[1]
    if m == 1:
        p = 1.0 + G[:, 0, 0] / s2
        return (1.0 / p)[:, None, None], np.log(p)
    p11, p12, p22 = 1.0 + G[:, 0, 0] / s2, G[:, 0, 1] / s2, 1.0 + G[:, 1, 1] / s2
    det = p11 * p22 - p12 * p12  # > 0: P is I plus a PSD matrix
    Sp = np.empty_like(G)
    Sp[:, 0, 0], Sp[:, 1, 1] = p22 / det, p11 / det
    Sp[:, 0, 1] = Sp[:, 1, 0] = -p12 / det
    return Sp, np.log(det)


def small_em_stats(
    Phi: np.ndarray, U: np.ndarray, r: np.ndarray, offsets: np.ndarray, noise_var: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, sum_v, [sum log p, noise stat, 0, rows]) with E = sum_t S'_t + v_t v_t^T.

    Per task only G_t = Pw_t^T Pw_t, b_t and r_t^T r_t are formed (segment sums of row
    products); since Pw^T Pw = s2 (P - I), the noise statistic is
    r^T r - b^T v - s2 v^T v + s2 (m - tr S')."""
    m = Phi.shape[1]
    s2 = float(noise_var)
    starts = np.asarray(offsets[:-1], dtype=np.intp)
    sizes = np.diff(offsets)
    Pw = np.asarray(Phi, dtype=np.float64) @ np.asarray(U, dtype=np.float64)
    rr_rows = np.asarray(r, dtype=np.float64)
    nonempty = sizes > 0
    idx = starts[nonempty]
    T1 = idx.size

    def seg(x):  # per-task sums of a per-row quantity
        return np.add.reduceat(x, idx) if T1 else np.zeros(0)

    G = np.empty((T1, m, m))
    for i in range(m):
        for j in range(i, m):
            G[:, i, j] = G[:, j, i] = seg(Pw[:, i] * Pw[:, j])
    b = np.stack([seg(Pw[:, i] * rr_rows) for i in range(m)], axis=1) if T1 else np.zeros((0, m))
    rr = seg(rr_rows * rr_rows)
    Sp, logdet = _posterior(G, b, s2)
    v = np.einsum("tmk,tk->tm", Sp, b) / s2
    bv, vv = np.einsum("tm,tm->t", b, v), np.einsum("tm,tm->t", v, v)
    tr = np.trace(Sp, axis1=1, axis2=2)
    n_rows = float(offsets[-1] - offsets[0])
    logp = -0.5 * (n_rows * np.log(2 * np.pi * s2) + logdet.sum() + (rr - bv).sum() / s2)
    noise = float((rr - bv - s2 * vv + s2 * (m - tr)).sum())
    E = Sp.sum(axis=0) + v.T @ v + (sizes.size - T1) * np.eye(m)  # empty tasks: S' = I, v = 0
    return E, v.sum(axis=0), np.array([float(logp), noise, 0.0, n_rows])
