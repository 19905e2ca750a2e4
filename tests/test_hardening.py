"""Regression tests of the hardening issue: each defect found by a hostile user, fixed."""

import threading
import time

import numpy as np
import pytest

import metafast as mf
from metafast.learners import MetaBayes, MetaRidge
from metafast.parallel import OVERSUBSCRIBE_LIMIT, available_cores, effective_n_threads

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _sinusoid(n_tasks=30, seed=0, **kw):
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=5, n_query=5, seed=seed, **kw)


def _basis():
    return mf.basis.make("rbf", n_basis=8).fit(np.linspace(-5, 5, 50)[:, None])


# ----------------------------------------------------------------------- 1. absurd n_jobs
def test_absurd_n_jobs_is_clamped():
    cap = OVERSUBSCRIBE_LIMIT * available_cores()
    assert 1 <= effective_n_threads(100_000) <= cap
    assert effective_n_threads(100_000) == effective_n_threads(None)
    assert effective_n_threads(-100_000) == 1


@pytest.mark.parametrize("learner", [MetaBayes, MetaRidge])
def test_absurd_n_jobs_fits_and_evaluates(learner):
    tasks = _sinusoid()
    model = learner(basis=_basis(), n_jobs=100_000).fit(tasks)
    ref = learner(basis=_basis(), n_jobs=1).fit(tasks)
    np.testing.assert_allclose(model.evaluate(tasks)["mse"], ref.evaluate(tasks)["mse"], rtol=1e-10)


