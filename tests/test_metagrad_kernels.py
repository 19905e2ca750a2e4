"""The _metagrad kernel against plain numpy: an unrolled inner loop with explicit Jacobians
(brute force) and central finite differences of the meta-objective, float32 and float64, odd
sizes, empty inner or outer sets, and every thread count giving the same result."""

import numpy as np
import pytest

from metafast._kernels import _metagrad as K

METHODS = {"maml": K.METHOD_MAML, "fomaml": K.METHOD_FOMAML, "reptile": K.METHOD_REPTILE, "imaml": K.METHOD_IMAML}


# ------------------------------------------------------------------------- numpy references
def inner_solution(method, k, lam, P, y, w0, a):
    """w_k after k gradient steps with rates a (or the proximal solution for iMAML)."""
    n, m = P.shape
    A = P.T @ P / n if n else np.zeros((m, m))
    b = P.T @ y / n if n else np.zeros(m)
    if method == "imaml":
        return np.linalg.solve(A + lam * np.eye(m), b + lam * w0)
    w = w0.copy()
    for _ in range(k):
        w = w - a * (A @ w - b)
    return w


def meta_loss(method, k, lam, P, y, Pq, yq, w0, a):
    w = inner_solution(method, k, lam, P, y, w0, a)
    if method == "reptile" and len(yq) == 0:
        Pq, yq = P, y
    return 0.0 if len(yq) == 0 else float(np.sum((Pq @ w - yq) ** 2) / (2 * len(yq)))


def brute_force_grads(method, k, lam, P, y, Pq, yq, w0, a):
    """d loss/d w0 and d loss/d a by explicit Jacobians of the unrolled inner loop."""
    n, m = P.shape
    A = P.T @ P / n if n else np.zeros((m, m))
    b = P.T @ y / n if n else np.zeros(m)
    wk = inner_solution(method, k, lam, P, y, w0, a)
    v = Pq.T @ (Pq @ wk - yq) / len(yq) if len(yq) else np.zeros(m)
    if method == "reptile":
        return w0 - wk, np.zeros(m)
    if method == "fomaml":
        return v, np.zeros(m)
    if method == "imaml":
        J = lam * np.linalg.inv(A + lam * np.eye(m))  # dw*/dw0
        return J.T @ v, np.zeros(m)
    J = np.eye(m)  # dw_j / dw0
    D = np.zeros((m, m))  # dw_j / da
    w = w0.copy()
    for _ in range(k):
        g = A @ w - b
        step = np.eye(m) - np.diag(a) @ A
        J, D = step @ J, step @ D - np.diag(g)
        w = w - a * g
    return J.T @ v, D.T @ v


def fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


# ------------------------------------------------------------------------- helpers
def make_batch(rng, sizes, qsizes, m, dtype=np.float64):
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    qoff = np.concatenate([[0], np.cumsum(qsizes)]).astype(np.int64)
    P = rng.standard_normal((off[-1], m)) / np.sqrt(m)
    Pq = rng.standard_normal((qoff[-1], m)) / np.sqrt(m)
    y = rng.standard_normal(off[-1])
    yq = rng.standard_normal(qoff[-1])
    return (
        [np.ascontiguousarray(x, dtype=dtype) for x in (P, y)]
        + [off]
        + [np.ascontiguousarray(x, dtype=dtype) for x in (Pq, yq)]
        + [qoff]
    )


def run_kernel(method, k, lam, P, y, off, Pq, yq, qoff, w0, a, n_threads=1, with_g=True):
    T, m = len(off) - 1, P.shape[1]
    dt = P.dtype
    loss = np.empty(T, dt)
    gw, ga = np.empty((T, m), dt), np.empty((T, m), dt)
    G = np.full((P.shape[0] if with_g else 0, m), np.nan, dt)
    Gq = np.full((Pq.shape[0] if with_g else 0, m), np.nan, dt)
    status = np.empty(T, np.intc)
    K.meta_grad(
        METHODS[method],
        k,
        lam,
        P,
        y,
        off,
        Pq,
        yq,
        qoff,
        w0.astype(dt),
        a.astype(dt),
        loss,
        gw,
        ga,
        G,
        Gq,
        status,
        n_threads,
    )
    assert (status == 0).all()
    return loss, gw, ga, G, Gq


