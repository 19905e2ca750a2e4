"""The synthetic classification families: logistic (known prior, oracle) and class-mixtures."""

import numpy as np
import pytest

import metafast as mf
from metafast.tasks.classes import logistic_features, logistic_prior


def test_logistic_family_protocol_and_oracle():
    tasks = mf.tasks.load("logistic", n_tasks=300, n_support=5, n_query=50, seed=3)
    assert tasks.label_setting == "shared" and tasks.is_classification
    assert tasks.X_support.shape == (1500, 2) and np.abs(tasks.X_query).max() <= 1
    P = mf.tasks.oracle_proba(tasks)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    # labels are drawn from the oracle probabilities: observed frequencies match them
    onehot = np.eye(3)[tasks.y_query]
    assert np.abs(onehot.mean(axis=0) - P.mean(axis=0)).max() < 0.02
    # task weights follow the documented prior
    W = np.stack([d["weights"] for d in tasks.info])
    mu, cov = logistic_prior()
    assert np.abs(W.mean(axis=0) - mu).max() < 0.25
    assert np.abs(W.var(axis=0) - 1.0).max() < 0.35
    first = mf.tasks.load("logistic", n_tasks=10, n_support=5, n_query=50, seed=3)
    assert first.equals(tasks.subset(slice(0, 10)))
    X = tasks[0].X_query
    Z = logistic_features(X) @ W[0].T
    np.testing.assert_allclose(
        P[:50], np.exp(Z - Z.max(1, keepdims=True)) / np.exp(Z - Z.max(1, keepdims=True)).sum(1, keepdims=True)
    )


def test_logistic_family_episodic_and_errors():
    ep = mf.tasks.load("logistic", n_tasks=5, setting="episodic")
    assert ep.label_setting == "episodic"
    assert np.all(logistic_prior(setting="episodic")[0] == 0)
    with pytest.raises(ValueError, match="n_classes"):
        mf.tasks.load("logistic", n_tasks=5, n_classes=1)
    with pytest.raises(ValueError, match="label_setting"):
        mf.tasks.load("logistic", n_tasks=5, setting="both")
    with pytest.raises(ValueError, match="not made by the 'logistic' loader"):
        mf.tasks.oracle_proba(mf.tasks.load("digits", n_tasks=2))


def test_class_mixtures_20_way():
    tr = mf.tasks.load("class-mixtures", n_tasks=30, k_shot=1, n_query=3, seed=0)
    te = mf.tasks.load("class-mixtures", n_tasks=30, k_shot=1, n_query=3, seed=0, split="test")
    assert tr.label_setting == "episodic" and tr.n_features == 16
    assert np.all(tr.support_sizes == 20) and np.all(te.query_sizes == 60)
    train_cls = {c for d in tr.info for c in d["classes"]}
    test_cls = {c for d in te.info for c in d["classes"]}
    assert max(train_cls) < 64 <= min(test_cls)
    assert all(len(set(d["classes"])) == 20 for d in tr.info)
    # the same class looks the same in two episodes: class-conditional structure, not noise
    a = mf.tasks.load(
        "class-mixtures", n_tasks=200, k_shot=5, n_query=1, n_way=2, n_total_classes=4, train_fraction=0.5, seed=1
    )
    assert np.isfinite(a.X_support).all()
    with pytest.raises(ValueError, match="n_way=40"):
        mf.tasks.load("class-mixtures", n_tasks=2, n_way=40, split="test")
