"""The in-process chunk source (``learners._chunks.LocalChunks``) and its Dask twin: the same
interface, and every learner asks both to map the same per-chunk functions."""

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd
from metafast.learners._chunks import LocalChunks


def _tasks(n, seed=0):
    return mf.tasks.load("sinusoid", n_tasks=n, n_support=4, n_query=3, seed=seed)


def _size(chunk, *args):
    """A per-chunk function: its tasks, and what it was given after the chunk."""
    return np.array([len(chunk), len(args)], dtype=float)


def test_every_kind_of_tasks_is_passed_over_chunk_by_chunk_in_order():
    a, b, c = _tasks(5), _tasks(3, 1), _tasks(4, 2)
    stream = mf.tasks.stream("sinusoid", n_tasks=12, chunk_size=5, n_support=4, n_query=3, seed=0)
    for tasks, sizes in [(a, [5]), ([a, b, c], [5, 3, 4]), ((a, c), [5, 4]), (stream, [5, 5, 2])]:
        src = LocalChunks(tasks, n_threads=3)
        assert [int(v[0]) for v in src.map_list(_size)] == sizes
        assert src.map_list(lambda ch, n: n) == [3] * len(sizes)  # n_threads comes last
        np.testing.assert_array_equal(src.map_sum(_size, "x"), [sum(sizes), 2 * len(sizes)])
        assert len(src.first()) == sizes[0] and src.labels == [str(i) for i in range(len(sizes))]
    assert LocalChunks([a, b]).map_list(lambda ch, e, n: e, each=["p", "q"]) == ["p", "q"]
    with pytest.raises(ValueError, match="'each' has 1 values"):
        LocalChunks([a, b]).map_sum(lambda ch, e, n: 1.0, each=["p"])


def test_what_is_not_tasks_is_a_clear_error():
    with pytest.raises(TypeError, match="argument 'tasks' must be a TaskSet"):
        LocalChunks(3.0)
    with pytest.raises(TypeError, match="chunk 1 is a str"):
        LocalChunks([_tasks(3), "x"]).map_sum(_size)
    with pytest.raises(ValueError, match="holds no tasks"):
        LocalChunks([]).first()


def test_a_one_shot_iterator_is_read_once_with_its_first_chunk_kept():
    a, b = _tasks(5), _tasks(3, 1)
    src = LocalChunks(iter([a, b]), one_shot_error="only once, please")
    assert src.first() is a
    assert src.map_list(lambda ch, n: len(ch)) == [5, 3]
    with pytest.raises(ValueError, match="only once, please"):
        src.map_sum(_size)


def test_release_reaches_every_held_chunk():
    a, b = _tasks(5), _tasks(3, 1)
    seen = []
    LocalChunks([a, b], on_release=seen.append).release()
    assert seen == [a, b]
    LocalChunks(a).release()  # nothing to drop: no error


class _Recorder:
    """Replaces a source's map_sum / map_list and records which per-chunk function it was asked
    to map (then maps it as the real method does)."""

    def __init__(self, monkeypatch, cls, log):
        for name in ("map_sum", "map_list"):
            real = getattr(cls, name)

            def recording(self, fn, *args, _real=real, _name=name, **kw):
                log.append((_name, fn.__module__, fn.__name__))
                return _real(self, fn, *args, **kw)

            monkeypatch.setattr(cls, name, recording)


def _learners():
    basis = mf.basis.make("rbf", n_basis=6, length_scale=1.5).fit(np.linspace(-5, 5, 40)[:, None])
    return {
        "MetaBayes": lambda **kw: mf.MetaBayes(basis=basis, max_iter=3, tol=0, **kw),
        "MetaBayes learn_basis": lambda **kw: mf.MetaBayes(
            basis=basis, max_iter=2, tol=0, learn_basis=True, basis_rounds=1, basis_max_iter=2, **kw
        ),
        "MetaRidge": lambda **kw: mf.MetaRidge(basis=basis, metric="diag", max_iter=2, **kw),
        "MetaRidge held out": lambda **kw: mf.MetaRidge(basis=basis, mean="split", cv="query", alphas=[0.1, 1.0], **kw),
    }


@pytest.mark.parametrize(
    "name", ["MetaBayes", "MetaBayes learn_basis", "MetaRidge", "MetaRidge held out", "MetaClassifier"]
)
def test_in_process_and_dask_map_the_same_per_chunk_functions(name, client, monkeypatch):
    if name == "MetaClassifier":
        tasks = mf.tasks.load("logistic", n_tasks=30, n_support=6, n_query=4, seed=0, n_features=2)
        basis = mf.basis.make("rbf", n_basis=5, length_scale=1.0).fit(np.random.default_rng(0).normal(size=(50, 2)))
        make = lambda **kw: mf.MetaClassifier(basis=basis, head="ridge", **kw)  # noqa: E731
    else:
        tasks, make = _tasks(40), _learners()[name]
    local_log, dask_log = [], []
    _Recorder(monkeypatch, LocalChunks, local_log)
    _Recorder(monkeypatch, mfd.DaskChunks, dask_log)
    local = make().fit(tasks)
    on_workers = make(backend="dask").fit(tasks)
    assert local_log and dask_log == local_log  # the same functions, in the same order
    assert all(module.startswith("metafast.learners") for _, module, _ in local_log)
    X = np.linspace(-3, 3, 7)[:, None] if name != "MetaClassifier" else tasks[0].X_query
    ys = [m.adapt(tasks[0].X_support, tasks[0].y_support).predict(X) for m in (local, on_workers)]
    np.testing.assert_allclose(ys[0], ys[1], rtol=1e-9, atol=1e-12)
