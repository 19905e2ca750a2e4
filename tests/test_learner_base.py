"""Shared evaluation maths of the meta-learners, against a per-task brute-force loop."""

import numpy as np
import pytest
from scipy.stats import norm

from metafast.learners._base import per_task_mean, query_metrics


def test_per_task_mean_handles_empty_tasks():
    offsets = np.array([0, 2, 2, 5])
    values = np.array([1.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(per_task_mean(values, offsets), [2.0, 0.0, 5.0])


def test_query_metrics_match_loop(rng):
    sizes = [3, 1, 0, 7, 4]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    y = rng.normal(size=offsets[-1])
    mean = y + rng.normal(scale=0.5, size=y.shape)
    std = rng.uniform(0.2, 1.0, size=y.shape)
    got = query_metrics(y, mean, std, offsets)
    mses, nlls, covs = [], [], []
    for t in range(len(sizes)):
        s = slice(offsets[t], offsets[t + 1])
        if sizes[t] == 0:
            continue
        r = y[s] - mean[s]
        mses.append(np.mean(r**2))
        nlls.append(np.mean(-norm.logpdf(y[s], loc=mean[s], scale=std[s])))
        lo, hi = norm.interval(0.9, loc=mean[s], scale=std[s])
        covs.append(np.mean((y[s] >= lo) & (y[s] <= hi)))
    assert got["n_tasks"] == 4
    assert got["mse"] == pytest.approx(np.mean(mses))
    assert got["mse_ci95"] == pytest.approx(1.96 * np.std(mses, ddof=1) / 2)
    assert got["nll"] == pytest.approx(np.mean(nlls))
    assert got["coverage90"] == pytest.approx(np.mean(covs))


def test_query_metrics_without_std_has_no_bayesian_keys(rng):
    y = rng.normal(size=6)
    got = query_metrics(y, y, None, np.array([0, 3, 6]))
    assert got["mse"] == 0.0 and "nll" not in got


def test_query_metrics_needs_a_query_point():
    with pytest.raises(ValueError, match="query"):
        query_metrics(np.zeros(0), np.zeros(0), None, np.array([0, 0]))
