"""metafast._kernels._ridge against plain numpy (float32 and float64, ragged tasks incl. n = 0, 1,
n < m, n = m, n > m), leave-one-out against an explicit loop, every gradient against central
finite differences, and thread-count invariance."""

import numpy as np
import pytest

from metafast._kernels import _ridge

SIZES = [1, 3, 7, 0, 12, 2, 20, 5]  # with m = 7: n < m, n = m, n > m, empty, single point
TOL = {np.float64: 1e-9, np.float32: 2e-3}


def packed(rng, sizes, m, dtype=np.float64, scale=1.0):
    off = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    Phi = (rng.normal(size=(off[-1], m)) * scale).astype(dtype)
    y = rng.normal(size=off[-1]).astype(dtype)
    return Phi, y, off


def ref_weights(P, y, h, s, lam):
    """argmin ||P w - y||^2 + lam (w - h)^T D^{-1} (w - h), D = diag(s^2), by np.linalg.solve."""
    Dinv = np.diag(1 / s**2)
    return np.linalg.solve(P.T @ P + lam * Dinv, P.T @ y + lam * Dinv @ h)


def ref_loo(P, y, h, s, lam):
    """Explicit leave-one-out loop."""
    n = len(y)
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        out[i] = y[i] - P[i] @ ref_weights(P[keep], y[keep], h, s, lam)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solve_tasks_matches_primal_solve_and_loo_loop(rng, dtype):
    m = 7
    Phi, y, off = packed(rng, SIZES, m, dtype)
    h = rng.normal(size=m).astype(dtype)
    s = rng.uniform(0.5, 2, size=m).astype(dtype)
    lam = 0.7
    W = np.empty((len(SIZES), m), dtype=dtype)
    loo = np.empty(off[-1], dtype=dtype)
    assert _ridge.solve_tasks(Phi, y, off, h, s, lam, W, loo, 2) == 0
    P64, y64, h64, s64 = (a.astype(np.float64) for a in (Phi, y, h, s))
    for t, n in enumerate(SIZES):
        rows = slice(off[t], off[t + 1])
        w_ref = ref_weights(P64[rows], y64[rows], h64, s64, lam)
        np.testing.assert_allclose(W[t], w_ref, rtol=TOL[dtype], atol=TOL[dtype])
        if n:
            np.testing.assert_allclose(
                loo[rows], ref_loo(P64[rows], y64[rows], h64, s64, lam), rtol=10 * TOL[dtype], atol=10 * TOL[dtype]
            )


def test_dual_equals_primal_and_woodbury(rng):
    """n < m runs the dual n x n solve; it equals both the primal solve and the Woodbury form."""
    n, m = 4, 9
    P = rng.normal(size=(n, m))
    y = rng.normal(size=n)
    h = rng.normal(size=m)
    lam = 0.3
    W = np.empty((1, m))
    _ridge.solve_tasks(P, y, np.array([0, n]), h, np.ones(m), lam, W, np.empty(0), 1)
    dual = h + P.T @ np.linalg.solve(P @ P.T + lam * np.eye(n), y - P @ h)
    np.testing.assert_allclose(W[0], dual, rtol=1e-10)
    np.testing.assert_allclose(W[0], ref_weights(P, y, h, np.ones(m), lam), rtol=1e-10)


def test_adapt_predict_one_call(rng):
    m = 6
    for n in (1, 4, 6, 11):
        P = rng.normal(size=(n, m))
        y = rng.normal(size=n)
        h = rng.normal(size=m)
        s = rng.uniform(0.5, 1.5, size=m)
        Pq = rng.normal(size=(5, m))
        w = np.empty(m)
        pred = np.empty(5)
        _ridge.adapt_predict(P, y, h, s, 0.4, w, Pq, pred)
        np.testing.assert_allclose(w, ref_weights(P, y, h, s, 0.4), rtol=1e-10)
        np.testing.assert_allclose(pred, Pq @ w, rtol=1e-12)
    w = np.empty(m)  # no support points: the prior mean
    _ridge.adapt_predict(np.empty((0, m)), np.empty(0), h, s, 0.4, w, np.empty((0, m)), np.empty(0))
    np.testing.assert_array_equal(w, h)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_meta_stats_against_numpy(rng, dtype):
    m = 7
    Phi, y, off = packed(rng, SIZES * 3, m, dtype)
    s = rng.uniform(0.5, 2, size=m)
    lam = 0.7
    D = np.diag(s**2)
    M = np.zeros((m, m))
    b = np.zeros(m)
    Q = np.zeros((m, m))
    q = np.zeros(m)
    sq = 0.0
    P64, y64 = Phi.astype(np.float64), y.astype(np.float64)
    for t in range(len(off) - 1):
        P, yt = P64[off[t] : off[t + 1]], y64[off[t] : off[t + 1]]
        n = len(yt)
        if n == 0:
            continue
        G = np.linalg.inv(P @ D @ P.T + lam * np.eye(n))
        M += P.T @ G @ P
        b += P.T @ G @ yt
        E = G / np.diag(G)[:, None]  # LOO residuals at prior mean h: E (y - P h)
        F, f = E @ P, E @ yt
        Q += F.T @ F / n
        q += F.T @ f / n
        sq += f @ f / n
    out = [np.empty((m, m), dtype), np.empty(m, dtype), np.empty((m, m), dtype), np.empty(m, dtype), np.empty(1, dtype)]
    _ridge.meta_stats(Phi, y, off, s.astype(dtype), lam, *out, 2)
    scale = np.abs(M).max()
    for got, ref in zip(out, (M, b, Q, q, np.array([sq]))):
        np.testing.assert_allclose(got, ref, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * scale)


