"""BasisSelector: group lasso (vs scikit-learn, KKT), SOMP, ARD, streams, honesty, bad input."""

import numpy as np
import pytest
from sklearn.linear_model import MultiTaskLasso

import metafast as mf
from metafast._kernels import _group_lasso
from metafast.bench.selection import SelectThenFit, support_recovery
from metafast.learners.select import _solvers as solvers
from metafast.learners.select.estimator import BasisSelector
from metafast.tasks import TaskSet

TRUE = np.array([1, 6, 13, 22])


def _dictionary():
    """Legendre 3 + Fourier at 1..10 rad on [-pi, pi] (nearly orthogonal columns): 23 columns."""
    return mf.basis.union(
        [
            mf.basis.make("polynomial", n_basis=3, n_jobs=1),
            mf.basis.make("fourier", n_basis=20, frequencies=np.arange(1.0, 11.0), include_constant=False, n_jobs=1),
        ]
    ).fit(np.linspace(-np.pi, np.pi, 50)[:, None])


def _tasks(D, n_tasks=150, n_support=15, n_query=10, seed=0, noise=0.05, sizes=None):
    rng = np.random.default_rng(seed)
    tasks = []
    for t in range(n_tasks):
        ns = n_support if sizes is None else sizes[t % len(sizes)]
        Xs = rng.uniform(-np.pi, np.pi, (ns, 1))
        Xq = rng.uniform(-np.pi, np.pi, (n_query, 1))
        w = rng.standard_normal(TRUE.size)
        f = lambda X: D.design(X)[:, TRUE] @ w  # noqa: E731
        tasks.append(
            mf.tasks.Task(Xs, f(Xs) + noise * rng.standard_normal(ns), Xq, f(Xq) + noise * rng.standard_normal(n_query))
        )
    return TaskSet.from_list(tasks)


@pytest.fixture(scope="module")
def D():
    return _dictionary()


