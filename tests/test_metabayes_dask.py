"""MetaBayes with backend="dask": chunks live on the workers, the fit matches the in-process fit,
and losing a worker mid-fit changes nothing."""

import os
import signal
import warnings

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd

distributed = pytest.importorskip("distributed")


def _basis():
    """Fitted up front, so every source fits with the same basis."""
    return mf.basis.make("rbf", n_basis=12, length_scale=1.0).fit(np.linspace(-5, 5, 50)[:, None])


def _fit(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mf.MetaBayes(basis=_basis(), max_iter=8, tol=0, **kw).fit(data)


def _same(a, b, rtol):
    np.testing.assert_allclose(a.log_evidence_, b.log_evidence_, rtol=rtol)
    np.testing.assert_allclose(a.covariance_, b.covariance_, rtol=100 * rtol, atol=1e-13)
    np.testing.assert_allclose(a.noise_var_, b.noise_var_, rtol=10 * rtol)


def test_dask_backend_without_client_is_a_clear_error():  # first: before the module's client exists
    tasks = mf.tasks.load("sinusoid", n_tasks=10, n_support=5, n_query=5, seed=0)
    with pytest.raises(ValueError, match="Client"):
        mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=5), backend="dask", max_iter=2).fit(tasks)
    with pytest.raises(ValueError, match="backend"):
        mf.MetaBayes(backend="spark").fit(tasks)


def test_every_source_fits_on_the_workers_like_in_process(client, tmp_path):
    tasks = mf.tasks.load("sinusoid", n_tasks=120, n_support=5, n_query=5, seed=0)
    local = _fit(tasks)
    stream = mf.tasks.stream("sinusoid", n_tasks=120, chunk_size=50, seed=0, n_support=5, n_query=5)
    paths = []
    for i, (a, b) in enumerate([(0, 50), (50, 90), (90, 120)]):
        paths.append(tmp_path / f"chunk{i}.npz")
        tasks[a:b].save(paths[-1])
    sources = {
        "TaskSet": tasks,
        "list": [tasks[0:50], tasks[50:90], tasks[90:120]],
        "stream": stream,
        "files": mfd.FileSource(paths),
    }
    for data in sources.values():
        remote = _fit(data, backend="dask")
        # the statistics are summed in another (tree) order: round-off, amplified a little by SQUAREM
        _same(remote, local, rtol=1e-9)
    assert mfd.DaskChunks(tasks, "all", client).__len__() == 2  # one chunk per worker thread


def test_worker_kernels_use_the_worker_threads(client):
    fut = client.submit(mfd._on_chunk, lambda chunk, n: n, "a chunk", pure=False)
    assert fut.result() == 1


def test_unsupported_combinations_and_unbuildable_chunks_are_clear_errors(client, tmp_path):
    tasks = mf.tasks.load("sinusoid", n_tasks=20, n_support=5, n_query=5, seed=0)
    with pytest.raises(ValueError, match="resample"):
        _fit(mf.tasks.stream("sinusoid", n_tasks=20, chunk_size=10, resample=True), backend="dask")
    tasks.save(tmp_path / "a.npz")
    with pytest.raises(mfd.ChunkUnavailable, match=r"chunk 1 \(file .*missing.npz"):
        _fit(mfd.FileSource([tmp_path / "a.npz", tmp_path / "missing.npz"]), backend="dask")
    with pytest.raises(TypeError, match="FileSource"):
        _fit(iter([tasks]), backend="dask")


class _KillAWorker:
    """Wraps DaskChunks.map_sum: SIGKILLs one worker process just before the given pass."""

    def __init__(self, client, at_pass):
        self.client, self.at_pass, self.calls, self.killed = client, at_pass, 0, False
        self.original = mfd.DaskChunks.map_sum

    def __call__(self, chunks, fn, *args, **kw):
        self.calls += 1
        if self.calls == self.at_pass:
            pids = self.client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)
            self.killed = True
        return self.original(chunks, fn, *args, **kw)


