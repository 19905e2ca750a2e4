"""The benchmark harness: baselines against brute force, CIs, skips, crash isolation, reports."""

import json
import sys

import numpy as np
import pytest
from _bench_helpers import Crashing, ToyBayes
from sklearn.linear_model import Ridge

import metafast as mf
from metafast import bench
from metafast.bench import (
    COLUMNS,
    Case,
    LearnerSpec,
    Oracle,
    PerTaskRidge,
    PooledRidge,
    Suite,
    Unavailable,
    metafast_learner,
    noise_free_target,
    plots,
    report,
    run_suite,
    suites,
)


def small_tasks(n_tasks=30, n_support=5, n_query=7, seed=0, noise=0.0):
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=n_support, n_query=n_query, seed=seed, noise=noise)


def spec(label, cls, kind="learner", **params):
    return LearnerSpec(label, lambda basis, case: cls(basis=basis, **params), kind)


def tiny_case(learner, shots=5, **kw):
    params = dict(n_train=40, n_test=25, n_query=6, basis=("rbf", {"n_basis": 12}))
    params.update(kw)
    return Case("sinusoid", shots, learner, **params)


# ---------------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("n_support", [1, 3, 12, 20])  # n = 1, n < m, n = m, n > m (m = 12)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_per_task_ridge_matches_sklearn_ridge_per_task(n_support, fit_intercept):
    train, test = small_tasks(seed=0), small_tasks(n_tasks=9, n_support=n_support, seed=1)
    model = PerTaskRidge(basis=mf.basis.make("rbf", n_basis=12), alpha=0.3, fit_intercept=fit_intercept).fit(train)
    mean, std = model._predict_tasks(test)
    assert std is None
    for i, t in enumerate(test):
        ref = Ridge(alpha=0.3, fit_intercept=fit_intercept).fit(model.basis_.design(t.X_support), t.y_support)
        expect = ref.predict(model.basis_.design(t.X_query))
        q = slice(test.query_offsets[i], test.query_offsets[i + 1])
        np.testing.assert_allclose(mean[q], expect, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(
            model.adapt(t.X_support, t.y_support).predict(t.X_query), expect, rtol=1e-8, atol=1e-8
        )


def test_per_task_ridge_handles_tasks_of_different_sizes(rng):
    tasks = []
    for n in [1, 4, 4, 9, 2]:
        X = rng.uniform(-5, 5, size=(n + 3, 1))
        tasks.append(mf.tasks.Task(X[:n], np.sin(X[:n, 0]), X[n:], np.sin(X[n:, 0])))
    ts = mf.tasks.TaskSet.from_list(tasks)
    model = PerTaskRidge(basis=mf.basis.make("rbf", n_basis=6)).fit(ts)
    mean, _ = model._predict_tasks(ts)
    for i, t in enumerate(ts):
        ref = Ridge(alpha=1.0).fit(model.basis_.design(t.X_support), t.y_support)
        np.testing.assert_allclose(mean[3 * i : 3 * i + 3], ref.predict(model.basis_.design(t.X_query)), atol=1e-10)


def test_pooled_ridge_is_one_ridge_on_all_training_points():
    train = small_tasks(n_tasks=20)
    model = PooledRidge(basis=mf.basis.make("rbf", n_basis=10), alpha=2.0).fit(train)
    X = np.concatenate([train.X_support, train.X_query])
    y = np.concatenate([train.y_support, train.y_query])
    ref = Ridge(alpha=2.0).fit(model.basis_.design(X), y)
    np.testing.assert_allclose(model.coef_, ref.coef_, atol=1e-9)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, atol=1e-9)
    test = small_tasks(n_tasks=5, seed=3)
    np.testing.assert_allclose(model._predict_tasks(test)[0], ref.predict(model.basis_.design(test.X_query)))
    # the pooled model ignores the support points: the same function for every task
    a = model.adapt(test[0].X_support, test[0].y_support).predict(test[1].X_query)
    np.testing.assert_allclose(a, ref.predict(model.basis_.design(test[1].X_query)))


