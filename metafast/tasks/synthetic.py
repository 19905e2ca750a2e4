"""Synthetic task families with their published sampling protocols."""

from __future__ import annotations

import numpy as np

from metafast._validation import check_positive_int
from metafast.tasks._taskset import TaskSet


def load_sinusoid(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: int | None = 0,
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    x_range=(-5.0, 5.0),
    noise: float = 0.0,
) -> TaskSet:
    """Sinusoid regression (Finn et al. 2017, MAML): y = A sin(x - phi).

    A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5], no noise by default.
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    n_support = check_positive_int(n_support, "n_support")
    n_query = check_positive_int(n_query, "n_query", minimum=0)
    rng = np.random.default_rng(seed)
    A = rng.uniform(*amplitude, size=n_tasks)
    phi = rng.uniform(*phase, size=n_tasks)
    n = n_support + n_query
    X = rng.uniform(*x_range, size=(n_tasks, n))
    Y = A[:, None] * np.sin(X - phi[:, None])
    if noise:
        Y = Y + noise * rng.standard_normal(Y.shape)
    off_s = np.arange(n_tasks + 1, dtype=np.int64) * n_support
    off_q = np.arange(n_tasks + 1, dtype=np.int64) * n_query
    info = [{"amplitude": float(a), "phase": float(p)} for a, p in zip(A, phi)]
    return TaskSet(
        X[:, :n_support].reshape(-1, 1), Y[:, :n_support].ravel(), off_s,
        X[:, n_support:].reshape(-1, 1), Y[:, n_support:].ravel(), off_q, info=info,
    )