def test_loo_quadratic_gives_loo_residuals(rng):
    """sq - 2 q.h + h.Q.h equals the sum over tasks of the mean squared LOO residual at h."""
    m = 5
    Phi, y, off = packed(rng, [1, 4, 9, 2], m)
    h = rng.normal(size=m)
    s = np.ones(m)
    lam = 1.3
    M, b, Q, q, sq = np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)
    _ridge.meta_stats(Phi, y, off, s, lam, M, b, Q, q, sq, 1)
    loo = np.empty(off[-1])
    W = np.empty((4, m))
    _ridge.solve_tasks(Phi, y, off, h, s, lam, W, loo, 1)
    ref = sum(np.mean(loo[off[t] : off[t + 1]] ** 2) for t in range(4))
    np.testing.assert_allclose(sq[0] - 2 * q @ h + h @ Q @ h, ref, rtol=1e-10)


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += eps
        xm = x.copy()
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_heldout_gradients_finite_differences(rng):
    m = 6
    sizes, qsizes = [1, 3, 6, 9, 2, 0], [4, 0, 5, 3, 1, 2]
    Phi, y, off = packed(rng, sizes, m)
    Pq, yq, qoff = packed(rng, qsizes, m)
    h = rng.normal(size=m)
    s = rng.uniform(0.5, 2, size=m)
    lam = 0.7
    T = len(sizes)

    def run(Phi_, Pq_, h_, lam_, s_=s):
        G = np.empty_like(Phi_)
        Gq = np.empty_like(Pq_)
        loss, dl, dh = np.empty(T), np.empty(T), np.empty((T, m))
        _ridge.heldout_grad(Phi_, y, off, Pq_, yq, qoff, h_, s_, lam_, 1 / T, G, Gq, loss, dl, dh, 1)
        return loss.sum(), G, Gq, dl.sum(), dh.sum(0)

    L, G, Gq, dl, dh = run(Phi, Pq, h, lam)
    # the loss itself: mean over tasks of the query MSE of the biased ridge weights
    ref = 0.0
    for t in range(T):
        if qsizes[t]:
            w = ref_weights(Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]], h, s, lam)
            ref += np.mean((Pq[qoff[t] : qoff[t + 1]] @ w - yq[qoff[t] : qoff[t + 1]]) ** 2) / T
    np.testing.assert_allclose(L, ref, rtol=1e-10)
    np.testing.assert_allclose(G, _fd(lambda P: run(P, Pq, h, lam)[0], Phi), atol=1e-7)
    np.testing.assert_allclose(Gq, _fd(lambda P: run(Phi, P, h, lam)[0], Pq), atol=1e-7)
    np.testing.assert_allclose(dh, _fd(lambda v: run(Phi, Pq, v, lam)[0], h), atol=1e-7)
    np.testing.assert_allclose(dl, _fd(lambda v: run(Phi, Pq, h, v[0])[0], np.array([lam])), atol=1e-7)


def test_loo_gradients_finite_differences(rng):
    m = 6
    sizes = [1, 3, 6, 9, 2, 0]
    Phi, y, off = packed(rng, sizes, m)
    h = rng.normal(size=m)
    s = rng.uniform(0.5, 2, size=m)
    lam = 0.7
    T = len(sizes)

    def run(Phi_, h_, lam_):
        G = np.empty_like(Phi_)
        loss, dl, dh = np.empty(T), np.empty(T), np.empty((T, m))
        _ridge.loo_grad(Phi_, y, off, h_, s, lam_, 1 / T, G, loss, dl, dh, 1)
        return loss.sum(), G, dl.sum(), dh.sum(0)

    L, G, dl, dh = run(Phi, h, lam)
    ref = sum(
        np.mean(ref_loo(Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]], h, s, lam) ** 2) / T
        for t in range(T)
        if sizes[t]
    )
    np.testing.assert_allclose(L, ref, rtol=1e-10)
    np.testing.assert_allclose(G, _fd(lambda P: run(P, h, lam)[0], Phi), atol=1e-7)
    np.testing.assert_allclose(dh, _fd(lambda v: run(Phi, v, lam)[0], h), atol=1e-7)
    np.testing.assert_allclose(dl, _fd(lambda v: run(Phi, h, v[0])[0], np.array([lam])), atol=1e-7)


