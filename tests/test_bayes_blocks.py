"""The blocked E-step: the same statistics as one call over the chunk, memory O(block)."""

import numpy as np
import pytest

import metafast as mf
from metafast.learners.bayes._blocks import DesignCache, block_bounds, chunk_design, chunk_stats
from metafast.learners.bayes._em import GaussianPrior, estep


def test_block_bounds_cover_every_task_once_within_the_row_limit():
    sizes = np.array([3, 1, 7, 2, 2, 9, 1, 1, 4])
    off = np.concatenate(([0], np.cumsum(sizes)))
    for max_rows in (1, 4, 8, 100):
        bounds = block_bounds(off, max_rows)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(sizes)
        assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
        for a, b in bounds:
            assert b > a and (b - a == 1 or off[b] - off[a] <= max_rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["full", "diag"])
def test_blocked_stats_equal_one_call_over_the_chunk(dtype, kind):
    tasks = mf.tasks.load("sinusoid", n_tasks=57, n_support=5, n_query=3, seed=1).all_rows().astype(dtype)
    basis = mf.basis.make("rbf", n_basis=7).fit(tasks.X_support)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(7, 7))
    prior = GaussianPrior(rng.normal(size=7), A @ A.T + np.eye(7), 0.3, kind)
    if kind == "diag":
        prior.cov = np.diag(np.diag(prior.cov))
    whole = estep(*chunk_design(basis, tasks, 1.7), prior, 1)[0]
    cache = DesignCache(budget=10**9)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for block_bytes in (1, 7 * 8 * 17, 10**9):  # one task a block, some tasks, the whole chunk
        for _ in range(2):  # second pass reads the cache
            blocked = chunk_stats(basis, tasks, 1.7, prior, 2, cache, key=block_bytes, block_bytes=block_bytes)
            assert blocked.n_tasks == 57 and blocked.n_points == whole.n_points
            np.testing.assert_allclose(blocked.log_evidence, whole.log_evidence, rtol=rtol)
            np.testing.assert_allclose(blocked.second_moment, whole.second_moment, rtol=rtol * 10, atol=1e-10)
            np.testing.assert_allclose(blocked.noise, whole.noise, rtol=rtol * 10)


def test_design_cache_keeps_within_its_budget():
    cache = DesignCache(budget=1000)
    cache.put("a", (np.zeros(100), np.zeros(10)))  # 880 bytes: kept
    cache.put("b", (np.zeros(100),))  # would exceed: not kept
    assert cache.get("a") is not None and cache.get("b") is None and cache.used == 880
    cache.clear()
    assert cache.get("a") is None and cache.used == 0


def test_wrong_feature_count_is_a_clear_error():
    tasks = mf.tasks.load("sinusoid", n_tasks=5, n_support=5, n_query=1, seed=1)
    basis = mf.basis.make("rbf", n_basis=4).fit(np.random.default_rng(0).normal(size=(9, 2)))
    prior = GaussianPrior(np.zeros(4), np.eye(4), 0.3)
    with pytest.raises(ValueError, match="1 features, but the model was fitted on 2"):
        chunk_stats(basis, tasks, 1.0, prior, 1)


def test_worker_design_cache_follows_the_chunk_basis_and_scale():
    from metafast.learners.bayes._blocks import worker_design_cache

    tasks = mf.tasks.load("sinusoid", n_tasks=6, n_support=5, n_query=1, seed=1)
    b1 = mf.basis.make("rbf", n_basis=4).fit(tasks.X_support)
    b2 = mf.basis.make("rbf", n_basis=5).fit(tasks.X_support)
    c = worker_design_cache(tasks, b1, 1.0)
    assert worker_design_cache(tasks, b1, 1.0) is c  # same chunk, basis, scale: reused
    assert worker_design_cache(tasks, b2, 1.0) is not c  # another basis: a fresh cache
    assert worker_design_cache(tasks, b2, 2.0) is not worker_design_cache(tasks[0:3], b2, 2.0)
