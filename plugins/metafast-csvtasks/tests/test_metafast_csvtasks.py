"""Tests of the metafast-csvtasks plugin, as installed (found through its entry point)."""

import pickle

import numpy as np
import pytest

import metafast as mf
from metafast.plugins import plugin_report
from metafast.testing import check_task_loader

csvtasks = pytest.importorskip(
    "metafast_csvtasks", reason="plugin not installed: pip install ./plugins/metafast-csvtasks"
)
from metafast_csvtasks import load_csv_dir, load_csv_long, load_stations  # noqa: E402


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def curves(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        x = rng.uniform(0, 1, size=(9 + i, 2))
        y = x @ [1.0, -2.0] + i
        lines = ["a,b,y"] + [f"{a:.6f},{b:.6f},{v:.6f}" for (a, b), v in zip(x, y)]
        write(tmp_path / f"curve_{i}.csv", "\n".join(lines) + "\n")
    return tmp_path


def test_found_through_the_installed_entry_point():
    report = {r["name"]: r for r in plugin_report()}
    assert "csvtasks" in report, "entry point 'csvtasks' of group 'metafast' not found"
    r = report["csvtasks"]
    assert r["status"] == "loaded", r["error"]
    assert r["distribution"] == "metafast-csvtasks" and r["version"] == csvtasks.__version__
    assert r["provides"] == {"task loader": ["csv-dir", "csv-long", "stations"]}
    ts = mf.tasks.load("stations", n_support=10, n_query=5, n_tasks=3, seed=1)
    assert len(ts) == 3 and ts.n_features == 2
    assert ts.info[0]["file"] == "station_01.csv"


def test_conformance_of_every_loader(curves, tmp_path):
    check_task_loader(load_stations, n_support=6, n_query=4, n_tasks=5, seed=0)
    check_task_loader(load_csv_dir, path=curves, target="y", n_support=4, n_query=3, seed=2)
    long = write(tmp_path / "long.txt", "g,x,y\n" + "".join(f"{k},{i},{i * k}\n" for k in (1, 2, 3) for i in range(6)))
    check_task_loader(load_csv_long, path=long, group="g", n_support=2, n_query=3, seed=0)


def test_csv_dir_reads_every_row_once(curves):
    ts = load_csv_dir(curves, target="y", n_support=4, n_query=None, seed=0)
    assert len(ts) == 4
    assert ts.query_sizes.tolist() == [5, 6, 7, 8]
    for t in range(4):
        task = ts[t]
        X = np.vstack([task.X_support, task.X_query])
        y = np.concatenate([task.y_support, task.y_query])
        raw = np.loadtxt(curves / ts.info[t]["file"], delimiter=",", skiprows=1)
        order = np.lexsort(raw[:, ::-1].T)
        got = np.column_stack([X, y])
        np.testing.assert_allclose(got[np.lexsort(got[:, ::-1].T)], raw[order])


def test_csv_long_groups_in_order_of_appearance(tmp_path):
    f = write(tmp_path / "sales.csv", "store,price,units\nb,1,10\na,2,20\nb,3,30\na,4,40\nb,5,50\n")
    ts = load_csv_long(f, group="store", n_support=1, n_query=1, seed=0)
    assert [i["group"] for i in ts.info] == ["b", "a"]
    assert ts.n_features == 1
    assert set(np.concatenate([ts[1].y_support, ts[1].y_query])) == {20.0, 40.0}


def test_different_seeds_shuffle_differently(curves):
    a = load_csv_dir(curves, n_support=4, seed=0)
    b = load_csv_dir(curves, n_support=4, seed=1)
    assert not np.array_equal(a.X_support, b.X_support)
    assert pickle.loads(pickle.dumps(a)).info == a.info


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,y\n1,2\n3,oops\n", r"line 3, column 'y' has 'oops', which is not a number"),
        ("a,y\n1,2\n3,\n", r"line 3, column 'y' is empty \(missing value\)"),
        ("a,y\n1,2\n3,inf\n", r"line 3, column 'y' has 'inf'; values must be finite"),
        ("a,y\n1,2\n3,4,5\n", r"line 3: 3 fields, but the header has 2"),
        ("a,a\n1,2\n", r"duplicate"),
        ("", r"empty file"),
    ],
)
def test_bad_files_are_named_with_line_and_column(tmp_path, text, match):
    write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as info:
        load_csv_dir(tmp_path, n_support=1)
    assert "bad.csv" in str(info.value)


def test_column_errors(curves, tmp_path):
    with pytest.raises(ValueError, match="target column 'why' not found.*Did you mean 'y'"):
        load_csv_dir(curves, target="why")
    with pytest.raises(ValueError, match="also listed as a feature"):
        load_csv_dir(curves, target="y", features=["a", "y"])
    write(curves / "curve_9.csv", "a,c,y\n1,2,3\n")
    with pytest.raises(ValueError, match=r"curve_9.csv: columns \['b'\] are missing"):
        load_csv_dir(curves, target="y", n_support=1)


def test_short_files_raise_or_are_skipped(curves):
    with pytest.raises(ValueError, match="'curve_0.csv' has 9 rows; n_support=5 \\+ n_query=5 need 10"):
        load_csv_dir(curves, n_support=5, n_query=5)
    with pytest.warns(UserWarning, match="skipped 1 file"):
        ts = load_csv_dir(curves, n_support=5, n_query=5, skip_short=True)
    assert [i["file"] for i in ts.info] == ["curve_1.csv", "curve_2.csv", "curve_3.csv"]


def test_bad_arguments(tmp_path, curves):
    with pytest.raises(FileNotFoundError, match="path"):
        load_csv_dir(tmp_path / "nope")
    with pytest.raises(ValueError, match="no file matching"):
        load_csv_dir(curves, pattern="*.tsv")
    with pytest.raises(ValueError, match="n_tasks.*only 4"):
        load_csv_dir(curves, n_tasks=5)
    with pytest.raises(TypeError, match="n_support"):
        load_csv_dir(curves, n_support=2.0)
    with pytest.raises(ValueError, match="group column 'shop' not found"):
        load_csv_long(write(tmp_path / "l.csv", "store,x,y\na,1,2\n"), group="shop")
    with pytest.raises(TypeError, match="it accepts"):
        mf.tasks.load("stations", n_supprt=3)
