"""The _bayes kernels against plain numpy / scipy references, and the equations they implement."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from metafast._kernels import _bayes
from metafast.learners.bayes._em import GaussianPrior, estep, log_prior, mstep

RTOL = {np.float32: 2e-3, np.float64: 1e-9}


def packed_problem(rng, sizes, m, scale=1.0):
    off = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    Phi = rng.normal(size=(off[-1], m)) * scale
    y = rng.normal(size=off[-1])
    M = rng.normal(size=(m, m))
    Sigma = M @ M.T / m + 0.5 * np.eye(m)
    mu = rng.normal(size=m)
    return Phi, y, off, mu, Sigma


def numpy_task_posterior(P, yt, mu, Sigma, s2):
    """Posterior by building the joint Gaussian of (w, y) and conditioning (no model algebra)."""
    n, m = P.shape
    joint_mean = np.r_[mu, P @ mu]
    joint_cov = np.block([[Sigma, Sigma @ P.T], [P @ Sigma, P @ Sigma @ P.T + s2 * np.eye(n)]])
    Sww, Swy, Syy = joint_cov[:m, :m], joint_cov[:m, m:], joint_cov[m:, m:]
    mean = joint_mean[:m] + Swy @ np.linalg.solve(Syy, yt - joint_mean[m:])
    cov = Sww - Swy @ np.linalg.solve(Syy, Swy.T)
    return mean, cov


def numpy_estep(Phi, y, off, mu, Sigma, s2):
    T, m = len(off) - 1, Phi.shape[1]
    ll, sm, SM, noise, means, logps = 0.0, np.zeros(m), np.zeros((m, m)), 0.0, [], []
    for t in range(T):
        P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
        mt, St = numpy_task_posterior(P, yt, mu, Sigma, s2)
        lp = multivariate_normal(P @ mu, P @ Sigma @ P.T + s2 * np.eye(len(yt))).logpdf(yt) if len(yt) else 0.0
        ll += lp
        logps.append(lp)
        means.append(mt)
        sm += mt
        SM += St + np.outer(mt, mt)
        noise += np.sum((yt - P @ mt) ** 2) + np.trace(P @ St @ P.T)
    return ll, sm, SM, noise, np.array(means), np.array(logps)


# tasks of different sizes: n = 1, n = 0, n < m, n = m, n > m (m = 7), odd sizes
SIZES = [1, 3, 0, 7, 5, 12, 2, 9]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
def test_estep_matches_numpy(dtype, kind, rng):
    Phi, y, off, mu, Sigma = packed_problem(rng, SIZES, 7)
    if kind == "diag":
        Sigma = np.diag(np.diag(Sigma))
    elif kind == "iso":
        Sigma = 0.7 * np.eye(7)
    s2 = 0.3
    stats, means = estep(Phi.astype(dtype), y.astype(dtype), off, GaussianPrior(mu, Sigma, s2, kind), 2, True)
    ll, sm, SM, noise, ref_means, ref_logp = numpy_estep(Phi, y, off, mu, Sigma, s2)
    if kind != "full":
        SM = np.diag(np.diag(SM))
    tol = RTOL[dtype]
    np.testing.assert_allclose(stats.log_evidence, ll, rtol=tol)
    np.testing.assert_allclose(stats.task_log_evidence[0], ref_logp, rtol=tol, atol=tol)
    np.testing.assert_allclose(means, ref_means, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(stats.sum_mean, sm, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(stats.second_moment, SM, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(stats.noise, noise, rtol=tol * 10)
    assert stats.n_tasks == len(SIZES) and stats.n_points == sum(SIZES)
    sums_only, no_means = estep(
        Phi.astype(dtype), y.astype(dtype), off, GaussianPrior(mu, Sigma, s2, kind), 2, with_means=False
    )
    assert no_means is None
    np.testing.assert_array_equal(sums_only.second_moment, stats.second_moment)
    assert sums_only.log_evidence == stats.log_evidence and sums_only.noise == stats.noise


def test_estep_bits_do_not_depend_on_the_thread_count(rng):
    """Big enough that the E-step kernel runs its blocks of tasks on several threads."""
    from metafast.parallel import one_blas_thread

    m, sizes = 40, [10] * 300 + [3, 0, 45]
    Phi, y, off, mu, Sigma = packed_problem(rng, sizes, m)
    with one_blas_thread():
        runs = [estep(Phi, y, off, GaussianPrior(mu, Sigma, 0.3, "full"), k, True) for k in (1, 2, 3)]
    for stats, means in runs[1:]:
        assert np.array_equal(stats.second_moment, runs[0][0].second_moment)
        assert np.array_equal(stats.task_log_evidence[0], runs[0][0].task_log_evidence[0])
        assert np.array_equal(means, runs[0][1]) and stats.noise == runs[0][0].noise


def test_estep_accepts_fortran_and_strided_inputs(rng):
    Phi, y, off, mu, Sigma = packed_problem(rng, [3, 4, 8], 5)
    prior = GaussianPrior(mu, Sigma, 0.2, "full")
    ll = numpy_estep(Phi, y, off, mu, Sigma, 0.2)[0]
    big = np.zeros((Phi.shape[0], 10))
    big[:, ::2] = Phi
    ybig = np.repeat(y, 2)
    for P, yy in [(np.asfortranarray(Phi), y), (big[:, ::2], ybig[::2])]:
        stats, _ = estep(P, yy, off, prior, 1)
        np.testing.assert_allclose(stats.log_evidence, ll, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictive_matches_numpy(dtype, rng):
    m = 6
    Phi, y, off, mu, Sigma = packed_problem(rng, [1, 0, 4, 6, 9, 3], m)
    q_sizes = [2, 3, 0, 1, 5, 4]
    q_off = np.r_[0, np.cumsum(q_sizes)].astype(np.int64)
    Phi_q = rng.normal(size=(q_off[-1], m))
    s2 = 0.15
    prior = GaussianPrior(mu, Sigma, s2, "full")
    mu_, Sig_, Sinv, h, _, _, diag = prior.kernel_args(dtype)
    T = len(q_sizes)
    means = np.empty((T, m), dtype)
    pm, pv = np.empty(q_off[-1], dtype), np.empty(q_off[-1], dtype)
    status = np.empty(T, np.intc)
    _bayes.predict_tasks(
        Phi.astype(dtype),
        y.astype(dtype),
        off,
        Phi_q.astype(dtype),
        q_off,
        mu_,
        Sig_,
        Sinv,
        h,
        s2,
        diag,
        2,
        means,
        pm,
        pv,
        status,
    )
    for t in range(T):
        P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
        mt, St = numpy_task_posterior(P, yt, mu, Sigma, s2)
        Q = Phi_q[q_off[t] : q_off[t + 1]]
        np.testing.assert_allclose(means[t], mt, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)
        np.testing.assert_allclose(pm[q_off[t] : q_off[t + 1]], Q @ mt, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)
        np.testing.assert_allclose(
            pv[q_off[t] : q_off[t + 1]],
            np.einsum("ij,jk,ik->i", Q, St, Q) + s2,
            rtol=RTOL[dtype] * 10,
            atol=RTOL[dtype] * 10,
        )
    assert (status == 0).all()


@pytest.mark.parametrize("sizes", [[2, 5, 1], [9, 12, 8]])  # dual (n < m) and primal (n >= m) tasks
def test_grad_design_matches_finite_differences(sizes, rng):
    m = 8
    Phi, y, off, mu, Sigma = packed_problem(rng, sizes, m)
    s2 = 0.4
    prior = GaussianPrior(mu, Sigma, s2, "full")
    args = prior.kernel_args(np.float64)
    T = len(sizes)

    def total_logp(P):
        return sum(
            multivariate_normal(
                P[off[t] : off[t + 1]] @ mu,
                P[off[t] : off[t + 1]] @ Sigma @ P[off[t] : off[t + 1]].T + s2 * np.eye(sizes[t]),
            ).logpdf(y[off[t] : off[t + 1]])
            for t in range(T)
        )

    G = np.zeros_like(Phi)
    logp = np.empty(T)
    status = np.empty(T, np.intc)
    mu_, Sig_, Sinv, h, logdet, _, diag = args
    _bayes.grad_design(Phi, y, off, mu_, Sig_, Sinv, h, logdet, s2, diag, 1, G, logp, status)
    np.testing.assert_allclose(logp.sum(), total_logp(Phi), rtol=1e-10)
    eps = 1e-6
    for i, j in [(0, 0), (1, 3), (off[1], 7), (off[-1] - 1, 2), (off[2], 5)]:
        Pp, Pm = Phi.copy(), Phi.copy()
        Pp[i, j] += eps
        Pm[i, j] -= eps
        fd = (total_logp(Pp) - total_logp(Pm)) / (2 * eps)
        np.testing.assert_allclose(G[i, j], fd, rtol=1e-5, atol=1e-6)


def test_grad_design_float32_close_to_float64(rng):
    Phi, y, off, mu, Sigma = packed_problem(rng, [3, 10, 1], 6)
    prior = GaussianPrior(mu, Sigma, 0.5, "full")
    out = {}
    for dt in (np.float32, np.float64):
        mu_, Sig_, Sinv, h, logdet, s2, diag = prior.kernel_args(dt)
        G = np.zeros(Phi.shape, dt)
        logp = np.empty(3)
        _bayes.grad_design(
            Phi.astype(dt), y.astype(dt), off, mu_, Sig_, Sinv, h, logdet, s2, diag, 1, G, logp, np.empty(3, np.intc)
        )
        out[dt] = G
    np.testing.assert_allclose(out[np.float32], out[np.float64], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
def test_mstep_is_the_maximiser_of_the_expected_complete_log_likelihood(kind, rng):
    """Perturbing the M-step's (mu, Sigma, s2) never increases Q(theta) + log p(Sigma)."""
    m = 4
    Phi, y, off, mu, Sigma = packed_problem(rng, [3, 6, 2, 5], m)
    prior = GaussianPrior(mu, Sigma if kind == "full" else np.diag(np.diag(Sigma)), 0.3, kind)
    stats, _ = estep(Phi, y, off, prior, 1)
    nu, psi = 1.5, 0.8
    new = mstep(stats, prior, nu, psi, 1e-12)

    # expected complete-data log likelihood from the per-task posteriors (numpy)
    posts = [
        numpy_task_posterior(Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]], prior.mean, prior.cov, 0.3)
        for t in range(4)
    ]

    def Q(mu_, cov_, s2_):
        inv = np.linalg.inv(cov_)
        val = 0.0
        for t, (mt, St) in enumerate(posts):
            P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
            d = mt - mu_
            val += -0.5 * (np.linalg.slogdet(cov_)[1] + np.trace(inv @ (St + np.outer(d, d))))
            val += -0.5 * (len(yt) * np.log(s2_) + (np.sum((yt - P @ mt) ** 2) + np.trace(P @ St @ P.T)) / s2_)
        return val + log_prior(GaussianPrior(mu_, cov_, s2_, kind), nu, psi)

    best = Q(new.mean, new.cov, new.noise_var)
    for _ in range(20):
        dm = 0.01 * rng.normal(size=m)
        if kind == "full":
            E = 0.01 * rng.normal(size=(m, m))
            dc = E + E.T
        elif kind == "diag":
            dc = np.diag(0.01 * rng.normal(size=m))
        else:
            dc = 0.01 * rng.normal() * np.eye(m)
        assert Q(new.mean + dm, new.cov + dc, new.noise_var * np.exp(0.01 * rng.normal())) <= best + 1e-10
