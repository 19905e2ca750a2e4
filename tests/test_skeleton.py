import numpy as np
import pytest

import metafast as mf
from metafast.parallel import effective_n_threads


def test_version_and_registries():
    assert isinstance(mf.__version__, str)
    assert "rbf" in mf.basis.available()
    assert "sinusoid" in mf.tasks.available()


def test_unknown_names_suggest_close_matches():
    with pytest.raises(KeyError, match="rbf"):
        mf.basis.make("rbff")


def test_effective_n_threads():
    assert effective_n_threads(1) == 1
    assert effective_n_threads(-1) >= 1
    with pytest.raises(ValueError, match="n_jobs"):
        effective_n_threads(0)
    with pytest.raises(TypeError, match="n_jobs"):
        effective_n_threads("two")


def test_weighted_sum_tasks_matches_per_task_reference(rng):
    ts = mf.tasks.load("sinusoid", n_tasks=7, n_support=3, n_query=5, seed=1)
    B = mf.basis.make("rbf", n_basis=6).fit(ts.X_support)
    W = rng.normal(size=(7, 6))
    out = B.weighted_sum_tasks(ts.X_query, ts.query_offsets, W)
    ref = np.concatenate([B.design(ts[t].X_query) @ W[t] for t in range(7)])
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_generic_weighted_sum_tasks_rejects_non_finite_weights(rng):
    class Plain(mf.basis.BasisFamily):
        def __init__(self, n_basis=3):
            self.n_basis = n_basis

        def design(self, X):
            return np.repeat(X[:, :1], self.n_basis, axis=1)

    B = Plain().fit(np.zeros((2, 1)))
    W = np.ones((1, 3))
    W[0, 1] = np.nan
    with pytest.raises(ValueError, match="'W'.*NaN"):
        B.weighted_sum_tasks(np.ones((4, 1)), [0, 4], W)
    np.testing.assert_allclose(B.weighted_sum(np.arange(2500.0)[:, None], np.ones(3)), 3 * np.arange(2500.0))
