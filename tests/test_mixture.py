"""Mixture-of-Gaussians weight prior: kernels and EM against brute-force numpy references."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import NotFittedError

from metafast._kernels import _mixture as K
from metafast.basis._base import BasisFamily
from metafast.learners.bayes.mixture._em import _EM, _Params
from metafast.learners.bayes.mixture.prior import MixturePrior, MixtureTaskRegressor
from metafast.parallel import one_blas_thread

TOL = {np.float32: 2e-3, np.float64: 1e-9}


# ------------------------------------------------------------------------------------ helpers
def packed_problem(rng, sizes, m, C):
    sizes = np.asarray(sizes)
    off = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    Phi = rng.normal(size=(off[-1], m))
    y = rng.normal(size=off[-1])
    mu = rng.normal(size=(C, m))
    M = rng.normal(size=(C, m, m))
    Sig = M @ M.transpose(0, 2, 1) / m + 0.5 * np.eye(m)
    w = rng.uniform(0.2, 1.0, C)
    return Phi, y, off, mu, Sig, w / w.sum(), 0.3


def brute_task(P, yt, mu, Sig, s2):
    """log N(y; P mu, P Sig P^T + s2 I), posterior mean and covariance (primal form)."""
    n = len(yt)
    ll = multivariate_normal(P @ mu, P @ Sig @ P.T + s2 * np.eye(n)).logpdf(yt) if n else 0.0
    A = np.linalg.inv(np.linalg.inv(Sig) + P.T @ P / s2)
    mean = A @ (np.linalg.solve(Sig, mu) + P.T @ yt / s2)
    return ll, mean, A


def brute_estep(Phi, y, off, mu, Sig, w, s2):
    T, C = len(off) - 1, len(w)
    ll, post_m = np.zeros((T, C)), np.zeros((T, C, mu.shape[1]))
    post_S = np.zeros((T, C) + Sig.shape[1:])
    for t in range(T):
        P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
        for c in range(C):
            ll[t, c], post_m[t, c], post_S[t, c] = brute_task(P, yt, mu[c], Sig[c], s2)
    lev = logsumexp(ll + np.log(w), axis=1)
    return ll, np.exp(ll + np.log(w) - lev[:, None]), lev, post_m, post_S


def brute_mstep(Phi, y, off, R, post_m, post_S):
    """Closed-form M-step from responsibilities and per-component posteriors."""
    T, C, m = post_m.shape
    Nc = R.sum(0)
    mu = np.einsum("tc,tcm->cm", R, post_m) / Nc[:, None]
    Sig = np.zeros((C, m, m))
    noise = 0.0
    for c in range(C):
        d = post_m[:, c] - mu[c]
        Sig[c] = (np.einsum("t,tij->ij", R[:, c], post_S[:, c]) + np.einsum("t,ti,tj->ij", R[:, c], d, d)) / Nc[c]
    for t in range(T):
        P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
        for c in range(C):
            noise += R[t, c] * (np.sum((yt - P @ post_m[t, c]) ** 2) + np.trace(P @ post_S[t, c] @ P.T))
    return Nc / T, mu, Sig, noise / off[-1]


def run_em_step(Phi, y, off, mu, Sig, w, s2, blocks, chunk_rows=7, n_threads=1, dtype=np.float64):
    T, C, m = len(off) - 1, len(w), Phi.shape[1]
    B = len(blocks) - 1
    f = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    out = dict(
        ll=np.zeros((T, C), dtype),
        r=np.zeros((T, C), dtype),
        lev=np.zeros(T, dtype),
        nj=np.zeros(T, np.int32),
        sr=np.zeros((B, C), dtype),
        su=np.zeros((B, C, m), dtype),
        sG=np.zeros((B, C, m, m), dtype),
        sn=np.zeros(B, dtype),
    )
    with one_blas_thread():  # as the learners call it: BLAS threads inside prange crawl
        K.em_step(
            f(Phi),
            f(y),
            off,
            f(np.linalg.cholesky(Sig)),
            f(mu),
            f(np.log(w)),
            s2,
            np.asarray(blocks, np.int64),
            out["ll"],
            out["r"],
            out["lev"],
            out["nj"],
            out["sr"],
            out["su"],
            out["sG"],
            out["sn"],
            0.0,
            True,
            chunk_rows,
            n_threads,
        )
    return out


def two_kind_tasks(rng, T=300, n=8, m=5, noise=0.1):
    """Tasks whose weights come from one of two well separated Gaussians."""
    mus = np.array([[2.0, 0, 0, 1, 0], [-2.0, 1, 0, 0, -1]])[:, :m]
    z = rng.integers(0, 2, T)
    W = mus[z] + 0.3 * rng.normal(size=(T, m))
    Phi = rng.normal(size=(T * n, m))
    y = np.einsum("tnm,tm->tn", Phi.reshape(T, n, m), W).ravel() + noise * rng.normal(size=T * n)
    return Phi, y, np.arange(T + 1, dtype=np.int64) * n, z, mus


class PolyBasis(BasisFamily):
    """Small numpy test basis: 1, x, x^2, ..."""

    def __init__(self, n_basis=4):
        self.n_basis = n_basis

    def fit(self, X, y=None):
        return self

    def design(self, X):
        return X[:, :1] ** np.arange(self.n_basis)[None, :]


# ------------------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes, m, C", [([3, 0, 1, 6, 2], 4, 3), ([1], 3, 1), ([5, 7, 9], 11, 2)])
def test_em_step_matches_brute_force(dtype, sizes, m, C, rng):
    Phi, y, off, mu, Sig, w, s2 = packed_problem(rng, sizes, m, C)
    T = len(sizes)
    out = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, T // 2, T] if T > 1 else [0, 1], dtype=dtype)
    ll, R, lev, pm, pS = brute_estep(Phi, y, off, mu, Sig, w, s2)
    tol = TOL[dtype]
    np.testing.assert_allclose(out["ll"], ll, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["r"], R, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["lev"], lev, rtol=tol, atol=tol)
    # statistics -> M-step, compared with the brute-force M-step from the posteriors
    em = _EM(Phi, y, off, "full", 1)
    stats = {
        "sum_r": out["sr"].astype(float),
        "sum_u": out["su"].astype(float),
        "sum_G": out["sG"].astype(float),
        "sum_noise": out["sn"].astype(float),
    }
    p, dropped = em.mstep(_Params(w, mu, Sig, s2), stats)
    if dropped:  # tiny problems can leave a component with < half a task
        return
    w2, mu2, Sig2, s22 = brute_mstep(Phi, y, off, R, pm, pS)
    tol = 50 * TOL[dtype]
    np.testing.assert_allclose(p.weights, w2, rtol=tol, atol=tol)
    np.testing.assert_allclose(p.means, mu2, rtol=tol, atol=tol)
    np.testing.assert_allclose(p.covs, Sig2, rtol=tol, atol=tol * np.abs(Sig2).max())
    np.testing.assert_allclose(p.noise_var, s22, rtol=tol)


def test_em_step_same_for_any_threads_blocks_and_chunks(rng):
    Phi, y, off, mu, Sig, w, s2 = packed_problem(rng, rng.integers(0, 9, 41), 6, 3)
    a = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, 10, 20, 30, 41], chunk_rows=5, n_threads=1)
    b = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, 10, 20, 30, 41], chunk_rows=5, n_threads=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for _ in range(3):  # races show up as run-to-run differences
        again = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, 10, 20, 30, 41], chunk_rows=5, n_threads=2)
        for k in a:
            np.testing.assert_array_equal(a[k], again[k])
    c = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, 41], chunk_rows=1000)
    np.testing.assert_allclose(c["sG"][0], a["sG"].sum(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(c["sn"].sum(), a["sn"].sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_posterior_and_predict_kernels_match_brute_force(dtype, rng):
    sizes = [3, 0, 1, 6, 2]
    Phi, y, off, mu, Sig, w, s2 = packed_problem(rng, sizes, 4, 3)
    T, C, m = 5, 3, 4
    f = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    L = f(np.linalg.cholesky(Sig))
    ll, R, lev, pm, pS = brute_estep(Phi, y, off, mu, Sig, w, s2)
    r, lv = np.zeros((T, C), dtype), np.zeros(T, dtype)
    post_m, post_S, nj = np.zeros((T, C, m), dtype), np.zeros((T, C, m, m), dtype), np.zeros(T, np.int32)
    with one_blas_thread():
        K.posterior(f(Phi), f(y), off, L, f(mu), f(np.log(w)), s2, r, lv, post_m, post_S, nj, True, 2)
    tol = TOL[dtype]
    np.testing.assert_allclose(r, R, rtol=tol, atol=tol)
    np.testing.assert_allclose(post_m, pm, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(post_S, pS, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(lv, lev, rtol=tol, atol=tol)
    q_sizes = [2, 3, 0, 1, 5]
    q_off = np.r_[0, np.cumsum(q_sizes)].astype(np.int64)
    Pq = rng.normal(size=(q_off[-1], m))
    cm, cv = np.zeros((q_off[-1], C), dtype), np.zeros((q_off[-1], C), dtype)
    r2 = np.zeros((T, C), dtype)
    with one_blas_thread():
        K.predict(f(Phi), f(y), off, f(Pq), q_off, L, f(mu), f(np.log(w)), s2, r2, cm, cv, nj, 2, 2)
    np.testing.assert_allclose(r2, R, rtol=tol, atol=tol)
    for t in range(T):
        Q = Pq[q_off[t] : q_off[t + 1]]
        for c in range(C):
            np.testing.assert_allclose(cm[q_off[t] : q_off[t + 1], c], Q @ pm[t, c], rtol=10 * tol, atol=10 * tol)
            var = s2 + np.einsum("ij,jk,ik->i", Q, pS[t, c], Q)
            np.testing.assert_allclose(cv[q_off[t] : q_off[t + 1], c], var, rtol=10 * tol, atol=10 * tol)


# ------------------------------------------------------------------------------------ EM
def brute_log_prior(Sig, nu, target):
    """log p(Sigma) = -nu/2 [log|Sigma| + tr(target Sigma^-1)] (the inverse-Wishart-style shrinkage)."""
    return -0.5 * nu * (np.linalg.slogdet(Sig)[1] + np.trace(target @ np.linalg.inv(Sig)))


def single_gaussian_em(Phi, y, off, mu, Sig, s2, n_iter, nu=0.0, target=None):
    """Brute-force numpy EM for one Gaussian prior (section 2.4), task by task; with nu > 0 the
    MAP M-step Sigma = (T Sigma_ML + nu target) / (T + nu).  Returns the log evidence and the
    MAP objective (log evidence + log p(Sigma)) after every iteration."""
    T = len(off) - 1
    history, objective = [], []
    for _ in range(n_iter):
        ll, R, lev, pm, pS = brute_estep(Phi, y, off, mu[None], Sig[None], np.ones(1), s2)
        _, mu_, Sig_, s2 = brute_mstep(Phi, y, off, R, pm, pS)
        mu, Sig = mu_[0], Sig_[0]
        if nu > 0:
            Sig = (T * Sig + nu * target) / (T + nu)
        history.append(brute_estep(Phi, y, off, mu[None], Sig[None], np.ones(1), s2)[2].sum())
        objective.append(history[-1] + (brute_log_prior(Sig, nu, target) if nu > 0 else 0.0))
    return mu, Sig, s2, np.array(history), np.array(objective)


@pytest.mark.parametrize("nu", [0.0, 1.0, 7.5])
def test_one_component_equals_single_gaussian_em(nu, rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=40, n=6, m=4)
    Phi[:, 1] *= 3.0
    mp = MixturePrior(n_components=1, max_iter=14, tol=0.0, prior_weight=nu).fit(Phi, y, off)
    # the fit's own start, which is also the shrinkage target: isotropic prior psi I, psi = 1/m,
    # in the rescaled space (unit-RMS y and columns)
    ys, d = np.sqrt(np.mean(y**2)), np.sqrt(np.mean(Phi**2, axis=0))
    mu0, Sig0, s20 = np.zeros(4), np.diag(ys**2 / (4 * d**2)), 0.5 * ys**2
    mu, Sig, s2, hist, obj = single_gaussian_em(Phi, y, off, mu0, Sig0, s20, 14, nu, Sig0)
    np.testing.assert_allclose(mp.means_[0], mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mp.covariances_[0], Sig, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mp.noise_var_, s2, rtol=1e-6)
    np.testing.assert_allclose(mp.log_evidence_, hist, rtol=1e-8)
    # objective_ is defined up to a constant (the rescaling): compare its steps
    np.testing.assert_allclose(np.diff(mp.objective_), np.diff(obj), rtol=1e-6, atol=1e-8 * np.abs(obj).max())
    if nu == 0:
        np.testing.assert_array_equal(mp.objective_, mp.log_evidence_)
    else:
        assert np.all(mp.objective_ < mp.log_evidence_ + 1e3)  # a real, finite prior term
        assert not np.allclose(np.diff(mp.objective_), np.diff(mp.log_evidence_))
    assert mp.n_iter_ == 14 and mp.responsibilities_.shape == (40, 1)


def test_map_mstep_and_log_prior_match_brute_force(rng):
    Phi, y, off, mu, Sig, w, s2 = packed_problem(rng, [4, 2, 6, 3, 5, 1, 4], 3, 2)
    nu = 2.5
    em = _EM(Phi, y, off, "full", 1, prior_weight=nu)
    p = _Params(w, mu, Sig, s2)
    p2, dropped = em.mstep(p, em.estep(p))
    assert not dropped
    _, R, _, pm, pS = brute_estep(Phi, y, off, p.means, p.covs, w, s2)
    pi, mu_b, Sig_b, s2_b = brute_mstep(Phi, y, off, R, pm, pS)
    Nc = R.sum(0)
    Sig_map = (Nc[:, None, None] * Sig_b + nu / 3 * np.eye(3)) / (Nc + nu)[:, None, None]
    np.testing.assert_allclose(p2.weights, pi, rtol=1e-9)
    np.testing.assert_allclose(p2.means, mu_b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p2.covs, Sig_map, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(p2.noise_var, s2_b, rtol=1e-9)
    want = sum(brute_log_prior(p2.covs[c], nu, np.eye(3) / 3) for c in range(2))
    np.testing.assert_allclose(em.log_prior(p2), want, rtol=1e-10)
    assert _EM(Phi, y, off, "full", 1).log_prior(p2) == 0.0


def test_shrinkage_bounds_component_covariances_away_from_zero(rng):
    # 12-function basis, ~10 tasks of 3 points per component, weights varying in 2 directions
    # only: the ML covariances are near singular
    m, T, n = 12, 30, 3
    Phi = rng.normal(size=(T * n, m))
    W = 3.0 * rng.normal(size=(3, m))[rng.integers(0, 3, T)] + rng.normal(size=(T, 2)) @ rng.normal(size=(2, m))
    y = np.einsum("tnm,tm->tn", Phi.reshape(T, n, m), W).ravel() + 0.01 * rng.normal(size=T * n)
    off = np.arange(T + 1, dtype=np.int64) * n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = MixturePrior(n_components=3, prior_weight=0.0, random_state=0, max_iter=40).fit(Phi, y, off)
        mapfit = MixturePrior(n_components=3, prior_weight=1.0, random_state=0, max_iter=40).fit(Phi, y, off)
    psi = 1.0 / 12
    for p, mp in ((mapfit._params, mapfit), (ml._params, ml)):
        r = mp.responsibilities_.sum(0)
        low = np.linalg.eigvalsh(p.covs).min(axis=1)
        if mp is mapfit:
            assert np.all(low >= 1.0 * psi / (r + 1.0) * (1 - 1e-9))
        else:
            assert low.min() < 0.05 * psi / (r.max() + 1.0)  # what the shrinkage prevents


def test_noise_free_tasks_keep_a_relative_noise_floor(rng):
    import metafast.learners.bayes.mixture._em as mod

    m, T, n = 4, 60, 8
    Phi = rng.normal(size=(T * n, m))
    W = rng.normal(size=(T, m)) * 1e3
    y = np.einsum("tnm,tm->tn", Phi.reshape(T, n, m), W).ravel()  # exact: no noise at all
    off = np.arange(T + 1, dtype=np.int64) * n
    mp = MixturePrior(n_components=2, random_state=0, max_iter=30).fit(Phi, y, off)
    np.testing.assert_allclose(mp.noise_var_, mod._NOISE_FLOOR * np.mean(y**2), rtol=1e-6)
    mean, std = mp.predict_tasks(Phi, y, off, Phi, off)
    assert np.all(std >= np.sqrt(mod._NOISE_FLOOR * np.mean(y**2)) * (1 - 1e-9))
    assert np.all(np.isfinite(mean)) and np.max(np.abs(mean - y)) < 1e-3 * np.sqrt(np.mean(y**2))


@pytest.mark.parametrize("nu", [0.0, 1.0, 20.0])
@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_em_objective_never_decreases(covariance, nu, rng):
    """Plain EM climbs the log evidence; MAP-EM (nu > 0) climbs log evidence + log p(Sigma)."""
    Phi, y, off, _, _ = two_kind_tasks(rng, T=120, n=5, m=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # three components for two kinds of task: plain EM splits one kind (its evidence keeps
        # climbing); with the shrinkage the spare component would collapse, so MAP-EM gets two
        mp = MixturePrior(
            n_components=3 if nu == 0 else 2,
            covariance=covariance,
            max_iter=40,
            tol=0.0,
            random_state=0,
            prior_weight=nu,
        ).fit(Phi, y, off)
    if mp.dropped_components_:
        pytest.skip("a component was dropped (the objective may dip there)")
    climbed = mp.objective_ if nu > 0 else mp.log_evidence_
    gains = np.diff(climbed)
    assert gains.min() >= -1e-9 * np.abs(climbed).max()
    assert climbed[-1] > climbed[0]
    if nu == 0:
        np.testing.assert_array_equal(mp.objective_, mp.log_evidence_)
    if covariance != "full":
        off_diag = mp.covariances_ - np.einsum("cii->ci", mp.covariances_)[:, :, None] * np.eye(5)
        assert np.abs(off_diag).max() == 0.0


def test_recovers_known_two_component_hierarchy(rng):
    Phi, y, off, z, mus = two_kind_tasks(rng, T=300)
    mp = MixturePrior(n_components=2, random_state=0).fit(Phi, y, off)
    order = np.argsort(-mp.means_[:, 0])  # component with mean[0] ~ +2 first
    np.testing.assert_allclose(mp.means_[order], mus, atol=0.15)
    np.testing.assert_allclose(mp.weights_[order], [np.mean(z == 0), np.mean(z == 1)], atol=0.02)
    for c in range(2):
        np.testing.assert_allclose(np.diag(mp.covariances_[order[c]]), 0.09, atol=0.05)
    np.testing.assert_allclose(mp.noise_var_, 0.01, rtol=0.2)
    labels = np.argmax(mp.responsibilities_[:, order], axis=1)
    assert np.mean(labels == z) > 0.97
    # the mixture explains the data far better than one Gaussian
    one = MixturePrior(n_components=1).fit(Phi, y, off)
    assert mp.log_evidence_[-1] > one.log_evidence_[-1] + 100


def test_fit_is_thread_count_invariant(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=150)
    a = MixturePrior(n_components=2, random_state=0, n_threads=1).fit(Phi, y, off)
    b = MixturePrior(n_components=2, random_state=0, n_threads=2).fit(Phi, y, off)
    for attr in ("weights_", "means_", "covariances_", "log_evidence_", "responsibilities_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.noise_var_ == b.noise_var_


def test_collapsed_component_is_dropped_and_reported(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=50)
    em = _EM(Phi, y, off, "full", 1)
    far = np.full((1, 5), 1e3)
    p = _Params([1 - 1e-12, 1e-12], np.vstack([np.zeros(5), far]), np.stack([np.eye(5)] * 2), 0.5)
    p2, dropped = em.mstep(p, em.estep(p))
    assert p2.n_components == 1 and dropped and dropped[0][0] == 1
    np.testing.assert_allclose(p2.weights, [1.0])


def test_fit_survives_a_dropped_component(rng, monkeypatch):
    import metafast.learners.bayes.mixture._em as mod

    Phi, y, off, z, mus = two_kind_tasks(rng, T=200)
    # with two kinds of task, one of three components holds < 0.3 T: call that collapsed
    monkeypatch.setattr(mod, "_collapse_threshold", lambda T, C: 0.3 * T if C == 3 else 0.5)
    with pytest.warns(UserWarning, match="dropped"):
        mp = MixturePrior(n_components=3, random_state=0, n_init=1, max_iter=60).fit(Phi, y, off)
    assert mp.n_components_ == 2 and mp.dropped_components_
    assert mp.weights_.shape == (2,) and mp.responsibilities_.shape == (200, 2)
    np.testing.assert_allclose(np.sort(mp.means_[:, 0]), [-2, 2], atol=0.15)
    mean, std = mp.predict_tasks(Phi, y, off, Phi, off)
    assert np.mean((mean - y) ** 2) < 0.05 and np.all(np.isfinite(std))


def test_auto_selects_two_components(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mp = MixturePrior(n_components="auto", component_range=(1, 3), random_state=0, max_iter=30).fit(Phi, y, off)
    assert mp.n_components_ == 2
    table = mp.component_scores_
    np.testing.assert_array_equal(table["n_components"], [1, 2, 3])
    assert set(table) >= {"heldout_log_evidence", "bic", "train_log_evidence"}
    # with the shrinkage a spare third component collapses to two: BIC must pick a 2-component fit
    assert table["n_components_fitted"][np.argmin(table["bic"])] == 2


def test_auto_split_is_a_hash_rule_reproducible_and_about_a_fifth(rng):
    from metafast.learners.bayes.mixture._heldout import Split, count_nominal, make_split, smallest_hashes, task_hashes

    # the per-task hash depends on the global index only: any chunking gives the same hashes
    whole = task_hashes(7, 0, 200)
    np.testing.assert_array_equal(
        np.concatenate([task_hashes(7, 0, 70), task_hashes(7, 70, 1), task_hashes(7, 71, 129)]), whole
    )
    assert whole.dtype == np.uint64 and np.unique(whole).size == 200
    assert not np.array_equal(task_hashes(8, 0, 200), whole)
    fractions = [count_nominal(s, 0, 200) / 200 for s in range(40)]
    assert 0.17 < np.mean(fractions) < 0.23 and all(0.08 < f < 0.32 for f in fractions)
    np.testing.assert_array_equal(smallest_hashes(7, 0, 200, 5), np.sort(whole)[:5])
    split, n_held = make_split(7, 200, count_nominal(7, 0, 200), 8, "auto", None)
    assert split == Split(7, 2**64 // 5 - 1) and split.held(0, 200).sum() == n_held
    np.testing.assert_array_equal(split.tasks(0, 200, True), np.flatnonzero(whole < np.uint64(2**64 // 5)))

    # a fit on 200 tasks holds out ~20%, and the same seed gives the same fit
    Phi, y, off, _, _ = two_kind_tasks(rng, T=200)
    fits = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(
                MixturePrior(n_components="auto", component_range=(1, 2), random_state=3, max_iter=5, n_init=1).fit(
                    Phi, y, off
                )
            )
    assert fits[0].n_heldout_ == count_nominal(3, 0, 200) and 25 <= fits[0].n_heldout_ <= 55
    for key in ("heldout_log_evidence", "bic"):
        np.testing.assert_array_equal(fits[0].component_scores_[key], fits[1].component_scores_[key])
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    # a RandomState gives one draw of the seed: a fresh one with the same seed, the same split
    a, b = (
        MixturePrior(
            n_components="auto", component_range=(1, 1), random_state=np.random.RandomState(5), max_iter=2
        ).fit(Phi, y, off)
        for _ in range(2)
    )
    np.testing.assert_array_equal(
        a.component_scores_["heldout_log_evidence"], b.component_scores_["heldout_log_evidence"]
    )


def test_auto_split_keeps_one_held_out_task_and_enough_to_train(rng):
    from metafast.learners.bayes.mixture._heldout import count_nominal

    Phi, y, off, _, _ = two_kind_tasks(rng, T=5)
    seeds = {count_nominal(s, 0, 5): s for s in range(11)}  # nominal cuts of 0 and 3 of 5 tasks
    for seed in (seeds[0], seeds[3]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mp = MixturePrior(n_components="auto", component_range=(1, 3), random_state=seed, max_iter=2, n_init=1).fit(
                Phi, y, off
            )
        assert 1 <= mp.n_heldout_ <= 2 and mp.n_heldout_ == (1 if seed == seeds[0] else 2)
    with pytest.raises(ValueError, match=r"'auto' \(candidates C = 1..5\) needs at least 6 tasks .*got 5"):
        MixturePrior(n_components="auto", component_range=(1, 5)).fit(Phi, y, off)
    import metafast as mf

    few = mf.tasks.load("sinusoid", n_tasks=8, n_support=5, n_query=1, seed=0)
    with pytest.raises(
        ValueError, match=r"C = 1..8\) needs at least 9 tasks \(8 to train on and 1 to hold out\); got 8"
    ):
        mf.MetaBayes(n_components="auto").fit(few)
    with pytest.raises(ValueError, match="random_state"):
        MixturePrior(n_components="auto", component_range=(1, 2), random_state="x").fit(Phi, y, off)


# ------------------------------------------------------------------------------------ prediction
def test_predict_tasks_is_the_mixture_of_brute_force_posteriors(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=80)
    mp = MixturePrior(n_components=2, random_state=0).fit(Phi, y, off)
    s_off = np.array([0, 3, 3, 8], dtype=np.int64)
    Ps, ys = rng.normal(size=(8, 5)), rng.normal(size=8)
    q_off = np.array([0, 4, 6, 7], dtype=np.int64)
    Pq = rng.normal(size=(7, 5))
    mean, std = mp.predict_tasks(Ps, ys, s_off, Pq, q_off)
    for t in range(3):
        _, R, _, pm, pS = brute_estep(
            Ps[s_off[t] : s_off[t + 1]],
            ys[s_off[t] : s_off[t + 1]],
            np.array([0, s_off[t + 1] - s_off[t]]),
            mp.means_,
            mp.covariances_,
            mp.weights_,
            mp.noise_var_,
        )
        Q = Pq[q_off[t] : q_off[t + 1]]
        cm = Q @ pm[0].T
        cv = mp.noise_var_ + np.einsum("qi,cij,qj->qc", Q, pS[0], Q)
        mix_mean = cm @ R[0]
        mix_var = (cv + cm**2) @ R[0] - mix_mean**2
        np.testing.assert_allclose(mean[q_off[t] : q_off[t + 1]], mix_mean, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(std[q_off[t] : q_off[t + 1]], np.sqrt(mix_var), rtol=1e-6)


def test_task_regressor_shows_which_kind_of_task(rng):
    T, n = 200, 12
    X = rng.uniform(-1, 1, size=(T * n, 1))
    kind = rng.integers(0, 2, T)
    W = np.where(kind[:, None] == 0, [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, -3.0, 1.0]) + 0.05 * rng.normal(size=(T, 4))
    basis = PolyBasis(4).fit(X)
    Phi = basis.design(X)
    y = np.einsum("tnm,tm->tn", Phi.reshape(T, n, 4), W).ravel() + 0.05 * rng.normal(size=T * n)
    mp = MixturePrior(n_components=2, random_state=0).fit(Phi, y, np.arange(T + 1) * n)
    c_line = int(np.argmax(mp.means_[:, 1]))
    Xs = np.array([[-0.5], [0.1], [0.7]])
    ys = 1.0 + 2.0 * Xs[:, 0]
    reg = mp.task_regressor(basis, Xs, ys)
    assert isinstance(reg, MixtureTaskRegressor)
    comps = reg.predict_components(np.linspace(-1, 1, 9)[:, None])
    assert comps["responsibilities"][c_line] > 0.99
    assert comps["means"].shape == (9, 2) and comps["stds"].shape == (9, 2)
    Xq = np.linspace(-1, 1, 9)[:, None]
    mean, std = reg.predict(Xq, return_std=True)
    np.testing.assert_allclose(mean, 1.0 + 2.0 * Xq[:, 0], atol=0.1)
    assert np.all(std > 0) and np.all(np.isfinite(std))
    # same numbers as the packed path
    m2, s2 = mp.predict_tasks(basis.design(Xs), ys, [0, 3], basis.design(Xq), [0, 9])
    np.testing.assert_allclose(mean, m2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std, s2, rtol=1e-8)
    assert reg.score(Xq, 1.0 + 2.0 * Xq[:, 0]) > 0.95
    # no support points: the prior predictive
    reg0 = mp.task_regressor(basis, np.empty((0, 1)), np.empty(0))
    np.testing.assert_allclose(reg0.responsibilities_, mp.weights_)
    # pickles
    reg2 = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(reg2.predict(Xq), reg.predict(Xq))


# ------------------------------------------------------------------------------------ robustness
def test_input_layouts_give_the_same_fit(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=60)
    a = MixturePrior(n_components=2, random_state=0).fit(Phi, y, off)
    b = MixturePrior(n_components=2, random_state=0).fit(np.asfortranarray(Phi), y.tolist(), list(off))
    wide = np.zeros((Phi.shape[0], 10))
    wide[:, ::2] = Phi
    c = MixturePrior(n_components=2, random_state=0).fit(wide[:, ::2], y, off)
    for other in (b, c):
        np.testing.assert_allclose(other.means_, a.means_, rtol=1e-12)
    d = MixturePrior(n_components=2, random_state=0).fit(Phi.astype(np.float32), y.astype(np.float32), off)
    np.testing.assert_allclose(np.sort(d.means_[:, 0]), np.sort(a.means_[:, 0]), rtol=1e-3)


@pytest.mark.parametrize("case", ["duplicates", "constant_y", "scaled_1e6", "huge_y", "one_point", "empty_tasks"])
def test_hard_inputs_stay_finite(case, rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=60, n=6)
    if case == "duplicates":
        Phi = np.repeat(Phi[::2], 2, axis=0)
        y = np.repeat(y[::2], 2)
    elif case == "constant_y":
        y = np.full_like(y, 3.0)
    elif case == "scaled_1e6":
        Phi = Phi * np.array([1e6, 1, 1e-3, 1, 1])
    elif case == "huge_y":
        y = y * 1e12
    elif case == "one_point":
        off = np.arange(0, len(y) + 1, dtype=np.int64)
    elif case == "empty_tasks":
        off = np.insert(off, [0, 5, 5, len(off)], [0, off[5], off[5], off[-1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mp = MixturePrior(n_components=2, random_state=0, max_iter=20).fit(Phi, y, off)
    for attr in ("weights_", "means_", "covariances_", "log_evidence_", "responsibilities_"):
        assert np.all(np.isfinite(getattr(mp, attr))), attr
    mean, std = mp.predict_tasks(Phi[:12], y[:12], [0, 6, 12], Phi[:4], [0, 2, 4])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)


def test_bad_input_is_reported(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=20)
    bad = Phi.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Phi.*NaN"):
        MixturePrior().fit(bad, y, off)
    with pytest.raises(ValueError, match="offsets"):
        MixturePrior().fit(Phi, y, off[:-1])
    with pytest.raises(ValueError, match="y"):
        MixturePrior().fit(Phi, y[:-1], off)
    with pytest.raises(ValueError, match="n_components"):
        MixturePrior(n_components=21).fit(Phi, y, off)
    with pytest.raises(ValueError, match="n_components"):
        MixturePrior(n_components="many").fit(Phi, y, off)
    with pytest.raises(ValueError, match="covariance"):
        MixturePrior(covariance="tied").fit(Phi, y, off)
    with pytest.raises(ValueError, match="prior_weight"):
        MixturePrior(prior_weight=-1.0).fit(Phi, y, off)
    with pytest.raises(ValueError, match="component_range"):
        MixturePrior(n_components="auto", component_range=(3, 1)).fit(Phi, y, off)
    with pytest.raises(NotFittedError):
        MixturePrior().predict_tasks(Phi, y, off, Phi, off)
    mp = MixturePrior(n_components=2, random_state=0).fit(Phi, y, off)
    with pytest.raises(ValueError, match="Phi_q"):
        mp.predict_tasks(Phi, y, off, Phi[:, :3], off)
    with pytest.raises(ValueError, match="q_offsets"):
        mp.predict_tasks(Phi, y, off, Phi, off[:-1])


def test_prior_pickles(rng):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=60)
    mp = MixturePrior(n_components=2, random_state=0).fit(Phi, y, off)
    mp2 = pickle.loads(pickle.dumps(mp))
    a = mp.predict_tasks(Phi, y, off, Phi, off)
    b = mp2.predict_tasks(Phi, y, off, Phi, off)
    np.testing.assert_array_equal(a[0], b[0])


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    m=st.integers(1, 6),
    C=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_em_step_property_matches_brute_force(sizes, m, C, seed):
    rng = np.random.default_rng(seed)
    Phi, y, off, mu, Sig, w, s2 = packed_problem(rng, sizes, m, C)
    T = len(sizes)
    out = run_em_step(Phi, y, off, mu, Sig, w, s2, [0, T], chunk_rows=int(rng.integers(1, 20)), n_threads=2)
    ll, R, lev, _, _ = brute_estep(Phi, y, off, mu, Sig, w, s2)
    np.testing.assert_allclose(out["ll"], ll, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["r"], R, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["sr"].sum(0), R.sum(0), rtol=1e-12)


def test_verbose_fit_runs_without_a_terminal(rng, capsys):
    Phi, y, off, _, _ = two_kind_tasks(rng, T=40)
    MixturePrior(n_components=2, verbose=1, max_iter=5, random_state=0).fit(Phi, y, off)
    assert capsys.readouterr().err == ""


def test_restarts_screened_on_a_task_subset(rng, monkeypatch):
    import metafast.learners.bayes.mixture.prior as mod

    monkeypatch.setattr(mod, "_SCREEN_TASKS", 60)
    Phi, y, off, z, mus = two_kind_tasks(rng, T=200)
    mp = MixturePrior(n_components=2, random_state=0, max_iter=25, tol=0.0, n_threads=2).fit(Phi, y, off)
    assert mp.n_iter_ == 25 - mod._SCREEN_ITER and len(mp.log_evidence_) == mp.n_iter_
    assert np.diff(mp.objective_).min() >= -1e-9 * np.abs(mp.objective_).max()
    np.testing.assert_allclose(np.sort(mp.means_[:, 0]), [-2, 2], atol=0.15)
    again = MixturePrior(n_components=2, random_state=0, max_iter=25, tol=0.0, n_threads=1).fit(Phi, y, off)
    np.testing.assert_array_equal(again.means_, mp.means_)


def test_metabayes_iso_covariance_maps_to_spherical_components():
    import metafast as mf

    train = mf.tasks.load("sinusoid", n_tasks=120, n_support=8, n_query=4, seed=3)
    model = mf.MetaBayes(
        basis=mf.basis.make("rbf", n_basis=12), covariance="iso", n_components=2, max_iter=20, random_state=0
    ).fit(train)
    assert model.mixture_.covariance == "spherical"
    scores = model.evaluate(mf.tasks.load("sinusoid", n_tasks=30, n_support=8, n_query=10, seed=4))
    assert np.isfinite(scores["mse"]) and np.isfinite(scores["nll"])


def test_metabayes_mixture_attributes_have_one_source_of_truth():
    from sklearn.base import clone

    import metafast as mf

    train = mf.tasks.load("multimodal", n_tasks=60, n_support=8, n_query=2, seed=1)
    basis = mf.basis.make("rbf", n_basis=6)
    names = (
        "n_components_",
        "weights_",
        "means_",
        "covariances_",
        "noise_var_",
        "log_evidence_",
        "objective_",
        "n_iter_",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mf.MetaBayes(basis=basis, n_components=2, max_iter=5, random_state=0).fit(train)
    for name in names:
        assert getattr(model, name) is getattr(model.mixture_, name) and name not in vars(model)
    with pytest.raises(AttributeError, match="mixture_.noise_var_"):
        model.noise_var_ = 1.0
    # pickling keeps one copy; clone has the parameters only
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.means_, model.means_)
    assert back.means_ is back.mixture_.means_
    fresh = clone(model)
    assert fresh.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert fresh.n_components == 2 and not hasattr(fresh, "weights_") and not hasattr(fresh, "mixture_")
    # refitting the same object with one Gaussian swaps in its own attributes; the mixture ones go
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(n_components=1).fit(train)
    assert not hasattr(model, "mixture_") and not hasattr(model, "weights_") and not hasattr(model, "means_")
    assert vars(model)["noise_var_"] == model.noise_var_ and vars(model)["n_iter_"] == model.n_iter_ > 0
    assert model.mean_.shape == (6,) and np.isfinite(model.noise_var_)
    # and back to the mixture: the single-Gaussian values no longer shadow the mixture's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(n_components=2).fit(train)
    assert model.noise_var_ == model.mixture_.noise_var_ and "noise_var_" not in vars(model)
