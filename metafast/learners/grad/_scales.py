"""Scales MetaGrad sets once from its first training tasks (before any meta-iteration).

- ``target_scale``: the root mean square of the targets, computed without squaring tiny or huge
  values (targets near 1e-300 or 1e300 would underflow or overflow), so training runs on targets
  of unit scale whatever their units.
- ``row_scale``: sqrt of the mean squared norm of a design row (Adam's scale-free w0).
- ``stable_inner_lr``: the inner rate 1 / max_t lambda_max(A_t) over a sample of tasks: the
  largest rate for which every sampled task's gradient step contracts (a * lambda_max <= 1).
  The older 1 / trace(A) is far smaller for local features (RBF: lambda_max is ~1/4 of the trace
  on the sinusoid), so five inner steps barely moved the weights.
"""

from __future__ import annotations

import numpy as np

from metafast.tasks._taskset import TaskSet

SCALE_ROWS = 16384  # training rows (a seeded sample) that set the design-row scale
LR_TASKS = 512  # training tasks (a seeded sample) that set the inner rate


def target_scale(y: np.ndarray) -> float:
    """RMS of ``y`` (1.0 when y is empty, all zero or not finite), exact for any float64 range."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return 1.0
    peak = float(np.max(np.abs(y)))
    if not (np.isfinite(peak) and peak > 0):
        return 1.0
    rms = peak * float(np.sqrt(np.mean((y / peak) ** 2)))
    return rms if np.isfinite(rms) and rms > 0 else 1.0


def row_scale(basis, X: np.ndarray, rng: np.random.Generator) -> float:
    """sqrt(mean ||phi(x)||^2) over a seeded sample of at most SCALE_ROWS rows of X."""
    n = X.shape[0]
    sample = np.sort(rng.choice(n, SCALE_ROWS, replace=False)) if n > SCALE_ROWS else slice(None)
    Phi = np.asarray(basis.design(X[sample]), dtype=np.float64)
    s = float(np.einsum("ij,ij->", Phi, Phi)) / max(Phi.shape[0], 1)
    return float(np.sqrt(s)) if np.isfinite(s) and s > 0 else 1.0


def stable_inner_lr(basis, ts: TaskSet, rng: np.random.Generator, fallback: float) -> float:
    """1 / the largest lambda_max(Phi_t^T Phi_t / n_t) over a seeded sample of tasks' support rows.

    The Gram matrix of the smaller side (n x n or m x m) has the same largest eigenvalue.
    ``fallback`` is returned when no sampled task has rows or every design is zero.
    """
    T = len(ts)
    tasks = np.sort(rng.choice(T, LR_TASKS, replace=False)) if T > LR_TASKS else np.arange(T)
    off = ts.support_offsets
    rows = np.concatenate([np.arange(off[t], off[t + 1]) for t in tasks]) if tasks.size else np.zeros(0, int)
    if rows.size == 0:
        return fallback
    Phi = np.asarray(basis.design(ts.X_support[rows]), dtype=np.float64)
    sizes = np.diff(off)[tasks]
    top, start = 0.0, 0
    for n in sizes:
        P = Phi[start : start + n]
        start += n
        if n == 0:
            continue
        G = P @ P.T if n <= P.shape[1] else P.T @ P
        top = max(top, float(np.linalg.eigvalsh(G / n)[-1]))
    return 1.0 / top if np.isfinite(top) and top > 0 else fallback