@pytest.fixture(scope="module")
def tasks(D):
    return _tasks(D)


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_task_correlations_match_numpy(dtype):
    rng = np.random.default_rng(0)
    off = np.array([0, 3, 3, 10, 17], dtype=np.int64)
    PhiT = rng.standard_normal((7, 17)).astype(dtype)
    r = rng.standard_normal(17)
    scale = np.array([0.5, 0.0, 2.0, 1.0])
    out = np.empty((7, 4))
    _group_lasso.task_correlations(PhiT, r, off, scale, out, 2)
    ref = np.stack(
        [PhiT[:, off[t] : off[t + 1]].astype(np.float64) @ r[off[t] : off[t + 1]] * scale[t] for t in range(4)], axis=1
    )
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def _shared_x_problem(dtype, n=25, m=11, T=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    X[:, 4] = 0.0  # an all-zero column
    X[:, 7] = 1.0  # a constant column
    Wt = np.zeros((m, T))
    Wt[[0, 2, 7]] = rng.standard_normal((3, T))
    Y = X @ Wt + 0.1 * rng.standard_normal((n, T))
    PhiT = np.ascontiguousarray(np.tile(X.T, (1, T))).astype(dtype)
    packed = solvers.Packed(PhiT, Y.T.ravel(), np.arange(T + 1, dtype=np.int64) * n)
    return X, Y, packed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ratio", [0.6, 0.2, 0.03])
def test_group_lasso_equals_multitask_lasso_on_a_shared_design(dtype, ratio):
    # sum_t 1/(2n) ||y_t - X w_t||^2 + lam sum_j ||W_j||  ==  sklearn's (1/(2n))||Y - XW||_F^2 + alpha ||W||_21
    X, Y, packed = _shared_x_problem(dtype)
    gl = solvers.GroupLasso(packed)
    lam = ratio * gl.alpha_max
    stats = gl.solve(lam, None, 1e-12, 10_000)
    assert stats["converged"] and np.all(np.isfinite(gl.W))
    sk = MultiTaskLasso(alpha=lam, fit_intercept=False, tol=1e-14, max_iter=200_000).fit(
        X.astype(dtype).astype(np.float64), Y
    )
    tol = 1e-4 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(gl.W, sk.coef_.T, atol=tol)
    assert np.all(gl.W[4] == 0)


def _kkt(packed, W, lam):
    R = packed.y - packed.predict(W, np.arange(W.shape[0]))
    C = packed.correlations(R, per_row_mean=True)
    norms = np.linalg.norm(W, axis=1)
    for j in range(W.shape[0]):
        if norms[j] > 0:  # gradient condition: c_j = lam * w_j / ||w_j||
            np.testing.assert_allclose(C[j], lam * W[j] / norms[j], atol=1e-6 * max(lam, 1))
        else:
            assert np.linalg.norm(C[j]) <= lam * (1 + 1e-6)


def test_group_lasso_kkt_with_task_specific_designs(D):
    ts = _tasks(D, n_tasks=40, sizes=[4, 9, 15, 30])  # tasks of different sizes, fewer rows than columns
    packed = solvers.pack(D, ts.X_support, ts.y_support, ts.support_offsets, None, 1)
    gl = solvers.GroupLasso(packed)
    prev = None
    for lam in gl.alpha_max * np.array([0.5, 0.1, 0.02]):
        assert gl.solve(lam, prev, 1e-12, 20_000)["converged"]
        prev = lam
        _kkt(packed, gl.W, lam)
        obj = gl.objective(lam)
        for j in np.flatnonzero(np.linalg.norm(gl.W, axis=1)):  # no single-block move lowers it
            saved = gl.W[j].copy()
            for scale in (0.99, 1.01):
                gl.W[j] = saved * scale
                gl.R = packed.y - packed.predict(gl.W, np.arange(gl.W.shape[0]))
                assert gl.objective(lam) >= obj - 1e-10
            gl.W[j] = saved
        gl.R = packed.y - packed.predict(gl.W, np.arange(gl.W.shape[0]))


def test_group_lasso_result_does_not_depend_on_threads():
    _, _, packed = _shared_x_problem(np.float64, T=9)
    results = []
    for threads in (1, 2):
        packed.n_threads = threads
        gl = solvers.GroupLasso(packed)
        gl.solve(0.1 * gl.alpha_max, None, 1e-10, 5000)
        results.append(gl.W.copy())
    np.testing.assert_array_equal(results[0], results[1])


# ---------------------------------------------------------------------- the estimator
@pytest.mark.parametrize("method", ["group-lasso", "somp", "ard"])
def test_every_method_recovers_the_support(D, tasks, method):
    sel = BasisSelector(D, method=method, n_jobs=1, ard_params={"max_iter": 100}).fit(tasks)
    scores = support_recovery(sel.support_, TRUE)
    assert scores["f1"] == 1.0, (method, sorted(sel.support_), sel.path_)
    assert sel.scores_.shape == (D.n_basis,)
    assert np.all(np.diff(sel.scores_[sel.support_]) <= 0)  # importance order
    assert sel.selected_basis_.n_basis == TRUE.size
    np.testing.assert_allclose(sel.selected_basis_.design(tasks.X_query), D.design(tasks.X_query)[:, TRUE])
    assert sel.selected_basis_.natively_restricted_
    assert list(sel.get_feature_names_out()) == list(D.get_feature_names_out()[sel.support_])


def test_group_lasso_path_records_validation(D, tasks):
    sel = BasisSelector(D, n_jobs=1).fit(tasks)
    alphas = [p["alpha"] for p in sel.path_]
    assert np.all(np.diff(alphas) < 0) and sel.path_[0]["n_selected"] == 0
    assert all(np.isfinite(p["val_mse"]) for p in sel.path_[1:])
    assert sel.alpha_ in alphas


def test_somp_first_pick_is_the_brute_force_argmax(D, tasks):
    sel = BasisSelector(D, method="somp", normalize=False, n_jobs=1).fit(tasks)
    best, arg = -1.0, None
    for j in range(D.n_basis):
        total = 0.0
        for t in range(len(tasks)):
            phi = D.design(tasks[t].X_support)[:, j]
            norm = np.linalg.norm(phi)
            if norm > 0:
                total += abs(phi @ tasks[t].y_support) / norm
        if total > best:
            best, arg = total, j
    assert sel.path_[0]["column"] == arg


def test_selected_basis_serves_the_learners_and_stays_honest(D, tasks):
    test = _tasks(D, n_tasks=40, seed=5)
    pipe = SelectThenFit(BasisSelector(method="somp", n_jobs=1), mf.MetaBayes(max_iter=50), basis=D)
    pipe.fit(tasks)
    # the selection is a function of the training tasks alone: the same as fitting on them directly
    direct = BasisSelector(D, method="somp", n_jobs=1).fit(tasks)
    np.testing.assert_array_equal(pipe.selector_.support_, direct.support_)
    before = pipe.selector_.support_.copy()
    first = pipe.evaluate(test)
    pipe.evaluate(_tasks(D, n_tasks=40, seed=6))
    np.testing.assert_array_equal(pipe.selector_.support_, before)  # evaluating never refits
    assert first["mse"] < 0.05
    ridge = mf.MetaRidge(basis=direct.selected_basis_).fit(tasks)
    assert ridge.evaluate(test)["mse"] < 0.05


def test_streams(D, tasks):
    chunks = [tasks.subset(slice(0, 70)), tasks.subset(slice(70, 150))]
    a = BasisSelector(D, n_jobs=1).fit(chunks)
    b = BasisSelector(D, n_jobs=1).fit(tasks)
    np.testing.assert_array_equal(a.support_, b.support_)
    c = BasisSelector(D, method="ard", n_jobs=1, ard_params={"max_iter": 100}).fit(chunks)
    assert support_recovery(c.support_, TRUE)["f1"] == 1.0
    with pytest.raises(TypeError, match="one-shot iterator"):
        BasisSelector(D, method="ard").fit(iter(chunks))
    one_shot = BasisSelector(D, n_jobs=1).fit(iter(chunks))  # group lasso: read once
    np.testing.assert_array_equal(one_shot.support_, b.support_)


def test_zero_and_constant_columns_do_not_divide_by_zero():
    D = mf.basis.union(
        [
            mf.basis.make("polynomial", n_basis=1, n_jobs=1),  # constant column
            mf.basis.make(
                "rbf",
                n_basis=6,
                centers=np.array([[-3.0], [-1.0], [0.0], [1.0], [3.0], [50.0]]),
                length_scale=0.5,
                n_jobs=1,
            ),
        ]
    ).fit(np.array([[-3.0], [3.0]]))
    # column 6 (centre 50) is zero on every row
    rng = np.random.default_rng(0)
    tasks = []
    for _ in range(30):
        X = rng.uniform(-3, 3, (12, 1))
        y = 2.0 + np.exp(-0.5 * ((X[:, 0] - 1) / 0.5) ** 2) * rng.standard_normal()
        tasks.append(mf.tasks.Task(X[:8], y[:8], X[8:], y[8:]))
    ts = TaskSet.from_list(tasks)
    for method in ("group-lasso", "somp"):
        with np.errstate(all="raise"):
            sel = BasisSelector(D, method=method, n_jobs=1).fit(ts)
        assert np.all(np.isfinite(sel.scores_)) and 6 not in set(sel.support_)


def test_bad_input(D, tasks):
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="'alpha' \\(lambda\\) must be a finite number > 0"):
            BasisSelector(D, alpha=bad).fit(tasks)
    with pytest.raises(ValueError, match="'alphas'"):
        BasisSelector(D, alphas=[1.0, -2.0]).fit(tasks)
    with pytest.raises(ValueError, match="'method'"):
        BasisSelector(D, method="lasso").fit(tasks)
    with pytest.raises(ValueError, match=r"selected no column \(smallest alpha tried: 1e\+06"):
        BasisSelector(D, alphas=[1e7, 1e6], n_jobs=1).fit(tasks)
    no_query = TaskSet(
        tasks.X_support,
        tasks.y_support,
        tasks.support_offsets,
        tasks.X_query[:0],
        tasks.y_query[:0],
        np.zeros_like(tasks.query_offsets),
    )
    with pytest.raises(ValueError, match="no task has query points.*fixed alpha="):
        BasisSelector(D).fit(no_query)
    fixed = BasisSelector(D, alpha=0.05, n_jobs=1).fit(no_query)  # a fixed alpha needs no split
    assert fixed.support_.size > 0
    with pytest.raises(TypeError, match="'tasks'"):
        BasisSelector(D).fit(np.zeros((3, 1)))


