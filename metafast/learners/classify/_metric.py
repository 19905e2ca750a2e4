"""A metric learned across episodes: a low-rank linear map of the basis, phi -> L^T phi (m -> r).

Closed form from the training episodes' scatter, every labelled row used, no class identity
needed across episodes (labels are re-drawn per episode):

* within-class scatter S_w = sum_t sum_c sum_{i in (t, c)} (phi_i - mean_tc)(phi_i - mean_tc)^T;
* between-class scatter S_b = sum_t sum_c n_tc (mean_tc - mean_t)(mean_tc - mean_t)^T,

then the generalised eigenproblem S_b v = lambda (S_w + eps I) v (LDA, Fisher 1936; what an LDA
projection learned on the meta-train classes does, pooled over episodes).  L holds the leading
eigenvectors scaled to unit within-class variance (v^T S_w v = 1), so Euclidean distance after the
map is the Mahalanobis distance of the pooled within-class covariance along the discriminant axes.
r is the smallest number of axes holding ``MASS`` of the sum of the eigenvalues (at most
``MAX_RANK``).  The heads then work on the r mapped features (the prototype head's diagonal metric,
learned on the leave-one-out log loss, rescales the r axes).
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.linalg import eigh
from sklearn.covariance import ledoit_wolf_shrinkage

from metafast.basis._base import BasisFamily
from metafast.learners.classify._labels import task_ids

MASS = 0.95
MAX_RANK = 64
RIDGE = 1e-3  # eps = RIDGE x mean diagonal of S_w: the eigenproblem stays defined


def episode_scatter(Phi: np.ndarray, codes: np.ndarray, offsets: np.ndarray, n_classes: np.ndarray):
    """(S_w, S_b) of packed episodes (rows ``offsets[t]:offsets[t+1]`` of task t, codes < n_classes[t])."""
    Phi = np.asarray(Phi, dtype=np.float64)
    p_off = np.zeros(offsets.shape[0], dtype=np.int64)
    np.cumsum(n_classes, out=p_off[1:])
    tid = task_ids(offsets)
    keys = p_off[tid] + codes
    n_keys = int(p_off[-1])
    counts = np.bincount(keys, minlength=n_keys).astype(np.float64)
    sums = np.zeros((n_keys, Phi.shape[1]))
    np.add.at(sums, keys, Phi)
    means = sums / np.maximum(counts, 1.0)[:, None]
    R = Phi - means[keys]
    S_w = R.T @ R
    shrink = float(ledoit_wolf_shrinkage(R, assume_centered=True)) if R.shape[0] > 1 else 1.0
    task_n = np.bincount(tid, minlength=offsets.shape[0] - 1).astype(np.float64)
    task_sum = np.zeros((offsets.shape[0] - 1, Phi.shape[1]))
    np.add.at(task_sum, tid, Phi)
    task_mean = task_sum / np.maximum(task_n, 1.0)[:, None]
    key_task = np.repeat(np.arange(offsets.shape[0] - 1), n_classes)
    D = (means - task_mean[key_task]) * np.sqrt(counts)[:, None]
    return S_w, D.T @ D, shrink


def lda_map(
    S_w: np.ndarray, S_b: np.ndarray, rank: int | None = None, shrinkage: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(L (m, r), eigenvalues (m,) in decreasing order) of the discriminant map (module docstring);
    S_w is shrunk toward its mean diagonal by ``shrinkage`` (plus a ``RIDGE`` floor)."""
    m = S_w.shape[0]
    mu = max(float(np.trace(S_w)) / m, 1e-12)
    S = (1.0 - shrinkage) * S_w + (shrinkage + RIDGE) * mu * np.eye(m)
    lam, V = eigh(S_b, S)
    lam, V = lam[::-1].clip(min=0.0), V[:, ::-1]
    if rank is None:
        total = lam.sum()
        rank = int(np.searchsorted(np.cumsum(lam), MASS * total) + 1) if total > 0 else 1
        rank = min(rank, MAX_RANK, m)
    return V[:, :rank], lam


class Projected(BasisFamily):
    """A fitted basis followed by a fixed linear map: design(X) = inner.design(X) @ L."""

    _n_basis_from_fit = True

    def __init__(self, inner: BasisFamily | None = None, L: np.ndarray | None = None):
        self.inner = inner
        self.L = L

    @property
    def n_basis(self):
        return None if self.L is None else int(np.shape(self.L)[1])

    def fit(self, X, y=None):
        if not isinstance(self.inner, BasisFamily) or not self.inner.__sklearn_is_fitted__():
            raise TypeError("parameter 'inner' of Projected must be a fitted BasisFamily")
        L = np.asarray(self.L, dtype=np.float64)
        if L.ndim != 2 or L.shape[0] != self.inner.n_basis:
            raise ValueError(f"parameter 'L' must have shape ({self.inner.n_basis}, r); got {L.shape}")
        self.inner_, self.L_ = copy.deepcopy(self.inner), L
        return self

    def design(self, X):
        Phi = self.inner_.design(X)
        return (Phi @ self.L_.astype(Phi.dtype)).astype(X.dtype, copy=False)