def test_oracle_is_the_noise_free_target():
    clean = small_tasks(noise=0.0)
    assert Oracle("sinusoid").fit(clean).evaluate(clean)["mse"] == pytest.approx(0.0, abs=1e-20)
    noisy = small_tasks(n_tasks=400, noise=0.3)
    assert Oracle("sinusoid").fit(noisy).evaluate(noisy)["mse"] == pytest.approx(0.09, rel=0.15)
    t = clean[2]
    got = noise_free_target("sinusoid", [t.info], t.X_query, [0, t.n_query])
    np.testing.assert_allclose(got, t.y_query)
    # tasks without generating parameters (real data): no oracle, a reported skip
    assert noise_free_target("no-such-family", [{}], t.X_query, [0, t.n_query]) is None
    bare = mf.tasks.TaskSet.from_list([mf.tasks.Task(t.X_support, t.y_support, t.X_query, t.y_query)])
    with pytest.raises(Unavailable, match="noise-free target"):
        Oracle("no-such-family").fit(bare)


def test_baseline_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="alpha"):
        PerTaskRidge(alpha=-1.0).fit(small_tasks())
    with pytest.raises(TypeError, match="TaskSet"):
        PerTaskRidge().fit(np.zeros((3, 1)))
    model = PerTaskRidge(basis=mf.basis.make("rbf", n_basis=5)).fit(small_tasks())
    with pytest.raises(ValueError, match="y"):
        model.adapt(np.zeros((3, 1)), np.array([1.0, np.nan, 2.0]))


# ---------------------------------------------------------------------------------- CIs
def test_mse_and_ci_match_brute_force_over_tasks():
    case = tiny_case(spec("per-task ridge", PerTaskRidge, "baseline", alpha=0.5), n_test=37)
    row, model, test = bench.run_case(case)
    assert row["status"] == "ok" and row["n_tasks"] == 37
    per_task = []
    for t in test:
        pred = model.adapt(t.X_support, t.y_support).predict(t.X_query)
        per_task.append(np.mean((t.y_query - pred) ** 2))
    per_task = np.array(per_task)
    assert row["mse"] == pytest.approx(per_task.mean(), rel=1e-10)
    se = np.sqrt(np.sum((per_task - per_task.mean()) ** 2) / (len(per_task) - 1)) / np.sqrt(len(per_task))
    assert row["mse_ci95"] == pytest.approx(1.96 * se, rel=1e-10)


def test_bayesian_learner_rows_have_nll_and_coverage():
    row, model, _ = bench.run_case(tiny_case(spec("toy", ToyBayes), n_train=60))
    assert row["status"] == "ok"
    for key in ("mse", "mse_ci95", "nll", "nll_ci95", "coverage90", "coverage90_ci95"):
        assert np.isfinite(row[key]), key
    assert 0.0 <= row["coverage90"] <= 1.0


# ---------------------------------------------------------------------------------- runner
def test_a_crashing_case_is_reported_and_the_rest_runs():
    cases = [
        tiny_case(spec("ridge", PerTaskRidge, "baseline")),
        tiny_case(spec("broken", Crashing)),
        tiny_case(spec("pooled", PooledRidge, "baseline")),
    ]
    results = run_suite(Suite("t", cases), verbose=0)
    assert [r["status"] for r in results.rows] == ["ok", "error", "ok"]
    assert "RuntimeError: boom" in results.rows[1]["error"]
    assert results.rows[1]["mse"] is None
    assert all(np.isfinite(r["mse"]) for r in results.ok())
    assert "boom" in report.format_table(results) and "Failed (1 of 3 cases)" in report.format_table(results)


def test_a_crashing_factory_and_a_crashing_evaluate_are_isolated_too():
    def bad_factory(basis, case):
        raise ValueError("bad parameter in factory")

    class BadEval(PerTaskRidge):
        def _predict_tasks(self, tasks):
            raise FloatingPointError("evaluate blew up")

    cases = [
        tiny_case(LearnerSpec("f", bad_factory)),
        tiny_case(spec("e", BadEval)),
        tiny_case(spec("ok", PerTaskRidge)),
    ]
    rows = run_suite(Suite("t", cases), verbose=0).rows
    assert [r["status"] for r in rows] == ["error", "error", "ok"]
    assert "ValueError: bad parameter" in rows[0]["error"] and "FloatingPointError" in rows[1]["error"]


def test_missing_learner_family_basis_or_parameter_is_a_skip():
    cases = [
        tiny_case(LearnerSpec("ghost", metafast_learner("NoSuchLearner"))),
        Case("no-such-family", 5, spec("ridge", PerTaskRidge), n_train=10, n_test=5),
        tiny_case(spec("ridge", PerTaskRidge), basis=("no-such-basis", {})),
        tiny_case(LearnerSpec("ridge+", metafast_learner("PerTaskRidge", n_components=3))),
        tiny_case(spec("ridge", PerTaskRidge)),
    ]
    rows = run_suite(Suite("t", cases), verbose=0).rows
    assert [r["status"] for r in rows] == ["skipped"] * 4 + ["ok"]
    assert "NoSuchLearner is not available" in rows[0]["error"]
    assert "'no-such-family' is not installed" in rows[1]["error"]
    assert "'no-such-basis' is not installed" in rows[2]["error"]


