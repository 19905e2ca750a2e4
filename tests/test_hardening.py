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
                time.sleep(1e-4)   # let the writer run too
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


@pytest.mark.parametrize("make", [
    lambda: MetaBayes(basis=_basis(), max_iter=15, tol=0.0, n_jobs=1),
    lambda: MetaBayes(basis=_basis(), n_components=2, max_iter=5, random_state=0, n_jobs=1),
    lambda: MetaRidge(basis=mf.basis.make("rbf", n_basis=8), n_jobs=1),   # basis_ set early in fit
], ids=["metabayes", "mixture", "metaridge"])
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
    getattr(ts, array)[7] = np.nan   # row 7: task 1 (5 rows per task), row 2 of the task
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
    df.loc[9, "x"] = "9.0"     # every cell parses: numbers as text are still refused, named
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


@pytest.mark.parametrize("header, problem", [
    ("[1, 2]", "not a TaskSet header"),
    ('"just a string"', "not a TaskSet header"),
    ("{not json", "not JSON"),
    ('{"format": "metafast.TaskSet", "version": 1, "info": 3}', "'info' is not a list"),
    ('{"format": "metafast.TaskSet", "version": 1, "info": [1, 2, 3]}', "'info' is not a list of objects"),
    ('{"format": "metafast.TaskSet", "version": 1, "info": []}', "do not make a TaskSet"),
])
def test_load_crafted_header(tmp_path, header, problem):
    path = _saved(tmp_path, header)
    with pytest.raises(ValueError, match=problem) as err:
        mf.tasks.TaskSet.load(path)
    assert str(path) in str(err.value)


def test_load_flipped_byte_and_random_bytes(tmp_path):
    path = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    hits = 0
    for pos in range(100, len(raw) - 100, max(1, len(raw) // 40)):   # flips across the archive
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
