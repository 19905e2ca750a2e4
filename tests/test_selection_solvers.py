"""Solver pieces behind BasisSelector: covariance-mode group lasso, working sets, the one-SE
rule, ARD's posterior variances (each against a plain-numpy or scikit-learn reference)."""

import numpy as np
import pytest
from sklearn.linear_model import MultiTaskLasso

import metafast as mf
from metafast._kernels import _group_lasso
from metafast.learners.select import _solvers as solvers
from metafast.learners.select.estimator import BasisSelector


def _shared(n=23, m=31, T=7, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    X[:, 3] = 0.0  # an all-zero column
    W = np.zeros((m, T))
    W[[0, 5, 9, 20]] = rng.standard_normal((4, T))
    Y = X @ W + noise * rng.standard_normal((n, T))
    return X, Y


def _packed(X, Y):
    n, T = Y.shape
    return solvers.Packed(np.ascontiguousarray(np.tile(X.T, (1, T))), Y.T.ravel(), np.arange(T + 1, dtype=np.int64) * n)


def _gram_sweep_reference(G, W, H, lam):
    """One cyclic sweep of the closed-form block updates, in plain numpy."""
    W, H = W.copy(), H.copy()
    for j in range(W.shape[0]):
        a = H[j] + G[j, j] * W[j]
        na = np.linalg.norm(a)
        new = a * (1 - lam / na) / G[j, j] if G[j, j] > 0 and na > lam else np.zeros_like(a)
        H -= np.outer(G[:, j], new - W[j])
        W[j] = new
    return W, H


@pytest.mark.parametrize("A,T", [(1, 1), (5, 3), (9, 13)])
def test_gram_bcd_sweep_matches_numpy(A, T):
    rng = np.random.default_rng(A * 10 + T)
    X = rng.standard_normal((11, A))
    if A > 2:
        X[:, 1] = 0.0  # zero column: G_jj = 0, no division
    G = X.T @ X / 11
    Y = rng.standard_normal((11, T))
    W0 = rng.standard_normal((A, T)) * 0.1
    W0[min(1, A - 1)] = 0.0
    H0 = X.T @ (Y - X @ W0) / 11
    lam = 0.3 * np.sqrt((H0**2).sum(1)).max()
    W, H = W0.copy(), H0.copy()
    done, _, _ = _group_lasso.gram_bcd_sweeps(G, W, H, lam, 1, 0.0)
    W_ref, H_ref = _gram_sweep_reference(G, W0, H0, lam)
    assert done == 1
    np.testing.assert_allclose(W, W_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, H_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(H, X.T @ (Y - X @ W) / 11, atol=1e-12)  # H stays consistent


def test_shared_design_is_detected_only_when_every_task_has_the_same_rows():
    X, Y = _shared()
    assert _packed(X, Y).shared_design()
    p = _packed(X, Y)
    p.PhiT[2, 23 * 4 + 5] += 1e-9  # one entry of task 4 differs
    assert not p.shared_design()
    uneven = solvers.Packed(
        np.ascontiguousarray(np.tile(X.T, (1, 2))[:, :40]),
        Y[:, :2].T.ravel()[:40],
        np.array([0, 23, 40], dtype=np.int64),
    )
    assert not uneven.shared_design()


def test_covariance_mode_equals_per_task_mode_and_sklearn_along_a_path():
    X, Y = _shared()
    n = X.shape[0]
    shared = solvers.GroupLasso.shared_design(X, Y)
    detected = solvers.GroupLasso(_packed(X, Y))
    generic_packed = _packed(X, Y)
    generic_packed._shared = False  # force the per-task solver
    generic = solvers.GroupLasso(generic_packed)
    assert shared.shared and detected.shared and not generic.shared
    assert shared.alpha_max == pytest.approx(generic.alpha_max, rel=1e-12)
    sk = MultiTaskLasso(fit_intercept=False, warm_start=True, tol=1e-14, max_iter=200_000)
    prev = None
    for lam in shared.alpha_max * np.geomspace(0.9, 0.01, 8):
        for gl in (shared, detected, generic):
            assert gl.solve(lam, prev, 1e-13, 100_000)["converged"]
        prev = lam
        sk.set_params(alpha=lam).fit(X, Y)
        R = Y - X @ sk.coef_.T
        ref = 0.5 * (R**2).sum() / n + lam * np.linalg.norm(sk.coef_, axis=0).sum()
        for gl in (shared, detected, generic):
            assert gl.objective(lam) == pytest.approx(ref, rel=1e-9)
            np.testing.assert_allclose(gl.W, sk.coef_.T, atol=1e-6)
        # KKT in covariance mode: c_j = lam w_j / ||w_j|| on the support, ||c_j|| <= lam off it
        C = X.T @ (Y - X @ shared.W) / n
        norms = np.linalg.norm(shared.W, axis=1)
        for j in range(X.shape[1]):
            if norms[j] > 0:
                np.testing.assert_allclose(C[j], lam * shared.W[j] / norms[j], atol=1e-6 * lam)
            else:
                assert np.linalg.norm(C[j]) <= lam * (1 + 1e-8)
        assert np.all(shared.W[3] == 0)


def test_working_set_stays_small_on_a_sparse_problem():
    X, Y = _shared(n=60, m=300, T=5)
    gl = solvers.GroupLasso.shared_design(X, Y)
    stats = gl.solve(0.2 * gl.alpha_max, None, 1e-10, 10_000)
    assert stats["converged"] and stats["working_set"] < 60


def test_shared_design_rejects_mismatched_rows():
    X, Y = _shared()
    with pytest.raises(ValueError, match="'X'"):
        solvers.GroupLasso.shared_design(X[:-1], Y)


def test_one_se_rule_takes_the_fewest_columns_within_one_se():
    path = [
        {"n_selected": 0, "val_mse": 9.0, "val_se": 0.1},
        {"n_selected": 3, "val_mse": 1.25, "val_se": 0.1},
        {"n_selected": 5, "val_mse": 1.15, "val_se": 0.2},
        {"n_selected": 8, "val_mse": 1.0, "val_se": 0.2},
        {"n_selected": 12, "val_mse": 1.1, "val_se": 0.1},
    ]
    assert solvers.one_se_choice(path) == 2  # 1.15 <= 1.0 + 0.2 < 1.25
    path[3]["val_se"] = 0.3
    assert solvers.one_se_choice(path) == 1
    assert solvers.one_se_choice([{"n_selected": 0, "val_mse": 1.0, "val_se": 0.0}]) == -1


def test_median_with_se_is_reproducible_and_sane():
    e = np.random.default_rng(0).exponential(size=400)
    med, se = solvers.median_with_se(e)
    assert med == np.median(e) and 0 < se < 0.2
    assert solvers.median_with_se(e) == (med, se)
    assert solvers.median_with_se(np.array([2.0])) == (2.0, 0.0)


def test_ard_posterior_variance_matches_the_direct_posterior():
    D = mf.basis.make("rbf", n_basis=6, n_jobs=1).fit(np.linspace(-2, 2, 30)[:, None])
    rng = np.random.default_rng(1)
    tasks = mf.tasks.TaskSet.from_list(
        [
            mf.tasks.Task(
                rng.uniform(-2, 2, (n, 1)), rng.standard_normal(n), rng.uniform(-2, 2, (3, 1)), rng.standard_normal(3)
            )
            for n in (2, 5, 9)
        ]
    )
    v = np.array([0.5, 1e-6, 2.0, 0.0, 1.0, 0.3])
    post, power = solvers.ard_posterior_variance(D, [tasks], v, 0.05)
    ref_post, rows = np.zeros(6), []
    full = tasks.all_rows()
    for t in range(len(full)):
        Phi = D.design(full[t].X_support)
        rows.append(Phi)
        keep = v > 0  # v_j = 0: the posterior is the prior, 0
        S = np.zeros((6, 6))
        S[np.ix_(keep, keep)] = np.linalg.inv(Phi[:, keep].T @ Phi[:, keep] / 0.05 + np.diag(1 / v[keep]))
        ref_post += np.diag(S)
    np.testing.assert_allclose(post, ref_post / len(full), rtol=1e-7, atol=1e-12)
    allrows = np.vstack(rows)
    np.testing.assert_allclose(power, (allrows**2).mean(0), rtol=1e-12)


def _ard_tasks(D, support, n_tasks, seed):
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        Xs, Xq = rng.uniform(-np.pi, np.pi, (12, 1)), rng.uniform(-np.pi, np.pi, (6, 1))
        w = rng.standard_normal(support.size)
        f = lambda X: D.design(X)[:, support] @ w  # noqa: E731
        tasks.append(
            mf.tasks.Task(Xs, f(Xs) + 0.05 * rng.standard_normal(12), Xq, f(Xq) + 0.05 * rng.standard_normal(6))
        )
    return mf.tasks.TaskSet.from_list(tasks)


def test_ard_prunes_to_a_known_support_by_well_determinedness():
    D = mf.basis.make("fourier", n_basis=16, frequencies=np.arange(1.0, 9.0), include_constant=False, n_jobs=1).fit(
        np.linspace(-np.pi, np.pi, 50)[:, None]
    )
    support = np.array([0, 5, 11])
    sel = BasisSelector(D, method="ard", n_jobs=1, ard_params={"max_iter": 60}).fit(_ard_tasks(D, support, 200, 0))
    np.testing.assert_array_equal(np.sort(sel.support_), support)
    assert np.all(sel.scores_[support] > 0.9)
    others = np.setdiff1d(np.arange(D.n_basis), support)
    assert np.all(sel.scores_[others] < 0.2)
    assert [p["n_selected"] for p in sel.path_] == sorted(p["n_selected"] for p in sel.path_)


def test_empirical_bayes_refit_matches_the_direct_em_step():
    rng = np.random.default_rng(3)
    sizes = [3, 7, 7, 0, 12]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    m, N = 5, off[-1]
    PhiT = rng.standard_normal((m, N))
    y = rng.standard_normal(N)
    packed = solvers.Packed(PhiT, y, off)
    cols = np.array([4, 0, 2])
    mu, v, s2 = np.array([0.3, -0.1, 0.0]), np.array([0.8, 1e-3, 2.0]), 0.2
    eb = solvers.EmpiricalBayesRefit(packed, n_iter=1)
    eb.prior = {int(j): (a, b) for j, a, b in zip(cols, mu, v)}
    eb.s2 = s2
    M = eb.fit(cols)
    ref_M, ref_S, sq = [], [], 0.0
    for t in range(len(sizes)):
        Phi, yt = PhiT[cols, off[t] : off[t + 1]].T, y[off[t] : off[t + 1]]
        S = np.linalg.inv(Phi.T @ Phi / s2 + np.diag(1 / v))
        mt = S @ (Phi.T @ yt / s2 + mu / v)
        ref_M.append(mt)
        ref_S.append(np.diag(S))
        sq += np.sum((yt - Phi @ mt) ** 2) + np.trace(Phi @ S @ Phi.T)
    ref_M, ref_S = np.array(ref_M), np.array(ref_S)
    np.testing.assert_allclose(M, ref_M, rtol=1e-8, atol=1e-10)  # the empty task keeps the prior mean
    new_mu = ref_M.mean(0)
    new_v = ((ref_M - new_mu) ** 2 + ref_S).mean(0)
    np.testing.assert_allclose([eb.prior[int(j)][0] for j in cols], new_mu, rtol=1e-8)
    np.testing.assert_allclose([eb.prior[int(j)][1] for j in cols], new_v, rtol=1e-7)
    assert eb.s2 == pytest.approx(sq / N, rel=1e-8)


def test_adaptive_stage_keeps_a_subset_of_the_first_stage(D_small, tasks_small):
    sel = BasisSelector(D_small, n_jobs=1).fit(tasks_small)
    first = BasisSelector(D_small, n_jobs=1, adaptive=False).fit(tasks_small)
    assert [p["alpha"] for p in sel.first_stage_path_] == [p["alpha"] for p in first.path_]
    chosen = first.path_[[p["alpha"] for p in first.path_].index(first.alpha_)]
    assert sel.support_.size <= chosen["n_selected"]
    for rule in ("min", "one-se"):
        for refit in ("bayes", "lstsq"):
            for method in ("group-lasso", "somp"):
                s = BasisSelector(D_small, method=method, rule=rule, refit=refit, n_jobs=1).fit(tasks_small)
                assert s.support_.size >= 1 and np.all(np.isfinite(s.scores_))


def test_bad_rule_and_refit_name_the_parameter(D_small, tasks_small):
    with pytest.raises(ValueError, match="'rule'"):
        BasisSelector(D_small, rule="best").fit(tasks_small)
    with pytest.raises(ValueError, match="'refit'"):
        BasisSelector(D_small, refit="ols").fit(tasks_small)


@pytest.fixture(scope="module")
def D_small():
    return mf.basis.make("fourier", n_basis=12, frequencies=np.arange(1.0, 7.0), include_constant=False, n_jobs=1).fit(
        np.linspace(-np.pi, np.pi, 50)[:, None]
    )


@pytest.fixture(scope="module")
def tasks_small(D_small):
    return _ard_tasks(D_small, np.array([0, 3, 8]), 60, 2)


@pytest.mark.parametrize("shared", [True, False])
def test_warm_start_sets_residuals_and_correlations(shared):
    X, Y = _shared()
    packed = _packed(X, Y)
    packed._shared = shared
    gl = solvers.GroupLasso(packed)
    W = np.zeros_like(gl.W)
    W[[0, 9]] = np.random.default_rng(4).standard_normal((2, Y.shape[1]))
    gl.warm_start(W)
    R = Y - X @ W
    np.testing.assert_allclose(gl.R, R.T.ravel(), atol=1e-12)
    np.testing.assert_allclose(gl.norms, np.linalg.norm(X.T @ R / X.shape[0], axis=1), atol=1e-12)
    lam = 0.1 * gl.alpha_max
    assert gl.objective(lam) == pytest.approx(
        0.5 * (R**2).sum() / X.shape[0] + lam * np.linalg.norm(W, axis=1).sum(), rel=1e-12
    )