def test_metafast_learner_builds_the_named_class_with_basis_and_seed(monkeypatch):
    monkeypatch.setattr(mf, "PerTaskRidge", PerTaskRidge, raising=False)
    est = metafast_learner("PerTaskRidge", alpha=0.7)("B", tiny_case(None))
    assert isinstance(est, PerTaskRidge) and est.alpha == 0.7 and est.basis == "B"
    with pytest.raises(Unavailable, match="no parameter"):
        metafast_learner("PerTaskRidge", learn_basis=True)("B", tiny_case(None))


def test_tasks_are_loaded_once_per_split_and_seeds_are_fixed(monkeypatch):
    calls = []
    real = mf.tasks.load

    def counting(name, **params):
        calls.append((name, params["seed"], params["n_tasks"]))
        return real(name, **params)

    monkeypatch.setattr(mf.tasks, "load", counting)
    cases = [tiny_case(spec(n, PerTaskRidge)) for n in ("a", "b", "c")]
    r1 = run_suite(Suite("t", cases), verbose=0)
    assert sorted(calls) == [("sinusoid", 0, 40), ("sinusoid", 1, 25)]  # train seed, test seed + 1
    r2 = run_suite(Suite("t", cases), verbose=0)
    assert [r["mse"] for r in r1.rows] == [r["mse"] for r in r2.rows]


def test_keep_models_keeps_fitted_models_and_test_tasks():
    results = run_suite(Suite("t", [tiny_case(spec("toy", ToyBayes))]), verbose=0, keep_models=True)
    assert isinstance(results.models[("sinusoid", 5, "toy")], ToyBayes)
    assert len(results.tasks[("sinusoid", 5)]) == 25


# ---------------------------------------------------------------------------------- suites
def test_builtin_suites_are_data_with_fixed_seeds():
    full = suites.regression_suite()
    assert {c.family for c in full.cases} == {"sinusoid", "harmonic", "multimodal"}
    assert {c.shots for c in full.cases} == {5, 10, 20}
    assert {c.n_test for c in full.cases} == {600}
    labels = {c.learner.label for c in full.cases}
    assert {"MetaRidge", "MetaBayes", "MetaBayes (learned basis)", "per-task ridge", "pooled ridge", "oracle"} <= labels
    quick = suites.regression_suite(quick=True)
    assert len(quick) < len(full) and all(c.n_train <= 300 for c in quick.cases)
    speed = suites.speed_suite(quick=True)
    assert len({c.n_train for c in speed.cases}) >= 3
    custom = suites.regression_suite(quick=True, learners=[spec("toy", ToyBayes)], families=["sinusoid"])
    assert {c.learner.label for c in custom.cases} == {"toy", "per-task ridge", "pooled ridge", "oracle"}
    assert all(isinstance(s, LearnerSpec) for s in suites.default_learners())
    assert all(c.basis == suites.FAMILY_BASES.get(c.family, suites.DEFAULT_BASIS) for c in full.cases)
    assert {c.basis[0] for c in full.cases if c.family == "harmonic"} == {"fourier"}
    per_family = suites.regression_suite(quick=True, bases={"harmonic": ("fourier", {"n_basis": 21})})
    assert {c.basis[0] for c in per_family.cases if c.family == "harmonic"} == {"fourier"}
    assert {c.basis[0] for c in per_family.cases if c.family != "harmonic"} == {"rbf"}


def test_get_suite_unknown_name_suggests():
    with pytest.raises(KeyError, match="Did you mean 'regression'"):
        bench.get_suite("regresion")
    assert {"regression", "speed", "classification"} <= set(bench.available_suites())


def test_classification_cases_ask_the_loader_for_episodes():
    case = suites.classification_suite(quick=True).cases[0]
    assert case.problem == "classification"
    params = case.loader_params("test")
    assert params["k_shot"] == case.shots and params["n_way"] == 5 and "n_support" not in params
    assert tuple(params["train_classes"]) == (0, 1, 2, 3, 4)  # meta-test digits 5-9 never seen
    assert params["split"] == "test" and case.loader_params("train")["split"] == "train"


