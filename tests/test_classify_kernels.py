"""The _classify kernels against plain numpy / scipy references (float64 and float32, ragged tasks)."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from threadpoolctl import threadpool_limits

from metafast._kernels import _classify
from metafast.learners.classify._logistic import solve_paths

SIZES = [7, 3, 12, 5, 1, 0, 4]
N_CLASSES = [3, 2, 4, 3, 3, 2, 1]


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def packed(seed=0, m=6, dtype=np.float64, sizes=SIZES, n_classes=N_CLASSES):
    rng = np.random.default_rng(seed)
    off = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    Phi = (1.5 * rng.normal(size=(off[-1], m))).astype(dtype)
    codes = np.concatenate([rng.integers(0, c, s) for s, c in zip(sizes, n_classes)]).astype(np.int64)
    return Phi, codes, off, np.asarray(n_classes, dtype=np.int64)


def run_laplace(Phi, codes, off, ncls, B0, n_threads=1, warm=None, path="dual", with_q=False):
    """The kernel on packed tasks; with_q also returns the per-task second-moment statistic
    (Phi_t^T G_t for dual tasks, Qp[slot] for primal ones)."""
    T, c_max = len(off) - 1, int(ncls.max())
    A = np.zeros((Phi.shape[0], c_max), Phi.dtype) if warm is None else warm.copy()
    G = np.zeros_like(Phi)
    primal = solve_paths(np.diff(off), ncls, Phi.shape[1], path)
    Qp = np.full((int((primal >= 0).sum()), Phi.shape[1], Phi.shape[1]), np.nan, Phi.dtype)
    logq, status = np.zeros(T), np.zeros(T, np.intc)
    _classify.logistic_laplace(
        Phi, B0, codes, off, ncls, primal, 100, 1e-13, warm is not None, True, n_threads, A, G, Qp, logq, status
    )
    if not with_q:
        return A, G, logq, status
    Q = [Qp[primal[t]] if primal[t] >= 0 else Phi[off[t] : off[t + 1]].T @ G[off[t] : off[t + 1]] for t in range(T)]
    return A, G, logq, status, Q


def task_map_scipy(P, y, b, c):
    """Whitened MAP V (m, c) of sum_i NLL(P V + b) + |V|^2 / 2 by L-BFGS (the brute-force reference)."""
    m = P.shape[1]

    def f(v):
        V = v.reshape(m, c)
        Z = P @ V + b
        lse = logsumexp(Z, axis=1)
        R = np.exp(Z - lse[:, None])
        R[np.arange(len(y)), y] -= 1
        return (lse - Z[np.arange(len(y)), y]).sum() + 0.5 * (V**2).sum(), (P.T @ R + V).ravel()

    res = minimize(f, np.zeros(m * c), jac=True, method="L-BFGS-B", options=dict(gtol=1e-11, ftol=1e-15, maxiter=5000))
    return res.x.reshape(m, c)


def primal_hessian(P, V, b):
    """Hessian of the whitened objective (class-major blocks): I + sum_i (diag(pi) - pi pi^T) x phi phi^T."""
    Z = P @ V + b
    pi = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    m, c = V.shape
    H = np.eye(m * c)
    for i in range(P.shape[0]):
        H += np.kron(np.diag(pi[i]) - np.outer(pi[i], pi[i]), np.outer(P[i], P[i]))
    return H


def objective_and_grad(P, y, b, v, c):
    V = v.reshape(-1, c)
    Z = P @ V + b
    lse = logsumexp(Z, axis=1)
    R = np.exp(Z - lse[:, None])
    R[np.arange(len(y)), y] -= 1
    return (lse - Z[np.arange(len(y)), y]).sum() + 0.5 * (V**2).sum(), (P.T @ R + V).ravel()


@pytest.mark.parametrize("path", ["dual", "primal"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-6), (np.float32, 2e-3)])
def test_laplace_map_matches_scipy(dtype, tol, path):
    Phi, codes, off, ncls = packed(dtype=dtype)
    B0 = (0.5 * np.random.default_rng(1).normal(size=(Phi.shape[0], ncls.max()))).astype(dtype)
    A, G, logq, status = run_laplace(Phi, codes, off, ncls, B0, path=path)
    assert (status >= 0).all()
    for t in range(len(SIZES)):
        s, c = slice(off[t], off[t + 1]), int(ncls[t])
        if SIZES[t] == 0 or c < 2:
            assert np.all(A[s] == 0) and logq[t] == 0
            continue
        P, y, b = Phi[s].astype(np.float64), codes[s], B0[s, :c].astype(np.float64)
        V = task_map_scipy(P, y, b, c)
        np.testing.assert_allclose(P.T @ A[s, :c].astype(np.float64), V, atol=tol * 10, rtol=tol)


@pytest.mark.parametrize("path", ["dual", "primal"])
def test_laplace_evidence_and_statistic_match_primal_reference(path):
    Phi, codes, off, ncls = packed(seed=3, m=4)
    B0 = np.random.default_rng(2).normal(size=(Phi.shape[0], ncls.max()))
    A, G, logq, _, Q = run_laplace(Phi, codes, off, ncls, B0, path=path, with_q=True)
    for t in range(len(SIZES)):
        s, c = slice(off[t], off[t + 1]), int(ncls[t])
        if SIZES[t] == 0 or c < 2:
            continue
        P, y, b = Phi[s], codes[s], B0[s, :c]
        V = P.T @ A[s, :c]
        H = primal_hessian(P, V, b)
        psi, grad = objective_and_grad(P, y, b, V.ravel(), c)
        assert np.abs(grad).max() < 1e-7  # the MAP: zero gradient
        assert logq[t] == pytest.approx(-psi - 0.5 * np.linalg.slogdet(H)[1], rel=1e-10, abs=1e-10)
        cov = np.linalg.inv(H)  # Laplace posterior of (v_1..v_c)
        m = P.shape[1]
        second = sum(
            np.outer(V[:, k], V[:, k]) + cov[k * m : (k + 1) * m, k * m : (k + 1) * m] - np.eye(m) for k in range(c)
        )
        np.testing.assert_allclose(Q[t], second, atol=1e-10)


def test_objective_gradient_and_hessian_by_finite_differences():
    Phi, codes, off, ncls = packed(seed=5, m=3)
    s, c = slice(off[2], off[3]), 4
    P, y = Phi[s], codes[s]
    b = np.random.default_rng(0).normal(size=(P.shape[0], c))
    v = np.random.default_rng(1).normal(size=3 * c)
    f0, g0 = objective_and_grad(P, y, b, v, c)
    H = primal_hessian(P, v.reshape(3, c), b)
    to_h = np.array([(i % c) * 3 + i // c for i in range(3 * c)])  # v is (m, c) row-major, H class-major
    Hv = H[np.ix_(to_h, to_h)]
    h = 1e-6
    for k in range(v.size):
        e = np.zeros_like(v)
        e[k] = h
        fp, gp = objective_and_grad(P, y, b, v + e, c)
        fm, gm = objective_and_grad(P, y, b, v - e, c)
        assert (fp - fm) / (2 * h) == pytest.approx(g0[k], rel=1e-6, abs=1e-7)
        np.testing.assert_allclose((gp - gm) / (2 * h), Hv[:, k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["dual", "primal", "auto"])
def test_warm_start_and_threads_give_the_same_answer(path):
    Phi, codes, off, ncls = packed(seed=7, sizes=SIZES + [40, 33], n_classes=N_CLASSES + [2, 3], m=3)
    B0 = np.zeros((0, ncls.max()))
    A1, G1, q1, _, Q1 = run_laplace(Phi, codes, off, ncls, B0, n_threads=1, path=path, with_q=True)
    A2, G2, q2, _, Q2 = run_laplace(Phi, codes, off, ncls, B0, n_threads=2, path=path, with_q=True)
    np.testing.assert_array_equal(A1, A2)
    np.testing.assert_array_equal(G1, G2)
    np.testing.assert_array_equal(np.stack(Q1), np.stack(Q2))
    A3, _, q3, status = run_laplace(Phi, codes, off, ncls, B0, warm=0.9 * A1, path=path)
    np.testing.assert_allclose(A3, A1, atol=1e-7)
    np.testing.assert_allclose(q3, q1, atol=1e-9)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-6), (np.float32, 2e-3)])
def test_primal_and_dual_paths_agree(dtype, tol):
    """Both paths on the same ragged tasks (many rows: where auto takes the primal); the dual stops
    on the objective (gradient ~1e-8), hence 1e-6 in float64."""
    Phi, codes, off, ncls = packed(seed=12, sizes=[60, 45, 9, 0, 31], n_classes=[2, 4, 3, 2, 3], m=5, dtype=dtype)
    B0 = (0.3 * np.random.default_rng(5).normal(size=(Phi.shape[0], ncls.max()))).astype(dtype)
    assert (solve_paths(np.diff(off), ncls, Phi.shape[1]) >= 0).sum() >= 2
    Ad, _, qd, sd, Qd = run_laplace(Phi, codes, off, ncls, B0, path="dual", with_q=True)
    Ap, _, qp, sp, Qp = run_laplace(Phi, codes, off, ncls, B0, path="primal", with_q=True)
    Aa, _, qa, _, Qa = run_laplace(Phi, codes, off, ncls, B0, path="auto", with_q=True)
    assert (sd >= 0).all() and (sp >= 0).all()
    for t in range(len(off) - 1):
        s = slice(off[t], off[t + 1])
        V = [Phi[s].T.astype(np.float64) @ A[s].astype(np.float64) for A in (Ad, Ap, Aa)]
        np.testing.assert_allclose(V[1], V[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(V[2], V[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(Qp[t], Qd[t], rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(Qa[t], Qd[t], rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(qp, qd, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(qa, qd, rtol=tol, atol=tol * 10)


def test_solve_paths_rule_and_bad_path():
    sizes = np.array([10, 400, 400, 100, 0, 400])
    ncls = np.array([3, 2, 5, 5, 2, 1])
    out = solve_paths(sizes, ncls, 65)
    assert out.tolist() == [-1, 0, 1, -1, -1, -1]  # few rows: dual; one class or empty: neither
    assert (solve_paths(sizes, ncls, 65, "primal") >= 0).sum() == 4
    with pytest.raises(ValueError, match="path"):
        solve_paths(sizes, ncls, 65, "fast")


@pytest.mark.parametrize("path", ["dual", "primal"])
def test_extreme_scores_stay_finite(path):
    Phi, codes, off, ncls = packed(seed=8)
    B0 = np.full((Phi.shape[0], ncls.max()), 0.0)
    B0[:, 0] = 800.0  # exp(800) overflows without the shift
    A, G, logq, status = run_laplace(1e3 * Phi, codes, off, ncls, B0, path=path)
    assert np.isfinite(A).all() and np.isfinite(G).all() and np.isfinite(logq).all() and (status >= 0).all()


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-3)])
def test_ridge_estep_matches_numpy(dtype, rtol):
    Phi, codes, off, ncls = packed(seed=9, dtype=dtype)
    ncls = np.maximum(ncls, 1)
    c_max = int(ncls.max())
    R = np.random.default_rng(3).normal(size=(Phi.shape[0], c_max)).astype(dtype)
    T, N = len(off) - 1, Phi.shape[0]
    A, G = np.zeros((N, c_max), dtype), np.zeros_like(Phi)
    cinv, logp, noise, status = np.zeros(N, dtype), np.zeros(T), np.zeros(T), np.zeros(T, np.intc)
    s2 = 0.3
    _classify.ridge_estep(Phi, R, off, ncls, s2, 2, A, G, cinv, logp, noise, status)
    for t in range(T):
        s, c = slice(off[t], off[t + 1]), int(ncls[t])
        n = off[t + 1] - off[t]
        if n == 0:
            continue
        P = Phi[s].astype(np.float64)
        Cm = P @ P.T + s2 * np.eye(n)
        Ci = np.linalg.inv(Cm)
        Rt = R[s, :c].astype(np.float64)
        At = Ci @ Rt
        np.testing.assert_allclose(A[s, :c], At, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(cinv[s], np.diag(Ci), rtol=rtol)
        ref = sum(multivariate_normal(np.zeros(n), Cm).logpdf(Rt[:, k]) for k in range(c))
        assert logp[t] == pytest.approx(ref, rel=rtol * 10)
        np.testing.assert_allclose(G[s], (At @ At.T - c * Ci) @ P, rtol=rtol * 10, atol=rtol * 10)
        # noise statistic: sum_c ||r_c - Phi m_c||^2 + tr(Phi S Phi^T), with m_c = Phi^T a_c, S = I - Phi^T C^-1 Phi
        S = np.eye(P.shape[1]) - P.T @ Ci @ P
        ref_noise = sum(((Rt[:, k] - P @ (P.T @ At[:, k])) ** 2).sum() for k in range(c)) + c * np.trace(P @ S @ P.T)
        assert noise[t] == pytest.approx(ref_noise, rel=rtol * 10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_task_logits_and_prototype_distances(dtype):
    Phi, codes, off, ncls = packed(seed=11, dtype=dtype)
    rng = np.random.default_rng(4)
    c_max = int(ncls.max())
    A = rng.normal(size=(Phi.shape[0], c_max)).astype(dtype)
    q_sizes = [2, 0, 5, 1, 3, 2, 1]
    q_off = np.r_[0, np.cumsum(q_sizes)].astype(np.int64)
    Phi_q = rng.normal(size=(q_off[-1], Phi.shape[1])).astype(dtype)
    out = np.full((q_off[-1], c_max), np.nan, dtype)
    _classify.task_logits(Phi, A, off, ncls, Phi_q, q_off, 2, out)
    P_off = np.r_[0, np.cumsum(ncls)].astype(np.int64)
    protos = rng.normal(size=(P_off[-1], Phi.shape[1])).astype(dtype)
    metric = rng.uniform(0.1, 2.0, Phi.shape[1]).astype(dtype)
    D = np.full((Phi.shape[0], c_max), np.nan, dtype)
    _classify.prototype_sqdist(Phi, off, protos, P_off, metric, 2, D)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for t in range(len(off) - 1):
        c = int(ncls[t])
        s, q = slice(off[t], off[t + 1]), slice(q_off[t], q_off[t + 1])
        ref = Phi_q[q].astype(np.float64) @ (Phi[s].T.astype(np.float64) @ A[s, :c].astype(np.float64))
        np.testing.assert_allclose(out[q, :c], ref, rtol=tol, atol=tol)
        assert np.all(out[q, c:] == 0)
        Pt = protos[P_off[t] : P_off[t + 1]].astype(np.float64)
        ref_d = (((Phi[s, None, :].astype(np.float64) - Pt[None]) ** 2) * metric).sum(-1)
        np.testing.assert_allclose(D[s, :c], ref_d, rtol=tol, atol=tol)
        assert np.all(D[s, c:] == 0)