# ----------------------------------------------------------------------- 2. fit while others predict
def _concurrent_predictions(model, fits, X, y, Xq, n_readers=2, rounds=4):
    """Refit ``model`` alternately on ``fits`` while readers call adapt_predict; the readers'
    results."""
    seen, stop, errors = [], threading.Event(), []

    def reader():
        try:
            while not stop.is_set():
                seen.append(np.asarray(model.adapt_predict(X, y, Xq)))
                time.sleep(1e-4)  # let the writer run too
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(n_readers)]
    for t in threads:
        t.start()
    try:
        for r in range(rounds):
            model.fit(fits[r % len(fits)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    return seen


@pytest.mark.parametrize(
    "make",
    [
        lambda: MetaBayes(basis=_basis(), max_iter=15, tol=0.0, n_jobs=1),
        lambda: MetaBayes(basis=_basis(), n_components=2, max_iter=5, random_state=0, n_jobs=1),
        lambda: MetaRidge(basis=mf.basis.make("rbf", n_basis=8), n_jobs=1),  # basis_ set early in fit
    ],
    ids=["metabayes", "mixture", "metaridge"],
)
def test_fit_swaps_the_model_in_atomically(make):
    A, B = _sinusoid(40, seed=1), _sinusoid(40, seed=2, amplitude=(5.0, 9.0))
    X, y, Xq = A[0].X_support, A[0].y_support, np.linspace(-5, 5, 7)[:, None]
    expected = [np.asarray(make().fit(ts).adapt_predict(X, y, Xq)) for ts in (A, B)]
    assert not np.allclose(expected[0], expected[1])
    model = make().fit(A)
    seen = _concurrent_predictions(model, [B, A], X, y, Xq)
    assert len(seen) > 0
    mixed = [p for p in seen if not any(np.allclose(p, e, rtol=1e-9, atol=1e-12) for e in expected)]
    assert not mixed, f"{len(mixed)} of {len(seen)} predictions matched neither model"


def test_failed_fit_keeps_the_old_model():
    tasks = _sinusoid()
    model = MetaRidge(basis=_basis()).fit(tasks)
    before = model.prior_mean_.copy()
    model.set_params(alphas=[-1.0])
    with pytest.raises(ValueError, match="alphas"):
        model.fit(tasks)
    np.testing.assert_array_equal(model.prior_mean_, before)


# ----------------------------------------------------------------------- 3. endless streams
@pytest.mark.parametrize("learner", [MetaBayes, MetaRidge])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_endless_stream_is_refused(learner, method):
    model = learner(basis=_basis())
    if method == "partial_fit" and not hasattr(model, "partial_fit"):
        pytest.skip("no partial_fit")
    endless = mf.tasks.stream("sinusoid", n_tasks=None, chunk_size=5, n_support=5, n_query=5)
    with pytest.raises(ValueError, match="endless stream"):
        getattr(model, method)(endless)


def test_bounded_stream_still_fits():
    finite = mf.tasks.stream("sinusoid", n_tasks=20, chunk_size=5, n_support=5, n_query=5)
    assert MetaBayes(basis=_basis(), max_iter=5).fit(finite).n_tasks_seen_ == 20


# ----------------------------------------------------------------------- 4. no labelled rows
def _no_support(n_tasks=6):
    ts = _sinusoid(n_tasks)
    empty = np.zeros(n_tasks + 1, dtype=np.int64)
    return mf.tasks.TaskSet(ts.X_support[:0], ts.y_support[:0], empty, ts.X_query, ts.y_query, ts.query_offsets)


@pytest.mark.parametrize("n_components", [1, 2])
@pytest.mark.parametrize("basis", ["fitted", "unfitted"])
def test_metabayes_refuses_tasks_without_labelled_rows(n_components, basis):
    b = _basis() if basis == "fitted" else mf.basis.make("rbf", n_basis=5)
    model = MetaBayes(basis=b, train_rows="support", n_components=n_components)
    with pytest.raises(ValueError, match="no labelled rows"):
        model.fit(_no_support())
    assert not hasattr(model, "converged_")
    # with train_rows="all" the query rows are labelled rows: it fits on them
    MetaBayes(basis=_basis(), max_iter=5).fit(_no_support())


# ----------------------------------------------------------------------- 5. class labels
@pytest.mark.parametrize("n_components", [1, 2])
def test_metabayes_refuses_class_labels(n_components):
    episodes = mf.tasks.load("digits", n_tasks=4, n_way=2, k_shot=2, n_query=2, seed=0)
    with pytest.raises(TypeError, match="MetaClassifier"):
        MetaBayes(basis=mf.basis.make("rbf", n_basis=5), n_components=n_components).fit(episodes)


# ----------------------------------------------------------------------- 8. NaN written in later
@pytest.mark.parametrize("learner", [MetaBayes, MetaRidge])
@pytest.mark.parametrize("array", ["y_support", "y_query", "X_support"])
def test_nan_written_into_a_taskset_never_reaches_a_fit(learner, array):
    ts = _sinusoid(8)
    getattr(ts, array)[7] = np.nan  # row 7: task 1 (5 rows per task), row 2 of the task
    with pytest.raises(ValueError, match=f"{array} of task 1 holds NaN"):
        learner(basis=_basis()).fit(ts)


@pytest.mark.parametrize("learner", [MetaBayes, MetaRidge])
def test_nan_written_into_a_taskset_never_reaches_a_metric(learner):
    model = learner(basis=_basis(), **({"max_iter": 5} if learner is MetaBayes else {})).fit(_sinusoid())
    ts = _sinusoid(8, seed=3)
    ts.y_query[3] = np.inf
    with pytest.raises(ValueError, match="y_query of task 0 holds inf"):
        model.evaluate(ts)


# ----------------------------------------------------------------------- 6, 7. from_frame columns
def _frame():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame({"g": np.repeat(["a", "b"], 6), "x": np.arange(12.0), "y": np.linspace(0, 1, 12)})


def test_from_frame_refuses_complex_columns():
    df = _frame()
    df["x"] = df["x"] + 1j
    with pytest.raises(TypeError, match="feature column 'x' is complex"):
        mf.tasks.from_frame(df, "g", "x", "y", n_support=2)
    df = _frame()
    df["y"] = df["y"].astype(object)
    df.loc[4, "y"] = 2 + 3j
    with pytest.raises(TypeError, match=r"target column 'y'.*complex.*\(2\+3j\) at row 4"):
        mf.tasks.from_frame(df, "g", "x", "y", n_support=2)


@pytest.mark.parametrize("text_dtype", [object, "string"])
def test_from_frame_names_the_first_cell_that_does_not_parse(text_dtype):
    df = _frame()
    df["x"] = df["x"].map(str).astype(text_dtype)
    df.loc[9, "x"] = "N/A?"
    with pytest.raises(TypeError, match=r"column 'x'.*'N/A\?' at row 9, group 'b'"):
        mf.tasks.from_frame(df, "g", "x", "y", n_support=2)
    df.loc[9, "x"] = "9.0"  # every cell parses: numbers as text are still refused, named
    with pytest.raises(TypeError, match=r"numbers stored as text.*'0.0' at row 0"):
        mf.tasks.from_frame(df, "g", "x", "y", n_support=2)


def test_from_frame_object_column_of_numbers_with_missing_cells():
    df = _frame()
    df["x"] = df["x"].astype(object)
    df.loc[3, "x"] = None
    with pytest.raises(ValueError, match="column 'x' has NaN at row 3"):
        mf.tasks.from_frame(df, "g", "x", "y", n_support=2)
    df.loc[3, "x"] = 3
    assert mf.tasks.from_frame(df, "g", "x", "y", n_support=2).n_tasks == 2


# ----------------------------------------------------------------------- 9. crafted TaskSet files
def _saved(tmp_path, header=None):
    ts = _sinusoid(3)
    path = tmp_path / "t.npz"
    ts.save(path)
    if header is not None:
        arrays = dict(np.load(path))
        arrays["header"] = np.asarray(header)
        np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "header, problem",
    [
        ("[1, 2]", "not a TaskSet header"),
        ('"just a string"', "not a TaskSet header"),
        ("{not json", "not JSON"),
        ('{"format": "metafast.TaskSet", "version": 1, "info": 3}', "'info' is not a list"),
        ('{"format": "metafast.TaskSet", "version": 1, "info": [1, 2, 3]}', "'info' is not a list of objects"),
        ('{"format": "metafast.TaskSet", "version": 1, "info": []}', "do not make a TaskSet"),
    ],
)
def test_load_crafted_header(tmp_path, header, problem):
    path = _saved(tmp_path, header)
    with pytest.raises(ValueError, match=problem) as err:
        mf.tasks.TaskSet.load(path)
    assert str(path) in str(err.value)


def test_load_flipped_byte_and_random_bytes(tmp_path):
    path = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    hits = 0
    for pos in range(100, len(raw) - 100, max(1, len(raw) // 40)):  # flips across the archive
        bad = raw.copy()
        bad[pos] ^= 0xFF
        damaged = tmp_path / f"flip{pos}.npz"
        damaged.write_bytes(bytes(bad))
        try:
            mf.tasks.TaskSet.load(damaged)
        except ValueError as exc:
            assert str(damaged) in str(exc)
            hits += 1
    assert hits > 0
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match="not an .npz") as err:
        mf.tasks.TaskSet.load(noise)
    assert "pickle" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        mf.tasks.TaskSet.load(tmp_path / "absent.npz")


# ----------------------------------------------------------------------- 12. adapted regressors
@pytest.fixture(scope="module")
def fitted_bayes():
    return MetaBayes(basis=_basis(), max_iter=10).fit(_sinusoid(40))


@pytest.mark.parametrize("n, err", [(-1, ValueError), (2.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_sample_weights_bad_counts_are_named(fitted_bayes, n, err):
    t = _sinusoid(2)[0]
    reg = fitted_bayes.adapt(t.X_support, t.y_support)
    with pytest.raises(err, match="n_samples"):
        reg.sample_weights(n)
    with pytest.raises(ValueError, match="random_state"):
        reg.sample_weights(2, random_state=-5)
    assert reg.sample_weights(0).shape == (0, 8)
    assert reg.sample_weights(3, random_state=0).shape == (3, 8)


def test_mixture_adapted_regressor_update_equals_refit():
    ts = mf.tasks.load("multimodal", n_tasks=60, n_support=10, n_query=5, seed=0)
    model = MetaBayes(basis=mf.basis.make("rbf", n_basis=10), n_components=2, max_iter=20, random_state=0).fit(ts)
    t = ts[1]
    step = model.adapt(t.X_support[:3], t.y_support[:3])
    step.update(t.X_support[3:7], t.y_support[3:7]).update(t.X_support[7:], t.y_support[7:])
    once = model.adapt(t.X_support, t.y_support)
    for attr in ("responsibilities_", "component_means_", "component_covariances_", "log_evidence_"):
        np.testing.assert_allclose(getattr(step, attr), getattr(once, attr), rtol=1e-8, atol=1e-12)
    assert step.n_samples_seen_ == once.n_samples_seen_ == 10
    mean, std = step.predict(t.X_query, return_std=True)
    np.testing.assert_allclose(mean, once.predict(t.X_query), rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="'y'"):
        step.update(t.X_support[:2], [np.nan, 1.0])


# ----------------------------------------------------------------------- 13. the pickle guard
def _guarded_objects():
    ts = _sinusoid(30)
    t = ts[0]
    bayes = MetaBayes(basis=_basis(), max_iter=5).fit(ts)
    mixture = MetaBayes(basis=_basis(), n_components=2, max_iter=5, random_state=0).fit(ts)
    ridge = MetaRidge(basis=_basis()).fit(ts)
    return {
        "MetaBayes": bayes,
        "MetaRidge": ridge,
        "mixture MetaBayes": mixture,
        "BayesTaskRegressor": bayes.adapt(t.X_support, t.y_support),
        "BiasedRidgeRegressor": ridge.adapt(t.X_support, t.y_support),
        "MixtureTaskRegressor": mixture.adapt(t.X_support, t.y_support),
        "MixturePrior": mixture.mixture_,
        "fitted basis": _basis(),
        "unfitted basis": mf.basis.make("fourier"),
    }


def test_pickle_guard_rule_is_the_same_everywhere():
    import pickle

    from metafast._pickle import VERSION_KEY

    for name, obj in _guarded_objects().items():
        again = pickle.loads(pickle.dumps(obj))  # same version: round-trips
        assert type(again) is type(obj), name
        state = obj.__getstate__()
        assert state[VERSION_KEY] == mf.__version__, name
        major, minor, *rest = mf.__version__.split(".")
        for other in (
            f"{major}.{minor}.{int(''.join(c for c in rest[0] if c.isdigit()) or 0) + 1}"
            if rest
            else f"{major}.{minor}.1",
            "0.0.0-ancient",
            f"{int(major) + 1}.0.0",
        ):
            bad = dict(state, **{VERSION_KEY: other})
            with pytest.raises(ValueError, match=f"pickled by metafast {other}.*not compatible"):
                object.__new__(type(obj)).__setstate__(bad)
        untagged = {k: v for k, v in state.items() if k != VERSION_KEY}
        with pytest.raises(ValueError, match="no metafast version tag"):
            object.__new__(type(obj)).__setstate__(untagged)


# ----------------------------------------------------------------------- 10. memory estimates
def _pretend_memory(monkeypatch, nbytes):
    import metafast._memory as mem

    monkeypatch.setattr(mem, "available_memory", lambda: nbytes)
    monkeypatch.setattr(mem, "CHECK_ABOVE", 0)


def test_huge_basis_fit_is_refused_with_the_estimate():
    X = np.random.default_rng(0).normal(size=(50, 1))
    with pytest.raises(MemoryError, match=r"fitting RBF\(n_basis=1000000000\) needs about .*GiB.*lower n_basis"):
        mf.basis.make("rbf", n_basis=10**9).fit(X)


def test_huge_design_and_learner_state_are_refused(monkeypatch):
    basis = _basis()
    _pretend_memory(monkeypatch, 10_000)  # 10 kB available
    with pytest.raises(MemoryError, match=r"\(1000, 8\) design matrix of RBF needs about 62.5 KiB"):
        basis.design(np.zeros((1000, 1)))
    assert basis.design(np.zeros((10, 1))).shape == (10, 8)  # 640 B: fine
    _pretend_memory(monkeypatch, 2 * 8 * 40 * 40)
    for learner in (MetaBayes, MetaRidge):
        with pytest.raises(MemoryError, match="40 basis functions"):
            learner(
                basis=mf.basis.make("rbf", n_basis=40).fit(np.zeros((50, 1)) + np.arange(50)[:, None]), n_jobs=1
            ).fit(_sinusoid(5))


def test_available_memory_is_known_here():
    from metafast._memory import available_memory

    assert available_memory() is None or available_memory() > 0


# ----------------------------------------------------------------------- 11. --out of bench and demo
@pytest.fixture
def no_runs(monkeypatch):
    """Fail if a suite runs: the --out checks must come first."""
    import metafast.bench as bench

    def refuse(*args, **kwargs):  # pragma: no cover - reached only when the check is missing
        raise AssertionError("the suite ran before --out was checked")

    monkeypatch.setattr(bench, "run_suite", refuse)


@pytest.mark.parametrize(
    "command", [["bench", "regression", "--quick"], ["bench", "all", "--quick"], ["demo", "--quick"]]
)
def test_unwritable_out_is_refused_before_running(tmp_path, capsys, no_runs, command):
    from metafast.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(command + ["--out", str(blocker / "sub" / "out.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "a-file" in err and "Traceback" not in err


def test_bench_out_that_is_a_file_is_refused(tmp_path, capsys, no_runs):
    from metafast.cli import main

    target = tmp_path / "results"
    target.write_text("x")
    with pytest.raises(SystemExit):
        main(["bench", "regression", "--quick", "--out", str(target)])
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_out_existing_folder_writes_into_it(tmp_path):
    pytest.importorskip("matplotlib")
    from metafast.cli import main

    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["demo", "--quick", "-q", "--out", str(folder)]) == 0
    assert (folder / "metafast-demo.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["plots"]  # nothing written next to it
    assert sorted(p.name for p in folder.iterdir()) == [
        "metafast-demo.png",  # no temporary
        "metafast-demo_classification.png",
    ]  # left behind


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from metafast.bench._files import atomic_write, atomic_write_text

    path = tmp_path / "results.json"
    atomic_write_text(path, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