def test_envelope_value_and_metric_gradient(rng):
    m = 5
    Phi, y, off = packed(rng, [2, 4, 7, 1], m)
    h = rng.normal(size=m)
    lam = 0.9
    d = rng.uniform(0.3, 2, size=m)

    def run(dv):
        v, dd = np.empty(4), np.empty((4, m))
        _ridge.envelope_grad(Phi, y, off, h, np.sqrt(dv), lam, v, dd, 1)
        return v.sum(), dd.sum(0)

    val, grad = run(d)
    ref = 0.0
    for t in range(4):
        P, yt = Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]]
        r = yt - P @ h
        ref += r @ np.linalg.solve(P @ np.diag(d) @ P.T + lam * np.eye(len(yt)), r)
    np.testing.assert_allclose(val, ref, rtol=1e-10)
    np.testing.assert_allclose(grad, _fd(lambda v: run(v)[0], d), atol=1e-7)


def test_thread_count_invariance(rng):
    m = 9
    sizes = list(rng.integers(0, 25, size=700))
    Phi, y, off = packed(rng, sizes, m)
    s = rng.uniform(0.5, 2, size=m)
    h = rng.normal(size=m)
    outs = []
    for nt in (1, 2, 3):
        M, b, Q, q, sq = np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)
        _ridge.meta_stats(Phi, y, off, s, 0.5, M, b, Q, q, sq, nt)
        W, loo = np.empty((len(sizes), m)), np.empty(off[-1])
        _ridge.solve_tasks(Phi, y, off, h, s, 0.5, W, loo, nt)
        outs.append((M, b, Q, q, sq, W, loo))
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_array_equal(a, c)


