import itertools

import numpy as np
import pytest

import metafast as mf


@pytest.mark.parametrize("chunk_size", [1, 100, 256, 257, 1000])
def test_stream_yields_the_tasks_load_gives(chunk_size):
    full = mf.tasks.load("sinusoid", n_tasks=600, n_support=3, n_query=2, seed=9)
    s = mf.tasks.stream("sinusoid", n_tasks=600, chunk_size=chunk_size, seed=9, n_support=3, n_query=2)
    chunks = list(s)
    assert len(chunks) == len(s) == -(-600 // chunk_size)
    assert all(len(c) <= chunk_size for c in chunks)
    assert mf.tasks.concatenate(chunks).equals(full)
    assert mf.tasks.concatenate(list(s)).equals(full)  # re-iterable, same tasks again


def test_resample_keeps_tasks_and_draws_fresh_points_per_pass():
    s = mf.tasks.stream("harmonic", n_tasks=300, chunk_size=128, seed=3, resample=True, n_support=4, n_query=4)
    p0, p1 = mf.tasks.concatenate(list(s)), mf.tasks.concatenate(list(s))
    assert p0.info == p1.info  # same functions
    assert not np.array_equal(p0.X_support, p1.X_support)  # fresh points
    assert mf.tasks.concatenate(list(s.iter_pass(1))).equals(p1)  # pass 1 is reproducible
    assert p0.equals(mf.tasks.load("harmonic", n_tasks=300, n_support=4, n_query=4, seed=3))
    # the fresh points still follow the task's function
    np.testing.assert_allclose(mf.tasks.oracle(p1), p1.y_query, rtol=1e-12)


def test_resample_episodes_keeps_classes():
    s = mf.tasks.stream("digits", n_tasks=40, chunk_size=16, seed=2, resample=True, n_way=3, n_support=2)
    a, b = mf.tasks.concatenate(list(s)), mf.tasks.concatenate(list(s))
    assert a.info == b.info and not np.array_equal(a.X_support, b.X_support)


def test_unlimited_stream_and_chunk_access():
    s = mf.tasks.stream("sinusoid", n_tasks=None, chunk_size=50, seed=1)
    first = list(itertools.islice(s, 3))
    assert [len(c) for c in first] == [50, 50, 50]
    assert s.chunk(2).equals(first[2])
    with pytest.raises(TypeError, match="no length"):
        len(s)


def test_seed_none_is_fixed_at_creation():
    s = mf.tasks.stream("sinusoid", n_tasks=20, chunk_size=20, seed=None)
    assert isinstance(s.seed, int)
    assert next(iter(s)).equals(next(iter(s)))


def test_plain_plugin_loaders_stream_by_seeded_calls():
    def load_lines(n_tasks, n_support=3, n_query=3, seed=None):
        rng = np.random.default_rng(seed)
        return mf.tasks.TaskSet.from_list(
            [
                mf.tasks.Task(
                    rng.normal(size=(n_support, 1)),
                    rng.normal(size=n_support),
                    rng.normal(size=(n_query, 1)),
                    rng.normal(size=n_query),
                )
                for _ in range(n_tasks)
            ]
        )

    s = mf.tasks.stream(load_lines, n_tasks=25, chunk_size=10, seed=0)
    a, b = list(s), list(s)
    assert [len(c) for c in a] == [10, 10, 5] and all(x.equals(y) for x, y in zip(a, b))
    assert not a[0].equals(a[1])
    with pytest.raises(ValueError, match="resample"):
        mf.tasks.stream(load_lines, n_tasks=25, chunk_size=10, resample=True)


def test_stream_validates_up_front():
    with pytest.raises(ValueError, match="chunk_size"):
        mf.tasks.stream("sinusoid", chunk_size=0)
    with pytest.raises(ValueError, match="n_support"):
        mf.tasks.stream("sinusoid", n_support=0)
    with pytest.raises(KeyError, match="sinusoid"):
        mf.tasks.stream("sinusiod")