# ------------------------------------------------------------------------- tests
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_meta_grad_matches_brute_force_and_fd(method, dtype):
    rng = np.random.default_rng(3)
    sizes, qsizes, m, k, lam = [3, 7, 1, 5], [4, 2, 6, 0], 5, 4, 0.7
    P, y, off, Pq, yq, qoff = make_batch(rng, sizes, qsizes, m, np.float64)
    w0 = rng.standard_normal(m)
    a = 0.3 + rng.uniform(0, 0.5, m)  # per-coordinate rates (Meta-SGD)
    Pc, yc, Pqc, yqc = (np.ascontiguousarray(x, dtype=dtype) for x in (P, y, Pq, yq))
    loss, gw, ga, G, Gq = run_kernel(method, k, lam, Pc, yc, off, Pqc, yqc, qoff, w0, a, n_threads=2)
    tol = dict(rtol=2e-3, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-8, atol=1e-10)
    for t in range(len(sizes)):
        s, q = slice(off[t], off[t + 1]), slice(qoff[t], qoff[t + 1])
        args = (P[s], y[s], Pq[q], yq[q])
        f = lambda w0_, a_=a: meta_loss(method, k, lam, *args, w0_, a_)
        np.testing.assert_allclose(loss[t], f(w0), **tol)
        bw, ba = brute_force_grads(method, k, lam, *args, w0, a)
        np.testing.assert_allclose(gw[t], bw, **tol)
        if method in ("maml", "imaml"):
            np.testing.assert_allclose(bw, fd(f, w0), rtol=1e-6, atol=1e-8)
        if method == "maml":
            np.testing.assert_allclose(ga[t], ba, **tol)
            np.testing.assert_allclose(ba, fd(lambda a_: f(w0, a_), a), rtol=1e-6, atol=1e-8)
        else:
            assert not ga[t].any()
        # d loss / d Phi: exact for maml and imaml; first-order (w_k held fixed) otherwise
        if method in ("maml", "imaml"):
            gP = fd(lambda P_: meta_loss(method, k, lam, P_, y[s], Pq[q], yq[q], w0, a), P[s])
            np.testing.assert_allclose(G[s], gP, rtol=1e-5, atol=1e-7 if dtype == np.float64 else 2e-4)
        wk = inner_solution(method, k, lam, P[s], y[s], w0, a)
        if q.stop > q.start:
            np.testing.assert_allclose(Gq[q], np.outer(Pq[q] @ wk - yq[q], wk) / (q.stop - q.start), **tol)


def test_reptile_without_outer_rows_uses_adapted_training_loss():
    rng = np.random.default_rng(0)
    P, y, off, Pq, yq, qoff = make_batch(rng, [6, 4], [0, 0], 3)
    w0, a = rng.standard_normal(3), np.full(3, 0.5)
    loss, gw, _, G, _ = run_kernel("reptile", 3, 0.0, P, y, off, Pq, yq, qoff, w0, a)
    for t in range(2):
        s = slice(off[t], off[t + 1])
        wk = inner_solution("reptile", 3, 0.0, P[s], y[s], w0, a)
        r = P[s] @ wk - y[s]
        np.testing.assert_allclose(loss[t], r @ r / (2 * len(r)))
        np.testing.assert_allclose(gw[t], w0 - wk)
        np.testing.assert_allclose(G[s], np.outer(r, wk) / len(r))


@pytest.mark.parametrize("method", list(METHODS))
def test_threads_do_not_change_results_and_g_is_optional(method):
    rng = np.random.default_rng(1)
    sizes = rng.integers(0, 12, 37)
    P, y, off, Pq, yq, qoff = make_batch(rng, sizes, rng.integers(0, 9, 37), 11)
    w0, a = rng.standard_normal(11), np.full(11, 0.4)
    one = run_kernel(method, 5, 0.3, P, y, off, Pq, yq, qoff, w0, a, n_threads=1)
    two = run_kernel(method, 5, 0.3, P, y, off, Pq, yq, qoff, w0, a, n_threads=2)
    no_g = run_kernel(method, 5, 0.3, P, y, off, Pq, yq, qoff, w0, a, n_threads=2, with_g=False)
    for x1, x2 in zip(one, two):
        np.testing.assert_array_equal(x1, x2)
    for x1, x3 in zip(one[:3], no_g[:3]):
        np.testing.assert_array_equal(x1, x3)
    assert np.isfinite(one[3]).all() and np.isfinite(one[4]).all()  # every row written


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adapt_tasks_matches_numpy(method, dtype):
    rng = np.random.default_rng(2)
    sizes = [0, 1, 9, 4]
    P, y, off, *_ = make_batch(rng, sizes, sizes, 7, dtype)
    w0, a = rng.standard_normal(7), rng.uniform(0.2, 0.6, 7)
    W = np.empty((4, 7), dtype)
    status = np.empty(4, np.intc)
    K.adapt_tasks(METHODS[method], 3, 0.5, P, y, off, w0.astype(dtype), a.astype(dtype), W, status, 2)
    assert (status == 0).all()
    for t in range(4):
        s = slice(off[t], off[t + 1])
        ref = inner_solution(method, 3, 0.5, P[s].astype(np.float64), y[s].astype(np.float64), w0, a)
        np.testing.assert_allclose(W[t], ref, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5)


def test_bad_shapes_and_method_are_rejected():
    rng = np.random.default_rng(0)
    P, y, off, Pq, yq, qoff = make_batch(rng, [2, 3], [1, 1], 3)
    w0 = np.zeros(3)
    with pytest.raises(ValueError, match="method"):
        K.meta_grad(
            9,
            1,
            0.0,
            P,
            y,
            off,
            Pq,
            yq,
            qoff,
            w0,
            w0,
            np.empty(2),
            np.empty((2, 3)),
            np.empty((2, 3)),
            np.empty((0, 3)),
            np.empty((0, 3)),
            np.empty(2, np.intc),
            1,
        )
    with pytest.raises(ValueError, match="inner rows"):
        K.meta_grad(
            0,
            1,
            0.0,
            P,
            y[:-1],
            off,
            Pq,
            yq,
            qoff,
            w0,
            w0,
            np.empty(2),
            np.empty((2, 3)),
            np.empty((2, 3)),
            np.empty((0, 3)),
            np.empty((0, 3)),
            np.empty(2, np.intc),
            1,
        )
