"""The closed-form E-step for m <= 2 (learners/bayes/_small.py) against the Cython kernel."""

import numpy as np
import pytest

from metafast.learners.bayes._em import GaussianPrior, estep
from metafast.learners.bayes._small import SMALL_M


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
@pytest.mark.parametrize("mapped", [False, True])
def test_closed_form_estep_matches_the_kernel(m, dtype, kind, mapped):
    assert m <= SMALL_M
    rng = np.random.default_rng(m)
    sizes = rng.integers(0, 7, size=53)  # odd count, unequal sizes, some empty tasks
    sizes[-1] = 3
    off = np.concatenate(([0], np.cumsum(sizes)))
    big = rng.normal(size=(off[-1], 2 * m)).astype(dtype)
    Phi = big[:, ::2]  # strided view: estep makes it contiguous
    y = rng.normal(size=off[-1]).astype(dtype)
    B = rng.normal(size=(m, m))
    cov = {"full": B @ B.T + 0.1 * np.eye(m), "diag": np.diag(rng.uniform(0.5, 2, m)), "iso": 1.3 * np.eye(m)}[kind]
    A = rng.normal(size=(m, m)) + 2 * np.eye(m) if mapped and kind == "full" else None
    prior = GaussianPrior(rng.normal(size=m), cov, 0.37, kind, A)
    fast, none = estep(Phi, y, off, prior, 1, with_means=False)  # closed form
    ref, _ = estep(Phi, y, off, prior, 1, with_means=True)  # the kernel
    assert none is None
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert fast.n_tasks == ref.n_tasks and fast.n_points == ref.n_points
    assert fast.log_evidence == pytest.approx(ref.log_evidence, rel=rtol)
    assert fast.noise == pytest.approx(ref.noise, rel=rtol)
    np.testing.assert_allclose(fast.sum_mean, ref.sum_mean, rtol=rtol, atol=rtol * np.abs(ref.sum_mean).max())
    np.testing.assert_allclose(
        fast.second_moment, ref.second_moment, rtol=rtol, atol=rtol * np.abs(ref.second_moment).max()
    )


def test_closed_form_log_evidence_is_the_gaussian_density():
    """Brute force: sum_t log N(y_t; Phi_t mu, Phi_t Sigma Phi_t^T + s2 I)."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    off = np.array([0, 3, 3, 7, 8])
    Phi, y = rng.normal(size=(8, 2)), rng.normal(size=8)
    prior = GaussianPrior(np.array([0.3, -1.0]), np.array([[1.0, 0.4], [0.4, 0.8]]), 0.2)
    stats, _ = estep(Phi, y, off, prior, 1, with_means=False)
    want = sum(
        multivariate_normal(Phi[a:b] @ prior.mean, Phi[a:b] @ prior.cov @ Phi[a:b].T + 0.2 * np.eye(b - a)).logpdf(
            y[a:b]
        )
        for a, b in zip(off[:-1], off[1:])
        if b > a
    )
    assert stats.log_evidence == pytest.approx(want, rel=1e-12)