def _long_table(tasks):
    """One row per labelled point, keyed by task."""
    import pandas as pd

    ts = tasks.all_rows()
    return pd.DataFrame(
        {"task": np.repeat(np.arange(len(ts)), ts.support_sizes), "x": ts.X_support[:, 0], "y": ts.y_support}
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", ["TaskSet", "stream", "files", "parquet", "dataframe"])
def test_losing_a_worker_mid_fit_gives_the_undisturbed_result(source, tmp_path, monkeypatch, process_client):
    tasks = mf.tasks.load("sinusoid", n_tasks=400, n_support=5, n_query=5, seed=1)
    if source == "TaskSet":
        data = tasks
    elif source == "stream":
        data = mf.tasks.stream("sinusoid", n_tasks=400, chunk_size=100, seed=1, n_support=5, n_query=5)
    elif source == "parquet":  # tables made into tasks by from_frame on the workers
        pytest.importorskip("pyarrow")
        frame = _long_table(tasks)
        paths = [tmp_path / f"c{i}.parquet" for i in range(4)]
        for i, p in enumerate(paths):
            frame[frame["task"] // 100 == i].to_parquet(p, index=False)
        data = mfd.FileSource(paths, group="task", features="x", target="y")
    elif source == "dataframe":  # a dask DataFrame, shuffled on its key on the workers
        dd = pytest.importorskip("dask.dataframe")
        frame = _long_table(tasks)
        data = mfd.DataFrameSource(
            dd.from_pandas(frame, npartitions=4, sort=False), group="task", features=["x"], target="y"
        )
    else:
        paths = [tmp_path / f"c{i}.npz" for i in range(4)]
        for i, p in enumerate(paths):
            tasks[100 * i : 100 * (i + 1)].save(p)
        data = mfd.FileSource(paths)
    calm = _fit(data, backend="dask")
    killer = _KillAWorker(process_client, at_pass=4)
    monkeypatch.setattr(mfd.DaskChunks, "map_sum", lambda self, fn, *a, **kw: killer(self, fn, *a, **kw))
    hit = _fit(data, backend="dask")
    assert killer.killed
    _same(hit, calm, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["mixture", "mixture-auto", "learn_basis", "ridge"])
def test_losing_a_worker_mid_fit_of_the_other_learners_gives_the_undisturbed_result(
    learner, monkeypatch, process_client
):
    tasks = mf.tasks.load("multimodal", n_tasks=200, n_support=6, n_query=2, seed=2)

    def fit(client_kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if learner == "ridge":
                return mf.MetaRidge(basis=_basis(), metric="diag", max_iter=3, **client_kw).fit(tasks)
            kw = (
                dict(n_components=2, n_init=2, random_state=0)
                if learner == "mixture"
                else dict(n_components="auto", n_init=1, random_state=0)
                if learner == "mixture-auto"
                else dict(learn_basis=True, basis_rounds=1, basis_max_iter=3, basis_em_iter=2)
            )
            return mf.MetaBayes(basis=_basis(), max_iter=6, tol=0, **kw, **client_kw).fit(tasks)

    calm = fit(dict(backend="dask"))
    killer = _KillAWorker(process_client, at_pass=4)
    monkeypatch.setattr(mfd.DaskChunks, "map_sum", lambda self, fn, *a, **kw: killer(self, fn, *a, **kw))
    hit = fit(dict(backend="dask"))
    assert killer.killed
    if learner == "ridge":
        np.testing.assert_allclose(hit.prior_mean_, calm.prior_mean_, rtol=1e-12)
        np.testing.assert_allclose(hit.prior_scale_, calm.prior_scale_, rtol=1e-12)
    else:
        np.testing.assert_allclose(hit.log_evidence_, calm.log_evidence_, rtol=1e-12)
        np.testing.assert_allclose(hit.noise_var_, calm.noise_var_, rtol=1e-12)
    if learner == "mixture-auto":
        np.testing.assert_allclose(
            hit.mixture_.component_scores_["heldout_log_evidence"],
            calm.mixture_.component_scores_["heldout_log_evidence"],
            rtol=1e-12,
        )
