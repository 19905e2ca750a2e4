import sys

import numpy as np
import pytest

import metafast as mf

pd = pytest.importorskip("pandas")


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    n = 60
    return pd.DataFrame(
        {
            "g": rng.choice(["b", "a", "c", "d"], size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "y": rng.normal(size=n),
            "label": rng.integers(0, 3, size=n),
        }
    )


def test_every_row_kept_in_documented_order():
    df = _frame()
    ts = mf.tasks.from_frame(df, group="g", features=["x1", "x2"], target="y", n_support=3, seed=1)
    first_seen = list(dict.fromkeys(df["g"]))
    assert [d["group"] for d in ts.info] == first_seen
    rows = np.concatenate([np.concatenate([d["support_rows"], d["query_rows"]]) for d in ts.info])
    assert np.array_equal(np.sort(rows), np.arange(len(df)))  # nothing lost, nothing twice
    for t in ts:
        for part in ("support", "query"):
            r = t.info[f"{part}_rows"]
            assert np.all(np.diff(r) > 0)  # frame order inside the task
            assert (df["g"].iloc[r] == t.info["group"]).all()
            np.testing.assert_array_equal(getattr(t, f"X_{part}"), df[["x1", "x2"]].to_numpy()[r])
            np.testing.assert_array_equal(getattr(t, f"y_{part}"), df["y"].to_numpy()[r])
        assert t.n_support == 3
    again = mf.tasks.from_frame(df, "g", ["x1", "x2"], "y", 3, seed=1)
    other = mf.tasks.from_frame(df, "g", ["x1", "x2"], "y", 3, seed=2)
    assert again.equals(ts) and not other.equals(ts)


def test_n_query_multi_column_groups_and_labels():
    df = _frame()
    df["h"] = np.arange(len(df)) % 2
    ts = mf.tasks.from_frame(df, ["g", "h"], "x1", "label", n_support=2, n_query=2, seed=0, drop_small=True)
    assert all(isinstance(d["group"], tuple) and len(d["group"]) == 2 for d in ts.info)
    assert set(ts.query_sizes) == {2} and ts.y_support.dtype == np.int64 and ts.is_classification
    used = [np.concatenate([d["support_rows"], d["query_rows"], d["unused_rows"]]) for d in ts.info]
    sizes = df.groupby(["g", "h"])["x1"].transform("size").to_numpy()
    expected = np.flatnonzero(sizes >= 4)  # rows of the groups big enough to keep
    np.testing.assert_array_equal(np.sort(np.concatenate(used)), expected)  # each exactly once
    with pytest.raises(ValueError, match="dtype"):
        mf.tasks.from_frame(df, "g", "x1", "y", 2, dtype=np.int32)


def test_float32_features_stay_float32():
    df = _frame().astype({"x1": np.float32, "x2": np.float32})
    assert mf.tasks.from_frame(df, "g", ["x1", "x2"], "y", 2).dtype == np.float32


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="'nope'.*not found"):
        mf.tasks.from_frame(_frame(), "g", ["x1", "nope"], "y", 2)
    with pytest.raises(ValueError, match="'gg'"):
        mf.tasks.from_frame(_frame(), "gg", ["x1"], "y", 2)


def test_non_numeric_feature_is_named_with_group():
    df = _frame()
    df["s"] = df["x1"].astype(object)
    df.loc[7, "s"] = "oops"
    with pytest.raises(TypeError, match=f"feature column 's' is not numeric.*'oops' at row 7, group '{df.g[7]}'"):
        mf.tasks.from_frame(df, "g", ["s"], "y", 2)
    df["t"] = "text"
    with pytest.raises(TypeError, match="target column 't'"):
        mf.tasks.from_frame(df, "g", ["x1"], "t", 2)


def test_nan_and_inf_name_the_group_or_are_dropped_and_counted():
    df = _frame()
    df.loc[5, "x2"] = np.nan
    df.loc[9, "y"] = np.inf
    with pytest.raises(ValueError, match=f"column 'x2' has NaN at row 5 \\(group '{df.g[5]}'\\); 2 rows"):
        mf.tasks.from_frame(df, "g", ["x1", "x2"], "y", 2)
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        ts = mf.tasks.from_frame(df, "g", ["x1", "x2"], "y", 2, dropna=True)
    assert ts.X_support.shape[0] + ts.X_query.shape[0] == len(df) - 2
    df.loc[11, "g"] = None
    with pytest.raises(ValueError, match="row 11 has a missing group key"):
        mf.tasks.from_frame(df, "g", ["x1"], "label", 2)


def test_small_groups_raise_or_are_dropped_and_counted():
    df = _frame()
    df = pd.concat([df, pd.DataFrame({"g": ["tiny"], "x1": [0.0], "x2": [0.0], "y": [0.0], "label": [0]})])
    with pytest.raises(ValueError, match="1 group has fewer than .* 'tiny' \\(1 rows\\).*drop_small=True"):
        mf.tasks.from_frame(df, "g", ["x1"], "y", 2)
    with pytest.warns(UserWarning, match="dropped 1 groups"):
        ts = mf.tasks.from_frame(df, "g", ["x1"], "y", 2, drop_small=True)
    assert "tiny" not in [d["group"] for d in ts.info]
    with pytest.raises(ValueError, match="groups have fewer"):
        mf.tasks.from_frame(_frame(), "g", ["x1"], "y", n_support=40)


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(n_support=0), ValueError),
        (dict(n_support=2, n_query=0), ValueError),
        (dict(n_support=-2), ValueError),
        (dict(n_support=1.5), TypeError),
    ],
)
def test_bad_sizes(kwargs, err):
    with pytest.raises(err, match="n_support|n_query"):
        mf.tasks.from_frame(_frame(), "g", ["x1"], "y", **kwargs)


def test_not_a_frame():
    with pytest.raises(TypeError, match="DataFrame"):
        mf.tasks.from_frame({"g": [1]}, "g", ["x1"], "y", 2)


def test_from_csv(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "d.csv", index=False)
    a = mf.tasks.from_csv(tmp_path / "d.csv", "g", ["x1", "x2"], "y", 3, seed=1)
    b = mf.tasks.from_frame(pd.read_csv(tmp_path / "d.csv"), "g", ["x1", "x2"], "y", 3, seed=1)
    assert a.equals(b)


def test_missing_pandas_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        mf.tasks.from_frame(None, "g", ["x"], "y", 2)


def test_dropna_also_drops_missing_group_keys():
    df = _frame()
    df.loc[[3, 4], "g"] = None
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        ts = mf.tasks.from_frame(df, "g", ["x1"], "y", 2, dropna=True)
    rows = np.concatenate([np.concatenate([d["support_rows"], d["query_rows"]]) for d in ts.info])
    assert sorted(rows) == sorted(set(range(len(df))) - {3, 4})