def test_selection_suite_is_registered_and_runs():
    from dataclasses import replace

    from metafast import bench

    suite = bench.get_suite("selection", quick=True)
    labels = {c.learner.label for c in suite.cases}
    assert {"group-lasso + MetaBayes(6)", "somp + MetaBayes(6)", "MetaBayes(6), hand-set bands"} <= labels
    case = next(c for c in suite.cases if c.learner.label.startswith("somp"))
    tiny = bench.Suite("selection", [replace(case, n_train=60, n_test=20, shots=10)])
    results = bench.run_suite(tiny, verbose=0)
    assert not results.failed()


def test_plot_selected_frequencies(tmp_path):
    pytest.importorskip("matplotlib")
    from metafast.bench.plots import plot_selected_frequencies

    train = mf.tasks.load("harmonic", n_tasks=60, n_support=10, n_query=10, seed=0)
    D = mf.basis.make("fourier", n_basis=40, frequencies=np.linspace(1, 20, 20), include_constant=False)
    sel = BasisSelector(D, n_jobs=1).fit(train)
    freqs = sel.basis_.frequencies_[np.unique(sel.support_ // 2)]
    assert np.all((freqs >= 4) & (freqs <= 16))  # the harmonic bands (5-7 and 10-14) and next to them
    assert np.any((freqs >= 5) & (freqs <= 7)) and np.any((freqs >= 10) & (freqs <= 14))
    path = plot_selected_frequencies(sel, tmp_path / "f", bands=((5, 7), (10, 14)))
    assert path.suffix == ".png" and path.stat().st_size > 0
    with pytest.raises(TypeError, match="Fourier dictionary"):
        plot_selected_frequencies(BasisSelector(_dictionary(), n_jobs=1).fit(_tasks(_dictionary(), 30)), tmp_path / "g")


@pytest.mark.slow
def test_demo_select_writes_the_frequency_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from metafast.cli import main

    assert main(["demo", "--quick", "-q", "--select", "--out", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d-selection.png").exists()


def test_params_and_clone(D):
    from sklearn.base import clone

    sel = BasisSelector(D, method="somp", patience=2)
    params = sel.get_params()
    assert params["method"] == "somp" and params["patience"] == 2
    copy = clone(sel)
    assert copy.basis is not sel.basis and copy.get_params()["patience"] == 2
    with pytest.raises(Exception, match="not fitted"):
        sel.get_support()


def test_float32_tasks_select_the_same_support(D, tasks):
    t32 = TaskSet(
        tasks.X_support.astype(np.float32),
        tasks.y_support.astype(np.float32),
        tasks.support_offsets,
        tasks.X_query.astype(np.float32),
        tasks.y_query.astype(np.float32),
        tasks.query_offsets,
    )
    a = BasisSelector(D, n_jobs=1).fit(t32)
    b = BasisSelector(D, n_jobs=1).fit(tasks)
    assert set(a.support_) == set(b.support_) == set(TRUE)
