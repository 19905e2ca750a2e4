"""Fits beyond the single-Gaussian EM on Dask workers: MetaBayes learn_basis, the mixture prior and MetaRidge give
the in-process result; the combinations that do not run there are clear errors."""

import warnings

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd

distributed = pytest.importorskip("distributed")


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
    kw = dict(basis=_basis(), learn_basis=True, basis_rounds=2, basis_max_iter=4, basis_em_iter=2, max_iter=6, tol=0)
    local = _quiet(mf.MetaBayes(**kw), tasks)
    remote = _quiet(mf.MetaBayes(backend="dask", **kw), [tasks[:40], tasks[40:]])
    assert len(local.basis_log_evidence_) > 1  # the basis did move
    np.testing.assert_allclose(remote.basis_log_evidence_, local.basis_log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(
        remote.basis_.length_scale_
        if hasattr(remote.basis_, "length_scale_")
        else remote.basis_.learnable_params()["log_length_scale"],
        local.basis_.length_scale_
        if hasattr(local.basis_, "length_scale_")
        else local.basis_.learnable_params()["log_length_scale"],
        rtol=1e-9,
    )
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(remote.covariance_, local.covariance_, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(alphas=0.5),
        dict(metric="diag", max_iter=5),
        dict(train_rows="support"),
        dict(mean="split"),
        dict(cv="query"),
        dict(learn_basis=True, max_iter=4),
        pytest.param(dict(learn_basis=True, metric="diag", max_iter=3), marks=pytest.mark.slow),
    ],
)
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
        np.testing.assert_allclose(
            remote.prior_mean_, local.prior_mean_, rtol=0, atol=rtol * np.abs(local.prior_mean_).max()
        )
        np.testing.assert_allclose(remote.prior_scale_, local.prior_scale_, rtol=rtol)
        np.testing.assert_allclose(remote.cv_scores_, local.cv_scores_, rtol=rtol)
        np.testing.assert_allclose(remote.basis_loss_, local.basis_loss_, rtol=rtol)
    if kw.get("learn_basis"):
        assert len(remote.basis_loss_) > 1 and remote.basis_loss_[-1] < remote.basis_loss_[0]


@pytest.mark.parametrize("queries", [True, False])
def test_metaridge_heldout_objective_on_the_workers_equals_in_process(client, tasks, queries):
    from metafast.learners.ridge._dask import RidgeChunks
    from metafast.learners.ridge.estimator import _TaskSource

    data = (
        tasks
        if queries
        else mf.tasks.TaskSet(
            tasks.X_support,
            tasks.y_support,
            tasks.support_offsets,
            tasks.X_query[:0],
            tasks.y_query[:0],
            np.zeros_like(tasks.query_offsets),
        )
    )
    basis = _basis()
    values = []
    for backend in ("threads", "dask"):
        model = mf.MetaRidge(basis=basis, learn_basis=True, backend=backend)
        model._n_threads, model.basis_, model.n_jitter_ = 1, basis, 0
        source = _TaskSource(data, "all") if backend == "threads" else RidgeChunks(model, data)
        objective, pack, _ = model._basis_objective(source, basis, np.linspace(0.5, 1.5, 10))
        x = pack(
            basis.with_params(log_length_scale=np.log([1.2])).learnable_params(), np.log(0.3), np.linspace(-1, 1, 10)
        )
        values.append(objective(x))
    np.testing.assert_allclose(values[1][0], values[0][0], rtol=1e-12)
    np.testing.assert_allclose(values[1][1], values[0][1], rtol=1e-10, atol=1e-12 * np.abs(values[0][1]).max())


def test_what_does_not_run_on_the_workers_is_a_clear_error(client, tasks):
    with pytest.raises(ValueError, match="parameter 'backend'"):
        mf.MetaRidge(backend="spark").fit(tasks)
    with pytest.raises(mfd.ChunkUnavailable, match="chunk 0"):
        mf.MetaRidge(basis=_basis(), backend="dask").fit(mfd.FileSource(["/nonexistent/a.npz"]))