def _toy_suite(quick=False, **kw):
    return Suite("toy-suite", [tiny_case(spec("ridge", PerTaskRidge))])


def _check_toy_suite_runs():
    assert "toy-suite" in bench.available_suites()
    results = run_suite(bench.get_suite("toy-suite"), verbose=0)
    assert results.suite == "toy-suite" and results.rows[0]["status"] == "ok"


def test_plugins_add_suites_through_the_hook():
    from metafast import plugins

    class Plugin:
        @mf.hookimpl
        def metafast_benchmark_suites(self, register):
            register("toy-suite", _toy_suite)

    with plugins.using_host(plugins.PluginHost(entry_points=False, plugins=(("toy", Plugin()),))):
        _check_toy_suite_runs()
    assert "toy-suite" not in bench.available_suites()


# ---------------------------------------------------------------------------------- reports
def _two_shot_results():
    cases = [
        tiny_case(s, shots=k)
        for k in (3, 6)
        for s in (
            spec("toy", ToyBayes),
            spec("ridge", PerTaskRidge, "baseline"),
            LearnerSpec("oracle", lambda b, c: Oracle(c.family), "oracle"),
            LearnerSpec("ghost", metafast_learner("NoSuchLearner")),
        )
    ]
    return run_suite(Suite("mini", cases), verbose=0, keep_models=True)


def test_results_table_json_and_markdown_shapes(tmp_path):
    results = _two_shot_results()
    assert len(results.rows) == 8 and all(set(r) == set(COLUMNS) for r in results.rows)
    data = json.loads(report.to_json(results))
    assert data["suite"] == "mini" and len(data["rows"]) == 8 and "cpu" in data["machine"]
    header, cells = report.table_rows(results)
    assert header[:3] == ["family", "K", "learner"] and "MSE (95% CI)" in header and "NLL" in header
    assert len(cells) == 6 and all(len(c) == len(header) for c in cells)
    md = report.to_markdown(results)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 6 and all(line.count("|") == len(header) + 1 for line in table)
    assert "NoSuchLearner is not available" in md and "Skipped (2 of 8 cases)" in md
    frame = results.to_frame()
    assert frame.shape == (8, len(COLUMNS))


