"""MetaClassifier with backend="dask": every head fits on the workers to the in-process result, in
both label settings and for both train_rows; bad combinations are clear errors."""

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd

distributed = pytest.importorskip("distributed")
from test_metabayes_dask import _KillAWorker  # noqa: E402  (SIGKILLs a worker before a given pass)

HEADS = ("logistic", "ridge", "prototype")


def _tasks(setting, n_tasks=60, seed=0):
    if setting == "shared":
        return mf.tasks.load("logistic", n_tasks=n_tasks, n_support=6, n_query=6, seed=seed)
    return mf.tasks.load(
        "class-mixtures", n_tasks=n_tasks, n_way=3, n_features=4, n_total_classes=12, k_shot=2, n_query=3, seed=seed
    )


def _fit(data, head, backend="threads", **kw):
    kw = {"basis": mf.basis.make("polynomial", n_basis=3), "max_iter": 6, "tol": 0.0, "metric": "none", **kw}
    return mf.MetaClassifier(head=head, backend=backend, **kw).fit(data)


def _fitted_basis(tasks):
    """Fitted up front: in process a list of chunks fits it on all of them, on Dask on the first."""
    return mf.basis.make("polynomial", n_basis=3).fit(tasks.X_support)


def _head_numbers(model):
    """(numbers summed over tasks and compared to round-off, numbers set by a 1-D minimiser).  A
    minimiser's argument is only defined to about sqrt(machine eps) of its loss: near the
    minimum, changes of the loss in its last bits (another summation order) move it by ~1e-8."""
    h = model.head_
    if model.head == "prototype":
        return [h.metric_, np.atleast_1d(h.loss_)] + ([h.global_means_] if h.global_means_ is not None else []), []
    means = [h.prior_.means] if h.prior_.means is not None else []
    if model.head == "logistic":  # the EM prior, then its calibrated scale
        return [h.prior_.cov / h.scale_, model.log_evidence_] + means, [np.atleast_1d(h.scale_)]
    return [h.prior_.cov, model.log_evidence_, np.atleast_1d(h.noise_var_)] + means, [np.atleast_1d(h.temperature_)]