def test_ill_conditioned_tasks_stay_finite(rng):
    """Duplicate rows, constant y, huge feature scale, tiny lam (float32): finite and correct."""
    m = 6
    P = np.repeat(rng.normal(size=(1, m)), 5, axis=0)  # five identical points
    y = np.full(5, 3.0)
    for dtype, lam in ((np.float64, 1e-12), (np.float32, 1e-9)):
        Pc, yc = P.astype(dtype), y.astype(dtype)
        W = np.empty((1, m), dtype)
        loo = np.empty(5, dtype)
        _ridge.solve_tasks(Pc, yc, np.array([0, 5]), np.zeros(m, dtype), np.ones(m, dtype), lam, W, loo, 1)
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(loo))
        np.testing.assert_allclose(P @ W[0].astype(np.float64), y, rtol=1e-3)
    big = rng.normal(size=(30, m)) * 1e6
    yb = rng.normal(size=30) * 1e6
    W = np.empty((1, m))
    loo = np.empty(30)
    _ridge.solve_tasks(big, yb, np.array([0, 30]), np.zeros(m), np.ones(m), 1e-3, W, loo, 1)
    np.testing.assert_allclose(W[0], np.linalg.lstsq(big, yb, rcond=None)[0], rtol=1e-6)
    assert np.all(np.isfinite(loo))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    m=st.integers(1, 9),
    lam=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_solve_tasks_property(sizes, m, lam, seed):
    rng = np.random.default_rng(seed)
    Phi, y, off = packed(rng, sizes, m)
    h = rng.normal(size=m)
    s = rng.uniform(0.2, 3, size=m)
    W = np.empty((len(sizes), m))
    _ridge.solve_tasks(Phi, y, off, h, s, lam, W, np.empty(0), 1)
    for t in range(len(sizes)):
        ref = ref_weights(Phi[off[t] : off[t + 1]], y[off[t] : off[t + 1]], h, s, lam)
        np.testing.assert_allclose(W[t], ref, rtol=1e-7, atol=1e-7 * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_stats_against_numpy(rng, dtype):
    """Transfer-risk statistics: w_t(h) = A_t h + c_t, M_t = Phi_q A_t, z_t = y_q - Phi_q c_t."""
    m = 6
    sizes, qsizes = [1, 3, 6, 9, 2, 0, 4], [4, 0, 5, 3, 1, 2, 3]
    Phi, y, off = packed(rng, sizes, m, dtype)
    Pq, yq, qoff = packed(rng, qsizes, m, dtype)
    s = rng.uniform(0.5, 2, size=m)
    lam = 0.7
    D = np.diag(s**2)
    A = np.zeros((m, m))
    b = np.zeros(m)
    c = 0.0
    for t in range(len(sizes)):
        P, yt = Phi[off[t] : off[t + 1]].astype(float), y[off[t] : off[t + 1]].astype(float)
        Q, ytq = Pq[qoff[t] : qoff[t + 1]].astype(float), yq[qoff[t] : qoff[t + 1]].astype(float)
        if not len(ytq):
            continue
        G = np.linalg.inv(P @ D @ P.T + lam * np.eye(len(yt)))
        At, ct = np.eye(m) - D @ P.T @ G @ P, D @ P.T @ G @ yt
        M, z = Q @ At, ytq - Q @ ct
        A += M.T @ M / len(ytq)
        b += M.T @ z / len(ytq)
        c += z @ z / len(ytq)
    out = np.empty((m, m), dtype), np.empty(m, dtype), np.empty(1, dtype)
    _ridge.split_stats(Phi, y, off, Pq, yq, qoff, s.astype(dtype), lam, *out, 2)
    for got, ref in zip(out, (A, b, np.array([c]))):
        np.testing.assert_allclose(got, ref, rtol=10 * TOL[dtype], atol=10 * TOL[dtype] * np.abs(A).max())


def _ref_stats_primal(P, y, s, lam):
    """One task's (M, b, Q, q, sq) terms of meta_stats in the primal form (no n x n matrix):
    G = (I - Psi A^-1 Psi^T) / lam with Psi = P S and A = Psi^T Psi + lam I, and the LOO rows
    G P / diag(G), G y / diag(G) scaled by 1 / sqrt(n)."""
    n = len(y)
    Psi = P * s
    A = Psi.T @ Psi + lam * np.eye(P.shape[1])
    V = np.linalg.solve(A, Psi.T)  # A^-1 Psi^T (m, n)
    GP = (P - Psi @ (V @ P)) / lam
    Gy = (y - Psi @ (V @ y)) / lam
    diag = (1 - np.einsum("ij,ji->i", Psi, V)) / lam
    F, f = GP / diag[:, None] / np.sqrt(n), Gy / diag / np.sqrt(n)
    return P.T @ GP, P.T @ Gy, F.T @ F, F.T @ f, f @ f


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_meta_stats_reads_tasks_larger_than_a_row_block_in_blocks(rng, dtype):
    """Tasks of more than ROW_BLOCK (4096) rows take the streamed primal path (D16: a task of
    1,000,000 rows asked for an n x n scratch); it gives the numpy statistics, with small tasks
    in the same blocks, whatever the thread count."""
    m = 6
    sizes = [3, 9001, 5, 4097, 0, 12, 4096]
    Phi, y, off = packed(rng, sizes, m, dtype)
    s = rng.uniform(0.5, 2, size=m)
    lam = 0.7
    P64, y64 = Phi.astype(np.float64), y.astype(np.float64)
    ref = [np.zeros((m, m)), np.zeros(m), np.zeros((m, m)), np.zeros(m), np.zeros(1)]
    for t, n in enumerate(sizes):
        if n:
            for acc, term in zip(ref, _ref_stats_primal(P64[off[t] : off[t + 1]], y64[off[t] : off[t + 1]], s, lam)):
                acc += term
    outs = []
    for nt in (1, 2):
        out = [
            np.empty((m, m), dtype),
            np.empty(m, dtype),
            np.empty((m, m), dtype),
            np.empty(m, dtype),
            np.empty(1, dtype),
        ]
        _ridge.meta_stats(Phi, y, off, s.astype(dtype), lam, *out, nt)
        outs.append(out)
    for got, want in zip(outs[0], ref):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * scale)
    for a, c in zip(*outs):
        np.testing.assert_array_equal(a, c)


def test_meta_stats_scratch_does_not_grow_with_a_task_of_a_million_rows(rng):
    """D16: one task of 1,000,000 rows asked for an n x n scratch (8 TB: 'could not allocate the
    scratch of meta_stats'); its rows are now read in blocks, and it gives the numpy statistics."""
    from metafast.parallel import one_blas_thread

    n, m = 1_000_000, 3
    Phi, y, off = packed(rng, [n], m)
    s = np.ones(m)
    out = [np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)]
    with one_blas_thread():
        _ridge.meta_stats(Phi, y, off, s, 0.5, *out, 1)
    # M and b are differences of sums over a million rows (Phi^T Phi ~ 1e6): compare at that scale
    for got, want in zip(out, _ref_stats_primal(Phi, y, s, 0.5)):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9 * n)


def test_a_failed_scratch_allocation_names_its_size_and_what_to_change():
    msg = _ridge._scratch_error("meta_stats", 8, 3 * 2**20, 2, 2**20, "fewer basis functions")
    assert "meta_stats: 24.0 MiB per thread x 2 thread(s) + 8.0 MiB for a block of tasks" in msg
    assert msg.endswith("use fewer basis functions")
