"""Closed forms MetaRidge shares with its Dask route: the GLS mean and the metric's softmax map."""

from __future__ import annotations

import numpy as np


def gls_mean(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_h sum_t (y_t - Phi_t h)^T G_t (y_t - Phi_t h) from M = sum Phi^T G Phi, b = sum Phi^T G y;
    the minimum-norm minimiser when M is singular (fewer data than basis functions)."""
    m = b.shape[0]
    if not np.any(M):
        return np.zeros(m)
    rcond = max(m, 1) * np.finfo(np.float64).eps * 10
    return np.linalg.lstsq(M, b, rcond=rcond)[0]


def _softmax_scale(z: np.ndarray) -> np.ndarray:
    """m * softmax(z): positive, mean 1."""
    e = np.exp(z - z.max())
    return z.size * e / e.sum()
