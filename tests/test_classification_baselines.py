"""Classification baselines of the benchmark harness against direct computations."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import metafast as mf
from metafast.bench._skip import Unavailable
from metafast.bench.baselines import OracleClassifier, PerEpisodeLogistic, PooledClassifier


def test_per_episode_logistic_is_sklearn_per_task():
    tasks = mf.tasks.load("digits", n_tasks=6, n_way=3, k_shot=2, n_query=4, seed=0)
    got = PerEpisodeLogistic().fit(tasks).evaluate(tasks)
    acc, nll = [], []
    for t in tasks:
        model = LogisticRegression(max_iter=1000).fit(t.X_support, t.y_support)
        acc.append(np.mean(model.predict(t.X_query) == t.y_query))
        P = model.predict_proba(t.X_query)
        nll.append(-np.log(P[np.arange(len(P)), np.searchsorted(model.classes_, t.y_query)]).mean())
    assert got["accuracy"] == pytest.approx(np.mean(acc))
    assert got["nll"] == pytest.approx(np.mean(nll))


def test_oracle_and_pooled_on_the_logistic_family():
    train = mf.tasks.load("logistic", n_tasks=50, n_support=6, n_query=6, seed=0)
    test = mf.tasks.load("logistic", n_tasks=20, n_support=6, n_query=30, seed=1)
    got = OracleClassifier().fit(train).evaluate(test)
    P = mf.tasks.oracle_proba(test)
    per_row = -np.log(P[np.arange(len(P)), test.y_query])
    assert got["nll"] == pytest.approx(per_row.reshape(20, 30).mean(axis=1).mean())
    pooled = PooledClassifier().fit(train).evaluate(test)
    assert pooled["nll"] > got["nll"] and np.isfinite(pooled["ece"])
    shared_lr = PerEpisodeLogistic().fit(train).evaluate(test)  # classes missing from a support: floor
    assert np.isfinite(shared_lr["nll"])
    with pytest.raises(Unavailable, match="shared labels"):
        PooledClassifier().fit(mf.tasks.load("digits", n_tasks=3))
    with pytest.raises(Unavailable, match="no oracle"):
        OracleClassifier(family="digits").fit(train)


def test_classification_suite_writes_a_reliability_diagram(tmp_path):
    pytest.importorskip("matplotlib")
    from metafast.bench import run_suite, write_results
    from metafast.bench.suites import classification_suite

    suite = classification_suite(quick=True, families=("logistic",))
    suite.cases = [c for c in suite.cases if c.shots == 5 and c.learner.label in ("MetaClassifier (ridge)", "oracle")]
    results = run_suite(suite, verbose=0)
    row = next(r for r in results.rows if r["learner"] == "MetaClassifier (ridge)")
    rel = row["reliability"]
    assert row["status"] == "ok" and sum(rel["count"]) == 60 * 15 * 3  # k_shot style: n_query per class
    assert all(0 <= a <= 1 for a in rel["accuracy"])
    written = write_results(results, tmp_path)
    assert any(str(p).endswith("classification_reliability.png") for p in written["written"])