def test_write_results_writes_json_markdown_and_plots(tmp_path):
    results = _two_shot_results()
    written = report.write_results(results, tmp_path / "out")
    names = sorted(p.split("/")[-1] for p in written["written"])
    assert names == ["mini_mse_vs_shots.png", "results.json", "results.md"]
    assert (tmp_path / "out" / "mini_mse_vs_shots.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_time_plot_when_several_training_sizes(tmp_path):
    cases = [tiny_case(spec("ridge", PerTaskRidge), n_train=n) for n in (10, 20, 40)]
    written = plots.plot_results(run_suite(Suite("sp", cases), verbose=0), tmp_path)
    assert [p.name for p in written] == ["sp_fit_time_vs_tasks.png"]


def test_missing_matplotlib_is_a_note_not_an_error(tmp_path, monkeypatch):
    results = _two_shot_results()
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    written = report.write_results(results, tmp_path)
    assert len(written["written"]) == 2 and 'pip install "metafast[plot]"' in written["notes"][0]
    with pytest.raises(plots.PlotUnavailable, match="metafast\\[plot\\]"):
        plots.plot_task_fits(results.tasks[("sinusoid", 3)], {}, tmp_path / "x.png")


def test_task_fit_plot_draws_bands_for_bayesian_models(tmp_path):
    results = _two_shot_results()
    tasks = results.tasks[("sinusoid", 3)]
    models = {k[2]: m for k, m in results.models.items() if k[1] == 3 and k[2] != "oracle"}
    path = plots.plot_task_fits(
        tasks,
        models,
        tmp_path / "fits.png",
        truth=lambda i, X: noise_free_target("sinusoid", [tasks.info[i]], X, [0, len(X)]),
    )
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_machine_summary_names_cpu_threads_blas_and_versions():
    from metafast.bench.machine import format_machine_info, machine_info

    info = machine_info()
    assert info["kernel_threads"] >= 1 and info["versions"]["numpy"] == np.__version__
    text = format_machine_info(info)
    for word in ("CPU", "threads", "BLAS", "numpy", "metafast"):
        assert word in text


# ---------------------------------------------------------------------------------- classification
def _episodes(rng, n_tasks=12, n_way=3, k_shot=2, n_query=4, d=5):
    tasks = []
    for _ in range(n_tasks):
        classes = rng.choice(10, size=n_way, replace=False)
        means = rng.normal(size=(n_way, d))
        ys = np.repeat(classes, k_shot)
        yq = np.repeat(classes, n_query)
        Xs = means[np.repeat(np.arange(n_way), k_shot)] + rng.normal(scale=0.8, size=(n_way * k_shot, d))
        Xq = means[np.repeat(np.arange(n_way), n_query)] + rng.normal(scale=0.8, size=(n_way * n_query, d))
        tasks.append(mf.tasks.Task(Xs, ys.astype(np.int64), Xq, yq.astype(np.int64)))
    return mf.tasks.TaskSet.from_list(tasks)


def test_per_task_centroid_matches_sklearn_nearest_centroid_per_task(rng):
    from sklearn.neighbors import NearestCentroid

    from metafast.bench import PerTaskCentroid

    ts = _episodes(rng)
    model = PerTaskCentroid().fit(ts)
    pred = model.predict_tasks(ts)
    accs = []
    for i, t in enumerate(ts):
        ref = NearestCentroid().fit(t.X_support, t.y_support).predict(t.X_query)
        np.testing.assert_array_equal(pred[ts.query_offsets[i] : ts.query_offsets[i + 1]], ref)
        np.testing.assert_array_equal(model.adapt(t.X_support, t.y_support).predict(t.X_query), ref)
        accs.append(np.mean(ref == t.y_query))
    got = model.evaluate(ts)
    assert got["accuracy"] == pytest.approx(np.mean(accs))
    assert got["accuracy_ci95"] == pytest.approx(1.96 * np.std(accs, ddof=1) / np.sqrt(len(accs)))
    assert 0.5 < got["accuracy"] <= 1.0  # well-separated classes: far above chance (1/3)


# ---------------------------------------------------------------------------------- progress, logs
def test_non_finite_metrics_are_an_error_not_a_number_in_the_table():
    class NaNLearner(PerTaskRidge):
        def _predict_tasks(self, tasks):
            mean, _ = super()._predict_tasks(tasks)
            mean[0] = np.nan
            return mean, None

    row = bench.run_case(tiny_case(spec("nan", NaNLearner)))[0]
    assert row["status"] == "error" and "non-finite" in row["error"] and row["mse"] is None


def test_progress_bar_only_when_verbose_and_on_a_terminal(monkeypatch):
    from metafast.bench import runner

    for verbose, tty, shown in [(1, True, True), (0, True, False), (1, False, False), (2, True, True)]:
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty, raising=False)
        with runner._progress(3, "x", verbose) as bar:
            assert bar.disable is (not shown)


def test_failed_and_skipped_cases_are_logged(caplog):
    cases = [tiny_case(spec("broken", Crashing)), tiny_case(LearnerSpec("ghost", metafast_learner("Nope")))]
    with caplog.at_level("INFO", logger="metafast.bench"):
        run_suite(Suite("t", cases), verbose=0)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "boom" in warnings[0].getMessage()
    assert any("skipped" in r.getMessage() and "Nope" in r.getMessage() for r in caplog.records)


def test_learner_factory_silences_learner_progress_and_seeds_it(monkeypatch):
    class Chatty(PerTaskRidge):
        def __init__(self, basis=None, verbose=1, random_state=None):
            super().__init__(basis=basis)
            self.verbose, self.random_state = verbose, random_state

    monkeypatch.setattr(mf, "Chatty", Chatty, raising=False)
    est = metafast_learner("Chatty")(None, tiny_case(None, seed=7))
    assert est.verbose == 0 and est.random_state == 7
    assert metafast_learner("Chatty", verbose=2)(None, tiny_case(None)).verbose == 2


def test_tuned_alpha_is_the_grid_value_with_the_lowest_training_query_mse():
    from metafast.bench import baselines

    train = small_tasks(n_tasks=60, noise=0.2)
    basis = mf.basis.make("rbf", n_basis=12)
    tuned = PerTaskRidge(basis=basis, alpha="tuned").fit(train)
    mses = [PerTaskRidge(basis=basis, alpha=a).fit(train).evaluate(train)["mse"] for a in baselines.ALPHA_GRID]
    assert tuned.alpha_ == baselines.ALPHA_GRID[int(np.argmin(mses))]
    assert tuned.evaluate(train)["mse"] == pytest.approx(min(mses))
    with pytest.raises(ValueError, match="'tuned'"):
        PerTaskRidge(alpha="best").fit(train)
