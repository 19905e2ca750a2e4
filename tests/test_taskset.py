import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import metafast as mf
from metafast.tasks import Task, TaskSet


@st.composite
def task_lists(draw, mixed_dtypes=False):
    base = draw(st.sampled_from([np.float32, np.float64]))
    labels = draw(st.booleans())  # integer class labels instead of float targets
    d = draw(st.integers(1, 3))
    n_tasks = draw(st.integers(1, 6))
    tasks = []
    for _ in range(n_tasks):
        dtype = draw(st.sampled_from([np.float32, np.float64])) if mixed_dtypes else base
        elems = st.floats(-1e6, 1e6, allow_nan=False, width=32 if dtype == np.float32 else 64)
        ns, nq = draw(st.integers(0, 5)), draw(st.integers(0, 5))
        arr = lambda shape: draw(hnp.arrays(dtype, shape, elements=elems))
        lab = lambda n: draw(hnp.arrays(np.int64, (n,), elements=st.integers(-3, 9)))
        info = draw(
            st.dictionaries(
                st.sampled_from(["a", "group", "k"]),
                st.one_of(st.integers(-5, 5), st.text(max_size=3), st.floats(allow_nan=False)),
            )
        )
        ys, yq = (lab(ns), lab(nq)) if labels else (arr((ns,)), arr((nq,)))
        tasks.append(Task(arr((ns, d)), ys, arr((nq, d)), yq, info))
    return tasks


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(task_lists())
def test_pack_unpack_round_trips_exactly(tasks):
    ts = TaskSet.from_list(tasks)
    assert len(ts) == len(tasks)
    for t, task in zip(ts, tasks):
        for name in ("X_support", "y_support", "X_query", "y_query"):
            assert _same(getattr(t, name), getattr(task, name))
        assert t.info == task.info
    np.testing.assert_array_equal(ts.support_sizes, [t.n_support for t in tasks])


@settings(max_examples=30, deadline=None)
@given(task_lists(mixed_dtypes=True))
def test_mixed_precision_packs_to_float64_without_changing_values(tasks):
    ts = TaskSet.from_list(tasks)
    expected = np.float32 if all(t.X_support.dtype == np.float32 for t in tasks) else np.float64
    assert ts.dtype == expected
    for t, task in zip(ts, tasks):
        np.testing.assert_array_equal(t.X_query, task.X_query)  # float32 -> float64 is exact
        assert t.X_query.dtype == expected


@settings(max_examples=40, deadline=None)
@given(task_lists(), st.data())
def test_subset_concatenate_and_npz_round_trip(tmp_path_factory, tasks, data):
    ts = TaskSet.from_list(tasks)
    ids = data.draw(st.lists(st.integers(0, len(tasks) - 1), min_size=1, max_size=8))
    assert ts.subset(ids).equals(TaskSet.from_list([tasks[i] for i in ids], dtype=ts.dtype))
    both = TaskSet.concatenate([ts, ts.subset(ids)])
    assert both.equals(TaskSet.from_list(tasks + [tasks[i] for i in ids], dtype=ts.dtype))
    path = tmp_path_factory.mktemp("npz") / "tasks.npz"
    ts.save(path)
    assert TaskSet.load(path).equals(ts)


def test_getitem_returns_views_and_slices(rng):
    ts = mf.tasks.load("sinusoid", n_tasks=10, n_support=4, n_query=3, seed=0)
    t = ts[2]
    assert np.shares_memory(t.X_support, ts.X_support) and np.shares_memory(t.y_query, ts.y_query)
    assert ts[-1].info == ts.info[9]
    part = ts[2:5]
    assert len(part) == 3 and part[0].info == t.info
    assert ts[np.arange(10) % 2 == 0].equals(ts[::2])
    with pytest.raises(IndexError, match="out of range"):
        ts[10]
    with pytest.raises(ValueError, match="empty"):
        ts[3:3]


def test_info_types_survive_save_and_load(tmp_path):
    ts = mf.tasks.load("sinusoid", n_tasks=3, n_support=2, n_query=2, seed=0)
    ts.info[0].update(
        key=("a", 1), arr=np.arange(4, dtype=np.int32), s=np.float32(1.5), nested={"__x": [1.0, float("inf")]}
    )
    ts.save(tmp_path / "t.npz")
    back = TaskSet.load(tmp_path / "t.npz")
    assert back.equals(ts)
    assert isinstance(back.info[0]["key"], tuple) and back.info[0]["arr"].dtype == np.int32
    ts.info[1]["bad"] = object()
    with pytest.raises(TypeError, match="task 1"):
        ts.save(tmp_path / "u.npz")


def _header(path):
    import json

    with np.load(path) as data:
        return json.loads(str(data["header"][()])), sorted(data.files)


def test_columnar_info_round_trips_types_exactly(tmp_path):
    ts = mf.tasks.load("sinusoid", n_tasks=5, n_support=2, n_query=1, seed=0)
    for t, d in enumerate(ts.info):  # one column of each kind, and shared values
        d.update(
            i=t * 10**12,
            b=t % 2 == 0,
            s=f"task{t}",
            f=[0.5, float("nan"), -float("inf"), 1e-300, 2.0][t],
            none=None,
            big=2**70,
        )
    ts.save(tmp_path / "c.npz")
    header, files = _header(tmp_path / "c.npz")
    assert header["version"] == 2 and "info" not in header
    kinds = {spec[0]: spec[1] for spec in header["info_columns"]}
    assert kinds == {
        "family": "const",
        "amplitude": "float",
        "phase": "float",
        "frequency": "const",
        "noise": "const",
        "i": "int",
        "b": "bool",
        "s": "str",
        "f": "float",
        "none": "const",
        "big": "const",
    }
    back = TaskSet.load(tmp_path / "c.npz")
    for got, want in zip(back.info, ts.info):
        assert list(got) == list(want)
        for k in want:
            assert type(got[k]) is type(want[k]), k
            assert got[k] == want[k] or (got[k] != got[k] and want[k] != want[k]), k