def project_basis(basis: BasisFamily, ts, encode_split, rank: int | None = None, refine: bool = False):
    """(Projected basis, eigenvalues): the LDA map of ``basis`` learned from every labelled row of
    episodes ``ts`` (``encode_split(ts) -> (support codes, n_classes, query codes)``)."""
    codes_s, ncls, codes_q = encode_split(ts)
    X = np.concatenate([ts.X_support, ts.X_query])
    codes = np.concatenate([codes_s, codes_q])
    # rows grouped by task: support rows of task t then its query rows
    order = np.argsort(np.concatenate([task_ids(ts.support_offsets), task_ids(ts.query_offsets)]), kind="stable")
    sizes = ts.support_sizes + ts.query_sizes
    offsets = np.zeros(len(ts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    Phi = basis.design(X[order])
    S_w, S_b, shrink = episode_scatter(Phi, codes[order], offsets, np.asarray(ncls, dtype=np.int64))
    L, lam = lda_map(S_w, S_b, rank, shrink)
    if refine:
        from metafast.learners.classify._metric_refine import refine_map

        L = refine_map(L, Phi, codes[order], offsets, np.asarray(ncls, dtype=np.int64))
    return Projected(basis, L).fit(X[:1]), lam


def class_rows(ts):
    """(X, labels) of every distinct labelled row of episodes that record their classes
    (``info["classes"]``, as ``mf.tasks.episodes`` does), or None."""
    if not all(isinstance(i, dict) and "classes" in i for i in ts.info):
        return None
    X, labels = [], []
    for t in range(len(ts)):
        names = np.asarray(ts.info[t]["classes"]).astype(str)
        for Xp, yp, off in (
            (ts.X_support, ts.y_support, ts.support_offsets),
            (ts.X_query, ts.y_query, ts.query_offsets),
        ):
            X.append(Xp[off[t] : off[t + 1]])
            labels.append(names[np.asarray(yp[off[t] : off[t + 1]], dtype=np.int64)])
    X, idx = np.unique(np.concatenate(X).astype(np.float64), axis=0, return_index=True)
    return X, np.concatenate(labels)[idx]


def choose_metric(learner, ts, n_tasks: int = 100) -> tuple[str, dict]:
    """("none", "lda" or "lda-refined", scores): the metric whose held-out query log loss is lowest when fitted on
    episodes of half of the meta-train classes and scored on episodes of the other half (the
    class-disjoint transfer the metric is for).  "none" when the episodes do not record their
    classes or there are too few classes to split."""
    import metafast as mf

    data = class_rows(ts)
    if data is None:
        return "none", {"reason": "episodes do not record their classes (info['classes'])"}
    X, y = data
    classes, counts = np.unique(y, return_counts=True)
    n_cls = int(np.max([len(i["classes"]) for i in ts.info]))
    k = max(1, round(np.median(ts.support_sizes) / n_cls))
    q = 5
    classes = classes[counts >= k + q]
    perm = classes[np.random.default_rng(0).permutation(classes.size)]
    a, b = perm[: perm.size // 2], perm[perm.size // 2 :]
    way = min(n_cls, a.size, b.size)
    if way < 2:
        return "none", {"reason": f"{classes.size} meta-train classes are too few to split"}
    fit_eps = mf.tasks.episodes(X, y, n_way=way, k_shot=k, n_query=q, n_tasks=n_tasks, classes=list(a), seed=0)
    held = mf.tasks.episodes(X, y, n_way=way, k_shot=k, n_query=q, n_tasks=n_tasks, classes=list(b), seed=1)
    scores = {}
    for metric in ("none", "lda", "lda-refined"):
        params = dict(
            learner.get_params(deep=False),
            basis=learner.basis_,
            metric=metric,
            standardize=False,
            learn_basis=False,
            backend="threads",
            max_iter=min(learner.max_iter, 15),
            verbose=0,
        )
        scores[metric] = float(type(learner)(**params).fit(fit_eps).evaluate(held)["nll"])
    return min(scores, key=scores.get), scores


__all__ = ["Projected", "choose_metric", "class_rows", "episode_scatter", "lda_map", "project_basis"]