@pytest.mark.parametrize("screen", [False, True])
def test_metabayes_mixture_on_the_workers_equals_in_process(client, monkeypatch, screen):
    if screen:  # restarts screened on a subset of the tasks, gathered from the workers
        monkeypatch.setattr("metafast.learners.bayes.mixture.prior._SCREEN_TASKS", 40)
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
    np.testing.assert_allclose(
        remote.adapt(X[:3], np.ones(3)).predict(X), local.adapt(X[:3], np.ones(3)).predict(X), rtol=1e-8
    )


def test_metabayes_auto_components_on_the_workers_equals_in_process(client, monkeypatch):
    # the held-out split is a hash of (seed, global task index): the same tasks whatever the
    # chunking, so threads and dask fit and score the same subsets and choose the same C
    from metafast.learners.bayes.mixture import prior as _mixture

    tasks = mf.tasks.load("multimodal", n_tasks=60, n_support=8, n_query=2, seed=0)
    kw = dict(basis=_basis(6), n_components="auto", n_init=1, max_iter=3, tol=0, random_state=4)
    local = _quiet(mf.MetaBayes(**kw), tasks)

    def no_packed_tasks(*args):
        raise AssertionError("the Dask fit gathered packed tasks to the driver")

    monkeypatch.setattr(_mixture, "PackedTasks", no_packed_tasks)  # nothing runs on the driver's arrays
    remote = _quiet(mf.MetaBayes(backend="dask", **kw), [tasks[:25], tasks[25:26], tasks[26:]])
    a, b = local.mixture_.component_scores_, remote.mixture_.component_scores_
    np.testing.assert_array_equal(b["n_components"], a["n_components"])
    for key in ("heldout_log_evidence", "train_log_evidence", "bic"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-8)
    assert remote.mixture_.n_heldout_ == local.mixture_.n_heldout_
    assert remote.n_components_ == local.n_components_ and remote.n_tasks_seen_ == 60
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(
            getattr(remote, name), getattr(local, name), rtol=0, atol=1e-8 * np.abs(getattr(local, name)).max()
        )
    np.testing.assert_allclose(remote.noise_var_, local.noise_var_, rtol=1e-8)
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-10)


def test_mixture_auto_on_the_workers_clamps_the_split_and_refuses_too_few_tasks(client):
    # 5 tasks, C up to 3: the nominal ~20% cut may hold out 0 or > 2 tasks; the clamp (k smallest
    # hashes gathered from the chunks) gives the in-process split; 3 tasks cannot train C = 3
    from metafast.distributed import DaskChunks
    from metafast.learners.bayes.mixture._dask import ChunkTasks
    from metafast.learners.bayes.mixture.prior import MixturePrior, PackedTasks

    tasks = mf.tasks.load("multimodal", n_tasks=5, n_support=6, n_query=1, seed=1)
    basis = _basis(4)
    Phi = basis.design(tasks.X_support)
    chunks = DaskChunks([tasks[:2], tasks[2:]], "support", client=client)
    try:
        remote = ChunkTasks(chunks, basis)
        from metafast.learners.bayes.mixture._heldout import count_nominal

        assert {count_nominal(s, 0, 5) for s in range(11)} >= {0, 3}  # both clamps are exercised
        for seed in range(11):
            split, n_held = remote.split(seed, 3, "auto")
            ref = PackedTasks(Phi, tasks.y_support, tasks.support_offsets).split(seed, 3, "auto")
            assert (split, n_held) == ref and 1 <= n_held <= 2
            assert split.held(0, 5).sum() == n_held
        with pytest.raises(ValueError, match="needs at least 6 tasks"):
            remote.split(0, 5, "auto")
    finally:
        chunks.release()
    with pytest.raises(ValueError, match=r"n_components='auto' \(candidates C = 1..5\) needs at least 6 tasks.*got 5"):
        MixturePrior(n_components="auto", component_range=(1, 5)).fit(Phi, tasks.y_support, tasks.support_offsets)