@pytest.mark.parametrize("change", ["keys differ", "mixed types", "numpy scalar", "trailing NUL", "huge int"])
def test_info_that_is_not_columnar_is_kept_as_json(tmp_path, change):
    ts = mf.tasks.load("sinusoid", n_tasks=3, n_support=2, n_query=1, seed=0)
    if change == "keys differ":
        ts.info[1]["extra"] = 1
    elif change == "mixed types":
        ts.info[1]["amplitude"] = 3
    elif change == "numpy scalar":
        ts.info[2]["amplitude"] = np.float64(ts.info[2]["amplitude"])
    elif change == "trailing NUL":
        for t, d in enumerate(ts.info):
            d["s"] = f"x{t}\x00"
    else:
        for t, d in enumerate(ts.info):
            d["n"] = 2**64 + t
    ts.save(tmp_path / "j.npz")
    header, _ = _header(tmp_path / "j.npz")
    assert "info" in header and "info_columns" not in header
    back = TaskSet.load(tmp_path / "j.npz")
    assert back.equals(ts)
    assert [type(v) for d in back.info for v in d.values()] == [type(v) for d in ts.info for v in d.values()]


def test_version_1_files_still_load(tmp_path):
    import json

    ts = mf.tasks.load("sinusoid", n_tasks=2, n_support=2, n_query=1, seed=0)
    arrays = {
        a: getattr(ts, a) for a in ("X_support", "y_support", "support_offsets", "X_query", "y_query", "query_offsets")
    }
    header = {"format": "metafast.TaskSet", "version": 1, "info": ts.info, "label_setting": None}
    np.savez(tmp_path / "v1.npz", header=np.asarray(json.dumps(header)), **arrays)
    assert TaskSet.load(tmp_path / "v1.npz").equals(ts)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda h, a: a.pop("info_column_1"), "info column 'amplitude' is missing"),
        (lambda h, a: a.update(info_column_1=a["info_column_1"][:-1]), "not 4 float values"),
        (lambda h, a: a.update(info_column_1=a["info_column_1"].astype(np.int64)), "not 4 float values"),
        (lambda h, a: h["info_columns"].append(["x", "complex"]), "info column 5"),
        (lambda h, a: h.update(info_columns="amplitude"), "'info_columns' is not a list"),
    ],
)
def test_load_damaged_info_columns_names_the_file(tmp_path, damage, problem):
    import json

    mf.tasks.load("sinusoid", n_tasks=4, n_support=2, n_query=1, seed=0).save(tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("header")[()]))
    damage(header, arrays)
    np.savez(tmp_path / "e.npz", header=np.asarray(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match=problem) as err:
        TaskSet.load(tmp_path / "e.npz")
    assert "e.npz" in str(err.value)


def test_load_rejects_foreign_files(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a metafast TaskSet"):
        TaskSet.load(tmp_path / "x.npz")
    with pytest.raises(KeyError, match="TaskSet.load"):
        mf.tasks.load("x.npz")


def test_from_list_errors_name_the_task():
    good = Task(np.zeros((2, 1)), np.zeros(2), np.zeros((1, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="task 1"):
        TaskSet.from_list([good, Task(np.zeros((2, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1))])
    with pytest.raises(ValueError, match="NaN.*task 1|task 1.*NaN"):
        TaskSet.from_list([good, Task(np.zeros((2, 1)), [0.0, np.nan], np.zeros((1, 1)), np.zeros(1))])
    with pytest.raises(ValueError, match="empty"):
        TaskSet.from_list([])
    with pytest.raises(ValueError, match="features"):
        TaskSet.concatenate([TaskSet.from_list([good]), mf.tasks.load("friedman", n_tasks=1)])


def test_split_by_task_is_disjoint_complete_and_reproducible():
    ts = mf.tasks.load("sinusoid", n_tasks=103, n_support=2, n_query=2, seed=0)
    for i, d in enumerate(ts.info):
        d["id"] = i
    parts = mf.tasks.split_tasks(ts, (0.8, 0.1, 0.1), seed=3)
    ids = [sorted(d["id"] for d in p.info) for p in parts]
    assert [len(p) for p in parts] == [len(i) for i in ids] and sum(map(len, ids)) == 103
    assert not (set(ids[0]) & set(ids[1]) or set(ids[0]) & set(ids[2]) or set(ids[1]) & set(ids[2]))
    again = ts.split((0.8, 0.1, 0.1), seed=3)
    assert all(a.equals(b) for a, b in zip(parts, again))
    # every task's rows are exactly the original task's rows
    t = parts[1][0]
    np.testing.assert_array_equal(t.X_query, ts[t.info["id"]].X_query)
    assert [len(p) for p in mf.tasks.split_tasks(ts, (50, 10), shuffle=False)] == [50, 10]
    with pytest.raises(ValueError, match="asks for"):
        mf.tasks.split_tasks(ts, (100, 10))
    with pytest.raises(ValueError, match="part 1"):
        mf.tasks.split_tasks(ts, (0.999, 0.001))


def test_astype_and_is_classification():
    ts = mf.tasks.load("sinusoid", n_tasks=4, seed=0)
    f32 = ts.astype(np.float32)
    assert f32.dtype == np.float32 and f32.y_support.dtype == np.float32
    assert not ts.is_classification
    assert mf.tasks.load("digits", n_tasks=2).is_classification
