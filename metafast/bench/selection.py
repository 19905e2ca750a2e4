"""Benchmark pieces for choosing the basis (BasisSelector): select-then-fit, the wide Fourier
dictionary for harmonic tasks, and synthetic tasks with a known sparse support.

``SelectThenFit`` is the honest pipeline: ``fit(train)`` chooses the columns on the training
tasks only and fits the learner on the selected basis with the same training tasks; the test
tasks reach it only through ``evaluate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

# harmonic with no hand-set bands: 100 frequencies evenly over 0.5-20 (cos and sin: 200 columns)
WIDE_FREQUENCIES = tuple(float(f) for f in np.linspace(0.5, 20.0, 100))
WIDE_FOURIER = ("fourier", {"n_basis": 200, "frequencies": WIDE_FREQUENCIES, "include_constant": False})


class SelectThenFit(BaseEstimator):
    """Fit ``selector`` on the training tasks, then ``learner`` on its ``selected_basis_``.

    ``basis`` (the dictionary) is handed to the selector, so the harness can treat the pipeline
    like any learner.
    """

    def __init__(self, selector: Any = None, learner: Any = None, basis: Any = None):
        self.selector = selector
        self.learner = learner
        self.basis = basis

    def fit(self, tasks, y=None) -> SelectThenFit:
        selector = clone(self.selector)
        if self.basis is not None:
            selector.set_params(basis=self.basis)
        self.selector_ = selector.fit(tasks)
        self.learner_ = clone(self.learner).set_params(basis=self.selector_.selected_basis_).fit(tasks)
        return self

    def evaluate(self, tasks) -> dict:
        return self.learner_.evaluate(tasks)

    def adapt(self, X, y):
        return self.learner_.adapt(X, y)


# ---------------------------------------------------------------------- known sparse support
X_RANGE = (-5.0, 5.0)
RBF_CENTRES = 50
RBF_SCALES = (0.2, 0.4, 0.8, 1.6)


def sparse_dictionary(n_jobs: int | None = 1):
    """A fitted 400-column dictionary on [-5, 5]: 8 Legendre polynomials, Fourier at 96
    frequencies in 0.5-12 (cos and sin, 192 columns) and 200 Gaussian RBFs, 50 centres on a
    grid at each of the length scales 0.2, 0.4, 0.8 and 1.6 (a multi-scale family)."""
    import metafast as mf

    centres = np.tile(np.linspace(*X_RANGE, RBF_CENTRES), len(RBF_SCALES))[:, None]
    scales = np.repeat(RBF_SCALES, RBF_CENTRES)
    parts = [
        mf.basis.make("polynomial", n_basis=8, n_jobs=n_jobs),
        mf.basis.make(
            "fourier", n_basis=192, frequencies=np.linspace(0.5, 12.0, 96), include_constant=False, n_jobs=n_jobs
        ),
        mf.basis.make(
            "rbf", n_basis=centres.shape[0], centers=centres, length_scale=scales, per_center=True, n_jobs=n_jobs
        ),
    ]
    return mf.basis.union(parts).fit(np.linspace(*X_RANGE, 401)[:, None])


def true_support(dictionary, seed: int = 0, n_true: int = 8) -> np.ndarray:
    """n_true columns spread over the three families (2 polynomial of degree >= 2, 3 Fourier,
    3 RBF of the middle scales 0.4 and 0.8, far from each other), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    off = dictionary.part_offsets_
    poly = rng.choice(np.arange(2, off[1]), 2, replace=False)
    fourier = off[1] + 2 * rng.choice((off[2] - off[1]) // 2, 3, replace=False) + rng.integers(0, 2, 3)
    wide = off[2] + RBF_CENTRES + np.arange(5, 2 * RBF_CENTRES - 5, 9)
    rbf = rng.choice(wide, n_true - 5, replace=False)
    return np.sort(np.concatenate([poly, fourier, rbf]).astype(np.int64))


def sparse_tasks(
    dictionary, support: np.ndarray, n_tasks: int, n_support: int, n_query: int, seed: int, noise: float = 0.1
):
    """Tasks y = sum_j w_tj g_j(x) + noise on the true columns, x ~ U[-5, 5].

    w_tj ~ N(0, 1) / rms_j with rms_j the column's root mean square on the domain, so every
    true column carries signal; tasks share only the support."""
    from metafast.tasks import TaskSet

    rng = np.random.default_rng(seed)
    grid = np.linspace(*X_RANGE, 2001)[:, None]
    rms = np.sqrt(np.mean(dictionary.design(grid)[:, support] ** 2, axis=0))
    n = n_support + n_query
    X = rng.uniform(*X_RANGE, size=(n_tasks * n, 1))
    W = rng.standard_normal((n_tasks, support.size)) / rms
    Phi = dictionary.design(X)[:, support]
    y = np.einsum("ij,ij->i", Phi, np.repeat(W, n, axis=0)) + noise * rng.standard_normal(X.shape[0])
    is_support = np.tile(np.arange(n) < n_support, n_tasks)
    s_off = np.arange(n_tasks + 1, dtype=np.int64) * n_support
    q_off = np.arange(n_tasks + 1, dtype=np.int64) * n_query
    return TaskSet(X[is_support], y[is_support], s_off, X[~is_support], y[~is_support], q_off)


def support_recovery(selected, true) -> dict:
    """precision, recall and F1 of a selected column set against the true one."""
    sel, tru = set(int(j) for j in selected), set(int(j) for j in true)
    tp = len(sel & tru)
    precision = tp / len(sel) if sel else 0.0
    recall = tp / len(tru) if tru else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_selected": len(sel)}