def _assert_same_fit(remote, local, test, rtol=1e-10):
    assert remote.n_tasks_seen_ == local.n_tasks_seen_
    assert remote.n_iter_ == local.n_iter_
    if local.setting_ == "shared":
        np.testing.assert_array_equal(remote.classes_, local.classes_)
    (summed_r, argmin_r), (summed_l, argmin_l) = _head_numbers(remote), _head_numbers(local)
    for a, b in zip(summed_r, summed_l, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    for a, b in zip(argmin_r, argmin_l, strict=True):
        np.testing.assert_allclose(a, b, rtol=max(rtol, 1e-6))
    np.testing.assert_allclose(
        remote.predict_tasks_proba(test), local.predict_tasks_proba(test), rtol=max(rtol, 1e-6), atol=1e-9
    )


def test_dask_backend_without_client_or_with_a_bad_value_is_a_clear_error():  # before the module's client
    tasks = _tasks("shared", 10)
    with pytest.raises(ValueError, match="Client"):
        _fit(tasks, "logistic", backend="dask")
    with pytest.raises(ValueError, match="parameter 'backend'.*'spark'"):
        _fit(tasks, "logistic", backend="spark")


@pytest.mark.parametrize("train_rows", ["all", "support"])
@pytest.mark.parametrize("setting", ["shared", "episodic"])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_fits_on_the_workers_like_in_process(client, head, setting, train_rows):
    tasks, test = _tasks(setting), _tasks(setting, 10, seed=1)
    local = _fit(tasks, head, train_rows=train_rows)
    remote = _fit(tasks, head, "dask", train_rows=train_rows)  # two chunks, one per worker thread
    _assert_same_fit(remote, local, test)


def test_shared_classes_are_the_union_over_the_chunks(client):
    tasks = _tasks("shared", 90)
    # shift the labels of the last third of the tasks: its top classes are in no other chunk
    y_s, y_q = tasks.y_support.copy(), tasks.y_query.copy()
    shift = int(max(y_s.max(), y_q.max())) + 1
    y_s[tasks.support_offsets[60] :] += shift
    y_q[tasks.query_offsets[60] :] += shift
    union = np.unique(np.concatenate([y_s, y_q]))
    assert union.max() >= 2 * shift - 1
    tasks = mf.tasks.TaskSet(
        tasks.X_support, y_s, tasks.support_offsets, tasks.X_query, y_q, tasks.query_offsets, label_setting="shared"
    )
    chunks = [tasks[0:30], tasks[30:60], tasks[60:90]]
    for head in HEADS:
        local = _fit(chunks, head, basis=_fitted_basis(tasks))
        remote = _fit(chunks, head, "dask", basis=_fitted_basis(tasks))
        np.testing.assert_array_equal(remote.classes_, union)
        _assert_same_fit(remote, local, tasks[55:65])


def test_a_stream_fits_on_the_workers(client):
    stream = mf.tasks.stream("logistic", n_tasks=60, chunk_size=20, seed=0, n_support=6, n_query=6)
    local = _fit(list(stream), "logistic", basis=_fitted_basis(_tasks("shared")))
    remote = _fit(stream, "logistic", "dask", basis=_fitted_basis(_tasks("shared")))
    _assert_same_fit(remote, local, _tasks("shared", 10, seed=1))


@pytest.mark.parametrize(
    "head,setting",
    [
        ("logistic", "episodic"),
        ("ridge", "episodic"),
        ("prototype", "episodic"),
        pytest.param("logistic", "shared", marks=pytest.mark.slow),
        pytest.param("ridge", "shared", marks=pytest.mark.slow),
        ("prototype", "shared"),
    ],
)
def test_learn_basis_on_the_workers_like_in_process(client, head, setting):
    tasks, test = _tasks(setting, 40), _tasks(setting, 10, seed=1)
    kw = dict(
        basis=mf.basis.make("polynomial", n_basis=3), learn_basis=True, basis_rounds=2, basis_max_iter=4, max_iter=4
    )
    local = _fit(tasks, head, **kw)
    remote = _fit(tasks, head, "dask", **kw)
    assert len(remote.basis_objective_) == len(local.basis_objective_) >= 2
    np.testing.assert_allclose(remote.basis_objective_, local.basis_objective_, rtol=1e-7)
    for k, v in local.basis_.learnable_params().items():
        np.testing.assert_allclose(remote.basis_.learnable_params()[k], v, rtol=1e-6)
    _assert_same_fit(remote, local, test, rtol=1e-6)


def test_unsupported_sources_and_bad_chunks_are_clear_errors(client):
    tasks = _tasks("shared", 20)
    with pytest.raises(ValueError, match="resample"):
        _fit(mf.tasks.stream("logistic", n_tasks=20, chunk_size=10, resample=True), "ridge", "dask")
    regression = mf.tasks.load("sinusoid", n_tasks=10, n_support=5, n_query=5, seed=0)
    with pytest.raises(TypeError, match=r"training chunk 1 of the list.*regression"):
        _fit([tasks, regression], "ridge", "dask")
    wide = mf.tasks.load("logistic", n_tasks=10, n_support=6, n_query=6, seed=0, n_features=3)
    with pytest.raises(ValueError, match=r"training chunk 1 of the list.*3 features"):
        _fit([tasks, wide], "ridge", "dask")
    with pytest.raises(TypeError, match="FileSource"):
        _fit(iter([tasks]), "ridge", "dask")


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_losing_a_worker_mid_fit_gives_the_undisturbed_result(head, monkeypatch, process_client):
    tasks, test = _tasks("episodic", 80), _tasks("episodic", 10, seed=1)
    calm = _fit(tasks, head, "dask")
    killer = _KillAWorker(process_client, at_pass=3)
    monkeypatch.setattr(mfd.DaskChunks, "map_sum", lambda self, fn, *a: killer(self, fn, *a))
    hit = _fit(tasks, head, "dask")
    assert killer.killed
    # the logistic MAP of a rebuilt chunk starts cold instead of warm: equal to Newton's tolerance
    _assert_same_fit(hit, calm, test, rtol=1e-12 if head != "logistic" else 1e-8)
