"""Tasks from tables on Dask workers: CSV and Parquet files, and a dask DataFrame grouped by a
key, fit like ``from_frame`` on the whole table in process; a group split between files is an
error naming it."""

import warnings

import numpy as np
import pytest

import metafast as mf
from metafast import distributed as mfd

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")


def _basis():
    return mf.basis.make("rbf", n_basis=10, length_scale=1.0).fit(np.linspace(-5, 5, 50)[:, None])


def _fit(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mf.MetaBayes(basis=_basis(), max_iter=6, tol=0, **kw).fit(data)


def _table(n_groups=60, seed=0):
    """A long table: groups of 4 to 11 rows of a sinusoid each, keys in shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in rng.permutation(n_groups):
        n = int(rng.integers(4, 12))
        x = rng.uniform(-5, 5, n)
        rows.append(pd.DataFrame({"g": f"s{g}", "x": x, "y": rng.uniform(0.1, 5) * np.sin(x - rng.uniform(0, 3))}))
    return pd.concat(rows, ignore_index=True)


def _write(df, tmp_path, fmt, n_files=3):
    """Whole groups per file."""
    keys = df["g"].unique()
    paths = []
    for i, part in enumerate(np.array_split(keys, n_files)):
        p = tmp_path / f"part{i}.{fmt}"
        sub = df[df["g"].isin(part)]
        sub.to_csv(p, index=False) if fmt == "csv" else sub.to_parquet(p, index=False)
        paths.append(p)
    return paths


def _same(a, b, rtol=1e-10):
    np.testing.assert_allclose(a.log_evidence_, b.log_evidence_, rtol=rtol)
    np.testing.assert_allclose(a.covariance_, b.covariance_, rtol=100 * rtol, atol=1e-13)
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=100 * rtol, atol=1e-13)
    np.testing.assert_allclose(a.noise_var_, b.noise_var_, rtol=10 * rtol)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_files_fit_like_the_whole_table_in_process(client, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    df = _table()
    local = _fit(mf.tasks.from_frame(df, "g", "x", "y", n_support=None))
    source = mfd.FileSource(_write(df, tmp_path, fmt), group="g", features=["x"], target="y")
    _same(_fit(source, backend="dask"), local)
    _same(_fit(source), local)  # the same files in process, as a stream
    # a support/query split with train_rows="all" trains on the same rows
    split = mfd.FileSource(source.paths, group="g", features="x", target="y", n_support=3, seed=5)
    _same(_fit(split, backend="dask"), local)


def test_dask_dataframe_grouped_by_a_key_fits_like_in_process(client):
    dd = pytest.importorskip("dask.dataframe")
    df = _table()
    local = _fit(mf.tasks.from_frame(df, "g", "x", "y", n_support=None))
    ddf = dd.from_pandas(df, npartitions=4, sort=False)  # groups straddle partitions
    shuffled = mfd.DataFrameSource(ddf, group="g", features=["x"], target="y")
    assert not shuffled.by_index
    _same(_fit(shuffled, backend="dask"), local)
    indexed = mfd.DataFrameSource(ddf.set_index("g"), group="g", features=["x"], target="y")
    assert indexed.by_index
    _same(_fit(indexed, backend="dask"), local)


def test_dask_dataframe_with_empty_partitions_and_a_key_in_the_index(client):
    dd = pytest.importorskip("dask.dataframe")
    df = _table(n_groups=3)  # 3 groups over 8 partitions: some stay empty
    local = _fit(mf.tasks.from_frame(df, "g", "x", "y", n_support=None))
    ddf = dd.from_pandas(df, npartitions=8, sort=False)
    _same(_fit(mfd.DataFrameSource(ddf, group="g", features="x", target="y"), backend="dask"), local)
    keyed = dd.from_pandas(df.set_index("g"), npartitions=2, sort=False)  # divisions unknown
    assert not keyed.known_divisions
    _same(_fit(mfd.DataFrameSource(keyed, group="g", features="x", target="y"), backend="dask"), local)
    empty = dd.from_pandas(df.iloc[:0], npartitions=1)
    with pytest.raises(ValueError, match="every partition is empty"):
        _fit(mfd.DataFrameSource(empty, group="g", features="x", target="y"), backend="dask")


def test_a_group_split_between_files_is_an_error_naming_it(client, tmp_path):
    df = _table(n_groups=10)
    key = df["g"].iloc[len(df) // 2]
    k = int(np.flatnonzero(df["g"].to_numpy() == key)[0]) + 2  # that group's third row
    a, b = df.iloc[:k], df.iloc[k:]  # only that group in both
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    source = mfd.FileSource([tmp_path / "a.csv", tmp_path / "b.csv"], group="g", features="x", target="y")
    for backend in ("dask", "threads"):
        with pytest.raises(ValueError, match=rf"group '{key}' has rows in chunk 0 \(file .*a.csv'\) and in chunk 1"):
            _fit(source, backend=backend)


def test_table_sources_reject_bad_arguments(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    with pytest.raises(ValueError, match="'target' is needed"):
        mfd.FileSource([tmp_path / "a.csv"], group="g", features="x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        mfd.FileSource([tmp_path / "a.txt"])
    with pytest.raises(ValueError, match="apply to CSV or Parquet"):
        mfd.FileSource([tmp_path / "a.npz"], group="g")
    ddf = dd.from_pandas(_table(n_groups=5), npartitions=2)
    with pytest.raises(ValueError, match=r"argument 'group'.*\['key'\] not found"):
        mfd.DataFrameSource(ddf, group="key", features="x", target="y")
    with pytest.raises(TypeError, match="must be a dask DataFrame"):
        mfd.DataFrameSource(_table(n_groups=5), group="g", features="x", target="y")
    with pytest.raises(TypeError, match="DataFrameSource"):
        _fit(ddf, backend="dask")
    (tmp_path / "bad.csv").write_text("g,x,y\na,1,2\na,2,oops\n")
    with pytest.raises(mfd.ChunkUnavailable, match=r"chunk 0 \(file .*bad.csv'\).*'y' is not numeric"):
        _fit(mfd.FileSource([tmp_path / "bad.csv"], group="g", features="x", target="y"), backend="dask")
