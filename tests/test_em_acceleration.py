"""MetaBayes's accelerated EM: SQUAREM and over-relaxation stay monotone and reach plain EM's optimum."""

import warnings

import numpy as np
import pytest
from test_metabayes import basis, hierarchy, quiet_fit

from metafast.learners import MetaBayes
from metafast.learners.bayes._accel import STEP_GROWTH, next_step_max, squarem_step
from metafast.learners.bayes._em import GaussianPrior


def _geometric_iterates(kind, c=0.7):
    """Three iterates theta_k = theta* + c^k d of a linearly converging map (noise in log space)."""
    rng = np.random.default_rng(3)
    m = 3
    A = rng.normal(size=(m, m))
    star = GaussianPrior(rng.normal(size=m), A @ A.T + 3 * np.eye(m), 0.3, kind)
    if kind != "full":
        star.cov = np.diag(np.diag(star.cov)) if kind == "diag" else np.eye(m) * 2.0
    d_mean, d_cov = rng.normal(size=m), 0.2 * np.eye(m) + (0.05 * (A + A.T) if kind == "full" else 0)
    d_log_noise = 0.8

    def at(k):
        f = c**k
        return GaussianPrior(
            star.mean + f * d_mean, star.cov + f * d_cov, float(np.exp(np.log(star.noise_var) + f * d_log_noise)), kind
        )

    return star, at(0), at(1), at(2)


@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
def test_squarem_solves_a_linearly_converging_map_in_one_step(kind):
    star, t0, t1, t2 = _geometric_iterates(kind)
    cand, a = squarem_step(t0, t1, t2, step_max=100.0, noise_floor=1e-12)
    np.testing.assert_allclose(a, 1 / (1 - 0.7), rtol=1e-10)
    np.testing.assert_allclose(cand.mean, star.mean, atol=1e-10)
    np.testing.assert_allclose(cand.cov, star.cov, atol=1e-10)
    np.testing.assert_allclose(cand.noise_var, star.noise_var, rtol=1e-10)


def test_squarem_step_respects_the_cap_and_positive_definiteness():
    _, t0, t1, t2 = _geometric_iterates("full")
    cand, a = squarem_step(t0, t1, t2, step_max=1.0, noise_floor=1e-12)
    assert cand is t2 and a == 1.0  # a = 1 is the plain EM pair
    # iterates whose parabola leaves the positive-definite cone: a is shortened until Sigma is PD
    m = 2
    p = [GaussianPrior(np.zeros(m), np.diag([1.0, 1.0]) * s, 0.5, "full") for s in (1.0, 0.5, 0.3)]
    cand, a = squarem_step(*p, step_max=1e6, noise_floor=1e-12)
    assert 1.0 <= a < 1e6
    assert np.all(np.linalg.eigvalsh(cand.cov) > 0)
    assert next_step_max(4.0, 4.0, True) == 4.0 * STEP_GROWTH
    assert next_step_max(4.0, 2.0, True) == 4.0
    assert next_step_max(16.0, 3.0, False) == 16.0 / STEP_GROWTH
    assert next_step_max(1.0, 1.0, False) == 1.0


@pytest.mark.parametrize("acceleration", ["squarem", "overrelax"])
@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
@pytest.mark.parametrize("prior_weight", [0.0, 2.0])
def test_accelerated_em_is_monotone_and_reaches_plain_em_optimum(acceleration, kind, prior_weight):
    rng = np.random.default_rng(7)
    m = 4
    A = rng.normal(size=(m, m))
    tasks = hierarchy(rng, 60, m, [1, 2, 3, 6], rng.normal(size=m), A @ A.T, 0.05)
    plain = quiet_fit(
        MetaBayes(
            basis=basis(m), covariance=kind, prior_weight=prior_weight, max_iter=3000, tol=1e-10, acceleration="none"
        ),
        tasks,
    )
    fast = quiet_fit(
        MetaBayes(
            basis=basis(m),
            covariance=kind,
            prior_weight=prior_weight,
            max_iter=3000,
            tol=1e-10,
            acceleration=acceleration,
        ),
        tasks,
    )
    assert plain.converged_ and fast.converged_
    obj = fast.objective_
    assert np.all(np.diff(obj) >= -1e-12 * np.abs(obj).max())
    assert len(obj) == fast.n_iter_ + 1 and fast.n_passes_ >= fast.n_iter_ + 1
    np.testing.assert_allclose(fast.objective_[-1], plain.objective_[-1], rtol=1e-7)
    np.testing.assert_allclose(fast.covariance_, plain.covariance_, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(fast.noise_var_, plain.noise_var_, rtol=2e-3)
    assert fast.n_passes_ < plain.n_passes_


def test_squarem_is_the_default_and_needs_fewer_passes_where_em_crawls():
    rng = np.random.default_rng(1)
    m = 6
    tasks = hierarchy(rng, 40, m, [2, 3], np.zeros(m), np.eye(m), 1e-4)  # weak data: EM crawls
    assert MetaBayes().acceleration == "squarem"
    plain = quiet_fit(MetaBayes(basis=basis(m), max_iter=400, tol=1e-6, acceleration="none"), tasks)
    fast = quiet_fit(MetaBayes(basis=basis(m), max_iter=400, tol=1e-6), tasks)
    assert fast.objective_[-1] >= plain.objective_[-1] - 1e-6 * len(tasks)
    assert 2 * fast.n_passes_ <= plain.n_passes_


def test_noise_free_tasks_converge_at_the_relative_noise_floor():
    rng = np.random.default_rng(0)
    m = 4
    tasks = hierarchy(rng, 100, m, [3, 6], np.ones(m), np.eye(m), 0.0)
    model = MetaBayes(basis=basis(m), max_iter=200).fit(tasks)  # no ConvergenceWarning
    y_var = np.mean(np.concatenate([tasks.y_support, tasks.y_query]) ** 2)
    assert model.converged_ and model.noise_var_ <= 1e-9 * y_var


def test_bad_acceleration_and_deprecated_overrelax():
    tasks = hierarchy(np.random.default_rng(0), 10, 3, [3], np.zeros(3), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="'acceleration'"):
        MetaBayes(basis=basis(3), acceleration="anderson").fit(tasks)
    with pytest.raises(ValueError, match="'overrelax'"):
        MetaBayes(basis=basis(3), overrelax="yes").fit(tasks)
    with pytest.warns(FutureWarning, match="overrelax"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            old = MetaBayes(basis=basis(3), overrelax=False, max_iter=5, tol=0).fit(tasks)
    assert old.n_passes_ == old.n_iter_ + 1  # plain EM: one pass per iteration