class _CountingRBF(type(mf.basis.make("rbf"))):
    """An RBF basis that counts its design calls (picklable: module level)."""

    calls = 0

    def design(self, X):
        type(self).calls += 1
        return super().design(X)


def test_mixture_estep_on_a_worker_caches_the_rescaled_design_between_passes():
    from metafast.learners.bayes._blocks import worker_design_cache
    from metafast.learners.bayes.mixture._dask import _estep_chunk
    from metafast.learners.bayes.mixture._em import _Params
    from metafast.learners.bayes.mixture._heldout import Split

    chunk = mf.tasks.load("sinusoid", n_tasks=12, n_support=5, n_query=1, seed=2).all_rows()
    basis = _CountingRBF(n_basis=4).fit(chunk.X_support)
    p = _Params([0.5, 0.5], np.ones((2, 4)) * [[1], [-1]], np.repeat(np.eye(4)[None], 2, axis=0) / 4, 0.3)
    col = np.full(4, 0.7)

    def step(col_scale, part=None):
        return _estep_chunk(chunk, 30, basis, 1.3, col_scale, "full", 1.0, p, part, 1)

    _CountingRBF.calls = 0
    first = step(col)
    np.testing.assert_array_equal(step(col), first)  # second pass: from the cache
    assert _CountingRBF.calls == 1
    cache = worker_design_cache(chunk, basis, 1.3, col)
    assert 0 < cache.used <= cache.budget and cache.used >= chunk.X_support.shape[0] * 4 * 8
    step(col * 2)  # other scales: recomputed
    assert _CountingRBF.calls == 2
    part = (Split(5, 2**63), False)  # a part of the tasks: its own entry
    held_out = Split(5, 2**63).held(30, 12)
    sub = step(col * 2, part)
    assert _CountingRBF.calls == 3 and 0 < held_out.sum() < 12
    assert sub[:2].sum() == pytest.approx((~held_out).sum())  # responsibilities of the train part
    step(col * 2, part)
    assert _CountingRBF.calls == 3


def test_mixture_kmeans_start_does_not_depend_on_the_chunks_round_off(client):
    # found by hand: with these chunks of 17 tasks, the posterior means k-means starts from
    # differed from the in-process ones by 1e-15 (statistics summed in another order), and
    # Lloyd's iterations passed a near-tie into other clusters (log evidence -718.4 vs -713.5);
    # k-means now runs on the means rounded to a 2^-30 grid (_mixture._on_grid)
    from metafast.distributed import DaskChunks
    from metafast.learners.bayes.mixture._dask import fit_on_workers
    from metafast.learners.bayes.mixture.prior import MixturePrior, _on_grid

    basis = _basis(6)
    stream = mf.tasks.stream("multimodal", n_tasks=60, chunk_size=17, seed=2, n_support=6, n_query=2)
    chunks = [c.all_rows() for c in stream]
    whole = mf.tasks.TaskSet.concatenate(chunks)
    kw = dict(n_components=8, n_init=1, max_iter=3, tol=0, random_state=1, n_threads=1)
    local = MixturePrior(**kw).fit(basis.design(whole.X_support), whole.y_support, whole.support_offsets)
    dask_chunks = DaskChunks(chunks, "support", client=client)
    try:
        remote, _ = fit_on_workers(MixturePrior(**kw), dask_chunks, basis)
    finally:
        dask_chunks.release()
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-12)
    np.testing.assert_allclose(remote.means_, local.means_, rtol=0, atol=1e-9 * np.abs(local.means_).max())

    W = np.random.default_rng(0).normal(size=(50, 4)) * 3.0
    on = _on_grid(W)
    step = 2.0 ** (np.floor(np.log2(np.abs(W).max())) - 30)
    assert np.all(np.abs(on - W) <= step / 2) and np.all(np.round(on / step) == on / step)
    np.testing.assert_array_equal(_on_grid(W * (1 + 1e-15)), on)
    assert _on_grid(np.zeros((2, 3))).tolist() == [[0.0] * 3] * 2
