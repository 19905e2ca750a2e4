"""The learned metric (``_metric``): scatter against brute force, the eigenproblem, the choice."""

import warnings

import numpy as np
import pytest

import metafast as mf
from metafast.learners.classify import _metric


def test_episode_scatter_matches_a_loop_over_tasks_and_classes(rng):
    n_classes = np.array([2, 3, 2])
    offsets = np.array([0, 5, 12, 16])
    codes = np.concatenate([rng.integers(0, c, size=offsets[t + 1] - offsets[t]) for t, c in enumerate(n_classes)])
    codes[[0, 1, 5, 6, 7, 12, 13]] = [0, 1, 0, 1, 2, 0, 1]
    Phi = rng.normal(size=(16, 4))
    S_w, S_b, shrink = _metric.episode_scatter(Phi, codes, offsets, n_classes)
    W, B = np.zeros((4, 4)), np.zeros((4, 4))
    for t in range(3):
        P, c = Phi[offsets[t]:offsets[t + 1]], codes[offsets[t]:offsets[t + 1]]
        for k in np.unique(c):
            R = P[c == k] - P[c == k].mean(0)
            W += R.T @ R
            d = P[c == k].mean(0) - P.mean(0)
            B += (c == k).sum() * np.outer(d, d)
    np.testing.assert_allclose(S_w, W, atol=1e-12)
    np.testing.assert_allclose(S_b, B, atol=1e-12)
    assert 0.0 <= shrink <= 1.0


def test_lda_map_solves_the_generalised_eigenproblem(rng):
    A = rng.normal(size=(30, 5))
    S_w, S_b = A.T @ A, np.outer(A[0], A[0]) + np.outer(A[1], A[1])
    L, lam = _metric.lda_map(S_w, S_b, rank=2)
    S = S_w + _metric.RIDGE * np.trace(S_w) / 5 * np.eye(5)
    np.testing.assert_allclose(S_b @ L, S @ L * lam[:2], atol=1e-8)
    np.testing.assert_allclose(L.T @ S @ L, np.eye(2), atol=1e-8)
    assert lam[2] < 1e-8 * lam[0]      # S_b has rank 2
    L_auto, _ = _metric.lda_map(S_w, S_b)
    assert L_auto.shape[1] <= 2


def _two_informative_dims(n_tasks, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 2)) * 3
    y = np.repeat(np.arange(20), 40)
    X = np.column_stack([centres[y] + rng.normal(size=(800, 2)) * 0.5, rng.normal(size=(800, 6)) * 3])
    return X, y


def test_lda_metric_transfers_to_new_classes_when_the_informative_axes_are_shared():
    X, y = _two_informative_dims(300, 0)
    kw = {"n_way": 5, "k_shot": 1, "n_query": 5}
    train = mf.tasks.episodes(X, y, n_tasks=200, classes=list(range(10)), seed=0, **kw)
    test = mf.tasks.episodes(X, y, n_tasks=100, classes=list(range(10, 20)), seed=1, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lda = mf.MetaClassifier(basis="linear", metric="lda", max_iter=20).fit(train)
        none = mf.MetaClassifier(basis="linear", metric="none", max_iter=20).fit(train)
        auto = mf.MetaClassifier(basis="linear", max_iter=20).fit(train)
    assert lda.basis_.n_basis <= 3
    assert lda.evaluate(test)["accuracy"] > none.evaluate(test)["accuracy"] + 0.05
    assert auto.metric_choice_ == "lda" and auto.metric_scores_["lda"] < auto.metric_scores_["none"]
    with pytest.raises(ValueError, match="metric"):
        mf.MetaClassifier(metric="cosine").fit(train)


def test_lda_metric_needs_episodes():
    tasks = mf.tasks.load("logistic", n_tasks=20, n_support=10, n_query=5, seed=0)
    with pytest.raises(ValueError, match="episodic"):
        mf.MetaClassifier(basis="linear", metric="lda").fit(tasks)
