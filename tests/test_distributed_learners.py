"""Fits beyond the single-Gaussian EM on Dask workers: MetaBayes learn_basis, the mixture prior and MetaRidge give
the in-process result; the combinations that do not run there are clear errors."""

import warnings

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=90, n_support=6, n_query=4, seed=3)


def _basis(n=10):
    return mf.basis.make("rbf", n_basis=n, length_scale=1.5).fit(np.linspace(-5, 5, 50)[:, None])


def _quiet(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(data)


def test_metabayes_learn_basis_on_the_workers_equals_in_process(client, tasks):
    kw = dict(basis=_basis(), learn_basis=True, basis_rounds=2, basis_max_iter=4, basis_em_iter=2,
              max_iter=6, tol=0)
    local = _quiet(mf.MetaBayes(**kw), tasks)
    remote = _quiet(mf.MetaBayes(backend="dask", **kw), [tasks[:40], tasks[40:]])
    assert len(local.basis_log_evidence_) > 1                      # the basis did move
    np.testing.assert_allclose(remote.basis_log_evidence_, local.basis_log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(remote.basis_.length_scale_ if hasattr(remote.basis_, "length_scale_")
                               else remote.basis_.learnable_params()["log_length_scale"],
                               local.basis_.length_scale_ if hasattr(local.basis_, "length_scale_")
                               else local.basis_.learnable_params()["log_length_scale"], rtol=1e-9)
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(remote.covariance_, local.covariance_, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(alphas=0.5), dict(metric="diag", max_iter=5),
                                dict(train_rows="support"), dict(mean="split"), dict(cv="query"),
                                dict(learn_basis=True, max_iter=4),
                                pytest.param(dict(learn_basis=True, metric="diag", max_iter=3),
                                             marks=pytest.mark.slow)])
def test_metaridge_on_the_workers_equals_in_process(client, tasks, kw):
    # a TaskSet goes to the 2 workers as two halves: the in-process reference gets the same chunks.
    # learn_basis: the gradient is added in another order (support and query terms per chunk
    # first), and L-BFGS turns that round-off into ~1e-7 after a few steps (as it does between a
    # TaskSet and a list of chunks in process): its objective is checked to 1e-12 below
    rtol = 1e-5 if kw.get("learn_basis") else 1e-10
    for data, same in ((tasks, [tasks[:45], tasks[45:]]), ([tasks[:30], tasks[30:70], tasks[70:]], None)):
        local = _quiet(mf.MetaRidge(basis=_basis(), **kw), same if same is not None else data)
        remote = _quiet(mf.MetaRidge(basis=_basis(), backend="dask", **kw), data)
        assert remote.alpha_ == pytest.approx(local.alpha_, rel=rtol)
        np.testing.assert_allclose(remote.prior_mean_, local.prior_mean_, rtol=0,
                                   atol=rtol * np.abs(local.prior_mean_).max())
        np.testing.assert_allclose(remote.prior_scale_, local.prior_scale_, rtol=rtol)
        np.testing.assert_allclose(remote.cv_scores_, local.cv_scores_, rtol=rtol)
        np.testing.assert_allclose(remote.basis_loss_, local.basis_loss_, rtol=rtol)
    if kw.get("learn_basis"):
        assert len(remote.basis_loss_) > 1 and remote.basis_loss_[-1] < remote.basis_loss_[0]


@pytest.mark.parametrize("queries", [True, False])
def test_metaridge_heldout_objective_on_the_workers_equals_in_process(client, tasks, queries):
    from metafast.learners._dask_fits import RidgeChunks
    from metafast.learners.ridge import _TaskSource

    data = tasks if queries else mf.tasks.TaskSet(tasks.X_support, tasks.y_support, tasks.support_offsets,
                                                  tasks.X_query[:0], tasks.y_query[:0],
                                                  np.zeros_like(tasks.query_offsets))
    basis = _basis()
    values = []
    for backend in ("threads", "dask"):
        model = mf.MetaRidge(basis=basis, learn_basis=True, backend=backend)
        model._n_threads, model.basis_, model.n_jitter_ = 1, basis, 0
        source = _TaskSource(data, "all") if backend == "threads" else RidgeChunks(model, data)
        objective, pack, _ = model._basis_objective(source, basis, np.linspace(0.5, 1.5, 10))
        x = pack(basis.with_params(log_length_scale=np.log([1.2])).learnable_params(), np.log(0.3),
                 np.linspace(-1, 1, 10))
        values.append(objective(x))
    np.testing.assert_allclose(values[1][0], values[0][0], rtol=1e-12)
    np.testing.assert_allclose(values[1][1], values[0][1], rtol=1e-10, atol=1e-12 * np.abs(values[0][1]).max())


def test_what_does_not_run_on_the_workers_is_a_clear_error(client, tasks):
    with pytest.raises(ValueError, match="parameter 'backend'"):
        mf.MetaRidge(backend="spark").fit(tasks)
    with pytest.raises(NotImplementedError, match="n_components='auto'"):
        mf.MetaBayes(basis=_basis(), n_components="auto", backend="dask").fit(tasks)
    with pytest.raises(mfd.ChunkUnavailable, match="chunk 0"):
        mf.MetaRidge(basis=_basis(), backend="dask").fit(mfd.FileSource(["/nonexistent/a.npz"]))


@pytest.mark.parametrize("screen", [False, True])
def test_metabayes_mixture_on_the_workers_equals_in_process(client, monkeypatch, screen):
    if screen:      # restarts screened on a subset of the tasks, gathered from the workers
        monkeypatch.setattr("metafast.learners._mixture._SCREEN_TASKS", 40)
    tasks = mf.tasks.load("multimodal", n_tasks=100, n_support=8, n_query=2, seed=0)
    kw = dict(basis=_basis(8), n_components=2, n_init=2, max_iter=8, tol=0, random_state=0)
    local = _quiet(mf.MetaBayes(**kw), tasks)
    remote = _quiet(mf.MetaBayes(backend="dask", **kw), [tasks[:35], tasks[35:]])
    assert remote.n_components_ == local.n_components_ == 2 and remote.n_tasks_seen_ == 100
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(remote.weights_, local.weights_, rtol=1e-9)
    np.testing.assert_allclose(remote.means_, local.means_, rtol=0, atol=1e-9 * np.abs(local.means_).max())
    np.testing.assert_allclose(remote.noise_var_, local.noise_var_, rtol=1e-9)
    X = np.linspace(-4, 4, 7)[:, None]
    np.testing.assert_allclose(remote.adapt(X[:3], np.ones(3)).predict(X), local.adapt(X[:3], np.ones(3)).predict(X),
                               rtol=1e-8)
