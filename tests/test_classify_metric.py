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
        P, c = Phi[offsets[t] : offsets[t + 1]], codes[offsets[t] : offsets[t + 1]]
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
    assert lam[2] < 1e-8 * lam[0]  # S_b has rank 2
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
    assert auto.metric_choice_.startswith("lda") and auto.metric_scores_["lda"] < auto.metric_scores_["none"]
    with pytest.raises(ValueError, match="metric"):
        mf.MetaClassifier(metric="cosine").fit(train)


def test_lda_metric_needs_episodes():
    tasks = mf.tasks.load("logistic", n_tasks=20, n_support=10, n_query=5, seed=0)
    with pytest.raises(ValueError, match="episodic"):
        mf.MetaClassifier(basis="linear", metric="lda").fit(tasks)


def test_refined_map_gradient_matches_finite_differences(rng):
    from metafast.learners.classify._metric_refine import MapLoss

    n_classes = np.array([3, 2, 3])
    sizes = [9, 6, 10]
    offsets = np.r_[0, np.cumsum(sizes)]
    codes = np.concatenate([np.arange(s) % c for s, c in zip(sizes, n_classes)])
    f = MapLoss(rng.normal(size=(25, 5)), codes, offsets, n_classes, 2)
    x = rng.normal(size=10) * 0.5
    _, g = f(x)
    eps = 1e-6
    fd = np.array([(f(x + eps * e)[0] - f(x - eps * e)[0]) / (2 * eps) for e in np.eye(10)])
    np.testing.assert_allclose(g, fd, atol=1e-7)
    assert np.abs(g).max() > 1e-3


def test_refinement_lowers_the_training_loo_loss_and_keeps_the_shape():
    from metafast.learners.classify._metric_refine import MapLoss, refine_map

    X, y = _two_informative_dims(300, 0)
    eps = mf.tasks.episodes(X, y, n_way=5, k_shot=2, n_query=3, n_tasks=60, classes=list(range(10)), seed=0)
    codes = np.concatenate([eps.y_support, eps.y_query]).astype(np.int64)
    order = np.argsort(
        np.concatenate([np.repeat(np.arange(60), eps.support_sizes), np.repeat(np.arange(60), eps.query_sizes)]),
        kind="stable",
    )
    Phi = np.concatenate([eps.X_support, eps.X_query])[order]
    offsets = np.r_[0, np.cumsum(eps.support_sizes + eps.query_sizes)]
    ncls = np.full(60, 5)
    L0 = np.eye(8)[:, :3] * 0.1
    L1 = refine_map(L0, Phi, codes[order], offsets, ncls)
    f = MapLoss(Phi, codes[order], offsets, ncls, 3)
    assert L1.shape == L0.shape and f(L1.ravel())[0] < f(L0.ravel())[0] - 0.05


@pytest.mark.parametrize("option", ["l2", "center-l2"])
def test_normalisation_gives_unit_vectors_and_is_applied_at_adapt(option):
    X, y = _two_informative_dims(300, 0)
    train = mf.tasks.episodes(X, y, n_way=5, k_shot=2, n_query=3, n_tasks=40, classes=list(range(10)), seed=0)
    clf = mf.MetaClassifier(basis="linear", metric="none", normalize=option, max_iter=10).fit(train)
    Phi = clf.basis_.design(X[:50])
    np.testing.assert_allclose(np.linalg.norm(Phi, axis=1), 1.0)
    if option == "center-l2":
        inner = clf.basis_.inner_.design(np.concatenate([train.X_support, train.X_query]))
        np.testing.assert_allclose(clf.basis_.center_, inner.mean(axis=0))
    task = train[0]
    model = clf.adapt(task.X_support, task.y_support)
    np.testing.assert_allclose(
        model.predict_proba(task.X_query), clf.adapt_predict_proba(task.X_support, task.y_support, task.X_query)
    )
    with pytest.raises(ValueError, match="normalize"):
        mf.MetaClassifier(normalize="l1").fit(train)
