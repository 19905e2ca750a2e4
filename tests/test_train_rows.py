"""Meta-training uses every labelled row (support and query) unless a learner says otherwise."""

import numpy as np
import pytest

import metafast as mf
from metafast.learners._base import TrainingStream, training_source
from metafast.tasks import Task, TaskSet


def _ragged(seed=0, n_tasks=7, dtype=np.float64, labels=False):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_tasks):
        ns, nq = int(rng.integers(0, 6)), int(rng.integers(0, 5))
        Xs, Xq = rng.normal(size=(ns, 3)).astype(dtype), rng.normal(size=(nq, 3)).astype(dtype)
        if labels:
            ys, yq = rng.integers(0, 3, ns), rng.integers(0, 3, nq)
        else:
            ys, yq = rng.normal(size=ns).astype(dtype), rng.normal(size=nq).astype(dtype)
        out.append(Task(Xs, ys, Xq, yq, info={"t": t}))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [False, True])
def test_all_rows_puts_support_then_query_rows_of_each_task(dtype, labels):
    tasks = _ragged(dtype=dtype, labels=labels)
    merged = TaskSet.from_list(tasks).all_rows()
    assert merged.X_query.shape == (0, 3) and merged.y_query.shape == (0,)
    assert merged.dtype == dtype and merged.y_support.dtype == TaskSet.from_list(tasks).y_support.dtype
    assert np.all(merged.query_sizes == 0)
    for t, task in enumerate(tasks):
        np.testing.assert_array_equal(merged[t].X_support, np.concatenate([task.X_support, task.X_query]))
        np.testing.assert_array_equal(merged[t].y_support, np.concatenate([task.y_support, task.y_query]))
        assert merged.info[t] == {"t": t}


def test_all_rows_without_query_rows_is_the_same_taskset():
    ts = mf.tasks.load("sinusoid", n_tasks=4, n_support=5, n_query=3, seed=0).all_rows()
    assert ts.all_rows() is ts


def test_training_source_keeps_the_kind_of_source():
    chunks = [mf.tasks.load("sinusoid", n_tasks=3, n_support=4, n_query=2, seed=s) for s in range(2)]
    as_list = training_source(chunks, "all")
    assert isinstance(as_list, list) and all(c.X_query.shape[0] == 0 for c in as_list)
    assert training_source(chunks, "support")[0].equals(chunks[0])
    stream = mf.tasks.stream("sinusoid", n_tasks=6, chunk_size=3, n_support=4, n_query=2, seed=0)
    view = training_source(stream, "all")
    assert isinstance(view, TrainingStream)
    first_pass = [c.y_support.copy() for c in view]
    second_pass = [c.y_support for c in view]  # re-iterable: a new pass each time
    assert len(first_pass) == 2 and all(np.array_equal(a, b) for a, b in zip(first_pass, second_pass))
    assert first_pass[0].shape == (18,)
    with pytest.raises(ValueError, match="train_rows"):
        training_source(chunks, "query")


def _split_and_merged(seed=0):
    split = mf.tasks.load("sinusoid", n_tasks=60, n_support=5, n_query=7, seed=seed)
    return split, split.all_rows()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("params", [{}, {"covariance": "diag"}, {"n_components": 2, "random_state": 0, "max_iter": 20}])
def test_metabayes_fit_on_split_equals_fit_on_all_rows_in_support(params):
    split, merged = _split_and_merged()
    basis = mf.basis.make("rbf", n_basis=12).fit_tasks(split)
    a = mf.MetaBayes(basis=basis, **params).fit(split)
    b = mf.MetaBayes(basis=basis, **params).fit(merged)
    np.testing.assert_allclose(a.log_evidence_, b.log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(a.noise_var_, b.noise_var_, rtol=1e-10)
    c = mf.MetaBayes(basis=basis, train_rows="support", **params).fit(split)
    assert not np.allclose(c.log_evidence_[-1], a.log_evidence_[-1])
    support_only = TaskSet(
        split.X_support,
        split.y_support,
        split.support_offsets,
        split.X_support[:0],
        split.y_support[:0],
        np.zeros_like(split.support_offsets),
    )
    d = mf.MetaBayes(basis=basis, **params).fit(support_only)
    np.testing.assert_allclose(c.log_evidence_, d.log_evidence_, rtol=1e-10)


def test_metabayes_stream_and_partial_fit_use_every_row():
    split, merged = _split_and_merged()
    basis = mf.basis.make("rbf", n_basis=12).fit_tasks(split)
    chunks = [split[:30], split[30:]]
    a = mf.MetaBayes(basis=basis).fit(chunks)
    b = mf.MetaBayes(basis=basis).fit([merged[:30], merged[30:]])
    np.testing.assert_allclose(a.log_evidence_, b.log_evidence_, rtol=1e-10)
    p = mf.MetaBayes(basis=basis).fit(split[:30]).partial_fit(split[30:])
    q = mf.MetaBayes(basis=basis).fit(merged[:30]).partial_fit(merged[30:])
    np.testing.assert_allclose(p.mean_, q.mean_, rtol=1e-9, atol=1e-12)
    assert p.n_tasks_seen_ == 60


def test_metaridge_closed_form_uses_every_row_but_query_cv_keeps_the_split():
    split, merged = _split_and_merged()
    basis = mf.basis.make("rbf", n_basis=12).fit_tasks(split)
    a = mf.MetaRidge(basis=basis).fit(split)
    b = mf.MetaRidge(basis=basis).fit(merged)
    np.testing.assert_allclose(a.prior_mean_, b.prior_mean_, rtol=1e-10, atol=1e-12)
    assert a.alpha_ == b.alpha_
    c = mf.MetaRidge(basis=basis, train_rows="support").fit(split)
    assert not np.allclose(c.prior_mean_, a.prior_mean_)
    # cv="query" scores alpha on the query sets after adapting on the support: the split is used
    q = mf.MetaRidge(basis=basis, cv="query").fit(split)
    assert q.cv_scores_.size > 1
    with pytest.raises(ValueError, match="query points"):
        mf.MetaRidge(basis=basis, cv="query").fit(merged)


def test_every_row_helps_on_few_support_points():
    train = mf.tasks.load("sinusoid", n_tasks=400, n_support=4, n_query=12, seed=3)
    test = mf.tasks.load("sinusoid", n_tasks=200, n_support=5, n_query=30, seed=4)
    basis = mf.basis.make("rbf", n_basis=20).fit_tasks(train)
    all_rows = mf.MetaBayes(basis=basis).fit(train).evaluate(test)["mse"]
    support = mf.MetaBayes(basis=basis, train_rows="support").fit(train).evaluate(test)["mse"]
    assert all_rows < support


@pytest.mark.parametrize("Learner", [mf.MetaBayes, mf.MetaRidge])
def test_bad_train_rows_is_named(Learner):
    ts = mf.tasks.load("sinusoid", n_tasks=5, n_support=5, n_query=2, seed=0)
    with pytest.raises(ValueError, match="train_rows"):
        Learner(train_rows="query").fit(ts)
