"""Training chunks from tables, built where the table is read: CSV and Parquet files, and the
partitions of a dask DataFrame, each turned into tasks by ``mf.tasks.from_frame``.

A task is one group of rows, so a group must not be split between two chunks (it would silently
become two tasks).  Files are read independently, so for them this is *checked*: once, on the
workers, every chunk's group keys are hashed and merged pairwise; a key seen in two chunks is a
``ValueError`` naming the key and both files.  A dask DataFrame is *made* to hold whole groups:
it is used as is when it is indexed by the (single) group column with known divisions (a
``set_index`` the user already paid for), and otherwise shuffled on the group columns
(``DataFrame.shuffle``, one all-to-all exchange of the rows, done once: the chunks are then
persisted on the workers).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: str) -> str:
    """'npz', 'csv' or 'parquet' from a file name (a compressed CSV such as x.csv.gz is 'csv')."""
    name = os.path.basename(path).lower()
    if name.endswith(".npz"):
        return "npz"
    for suffix, fmt in TABLE_FORMATS.items():
        if name.endswith(suffix) or any(name.endswith(suffix + z) for z in (".gz", ".bz2", ".zip", ".xz", ".zst")):
            return fmt
    raise ValueError(
        f"argument 'paths': cannot tell the format of {path!r} from its name "
        "(expected .npz from TaskSet.save, .csv or .parquet)"
    )


class FrameSpec:
    """The ``from_frame`` arguments that turn one table (a file or a partition) into tasks.

    The seed is resolved here, on the driver, and each table gets its own seed derived from it
    and the table's index: a rebuilt chunk draws the same support/query split as the lost one.
    """

    def __init__(self, group, features, target, n_support=None, n_query=None, seed: Any = 0, **kwargs):
        for name, value in (("group", group), ("features", features), ("target", target)):
            if value is None:
                raise ValueError(
                    f"argument {name!r} is needed to make tasks from tables "
                    "(the same group/features/target as mf.tasks.from_frame)"
                )
        self.group, self.features, self.target = group, features, target
        self.n_support, self.n_query = n_support, n_query
        self.seed = resolve_seed(seed)
        self.kwargs = kwargs

    @property
    def group_columns(self) -> list:
        return [self.group] if isinstance(self.group, str) else list(self.group)

    def tasks(self, df, index: int) -> TaskSet:
        from metafast.tasks._frames import from_frame

        rng = np.random.default_rng([self.seed, index])
        ts = from_frame(df, self.group, self.features, self.target, self.n_support, self.n_query, rng, **self.kwargs)
        # a training chunk keeps only each task's group key (the row positions are per table and
        # would cost three arrays per task on the worker)
        ts.info = [{"group": d["group"]} for d in ts.info]
        return ts


def read_table(path: str, fmt: str):
    """A CSV or Parquet file as a pandas DataFrame (on the worker that builds the chunk)."""
    from metafast.tasks._frames import _pandas

    pd = _pandas()
    if fmt == "csv":
        return pd.read_csv(path)
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(f"reading Parquet needs pyarrow: pip install 'metafast[dask]' ({exc})") from None


# ---------------------------------------------------------------------------- a dask DataFrame
class DataFrameSource:
    """Tasks from a dask DataFrame: one task per group (``mf.tasks.from_frame`` on each partition,
    same arguments), one chunk per partition, built on the workers from the partition's own graph
    (so a lost chunk is rebuilt from where the frame came from, e.g. re-reading its Parquet
    files).  A frame indexed by the group column with known divisions is used as is; any other is
    shuffled on the group columns first, so that every group lies in one partition."""

    def __init__(self, df, group, features, target, n_support=None, n_query=None, seed: Any = 0, **kwargs):
        try:
            import dask.dataframe as dd
        except ImportError:  # pragma: no cover - optional dependency
            raise ImportError("a dask DataFrame source needs dask[dataframe]: pip install 'metafast[dask]'") from None
        if not isinstance(df, dd.DataFrame):
            raise TypeError(f"argument 'df' must be a dask DataFrame; got {type(df).__name__}")
        self.spec = FrameSpec(group, features, target, n_support, n_query, seed, **kwargs)
        cols = self.spec.group_columns
        self.by_index = len(cols) == 1 and df.index.name == cols[0] and bool(df.known_divisions)
        if not self.by_index and df.index.name in cols:
            df = df.reset_index()  # the key is the index, without known divisions
        if not self.by_index:
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise ValueError(
                    f"argument 'group': column(s) {missing} not found in the dask DataFrame; "
                    f"its columns are {list(df.columns)[:20]}"
                )
            df = df.shuffle(on=cols)  # every row of a group into one partition
        self.df = df

    def __len__(self) -> int:
        return self.df.npartitions

    def recipes(self) -> list:
        """(delayed partition, label) of each chunk."""
        return [(part, f"{i} (partition {i} of the dask DataFrame)") for i, part in enumerate(self.df.to_delayed())]

    def build(self, part, index: int) -> TaskSet:
        if self.by_index:
            part = part.reset_index()
        return self.spec.tasks(part, index)

    def __repr__(self) -> str:
        how = "indexed by the group" if self.by_index else "shuffled on the group"
        return f"DataFrameSource({self.df.npartitions} partitions, {how})"


# ---------------------------------------------------------------------------- whole groups
def _key_hashes(chunk: TaskSet) -> np.ndarray:
    import pandas as pd

    keys = np.array([repr(d["group"]) for d in chunk.info], dtype=object)
    return pd.util.hash_array(keys) if keys.size else np.zeros(0, dtype=np.uint64)


def group_hashes(chunk: TaskSet, index: int):
    """(sorted key hashes, owning chunk of each, clash): a leaf of the whole-group check
    (``from_frame`` makes one task per group, so a chunk holds each key once)."""
    h = np.sort(_key_hashes(chunk), kind="stable")
    return h, np.full(h.size, index, dtype=np.int64), None


def merge_hashes(a, b):
    """Pairwise merge of two ``group_hashes`` results; the first clash found is kept."""
    if a[2] is not None or b[2] is not None:
        return None, None, a[2] if a[2] is not None else b[2]
    h = np.concatenate((a[0], b[0]))
    owner = np.concatenate((a[1], b[1]))
    order = np.argsort(h, kind="stable")
    h, owner = h[order], owner[order]
    dup = np.flatnonzero(h[1:] == h[:-1])
    clash = (int(h[dup[0]]), int(owner[dup[0]]), int(owner[dup[0] + 1])) if dup.size else None
    return h, owner, clash


def key_with_hash(chunk: TaskSet, value: int):
    """The group key of ``chunk`` whose hash is ``value`` (to name it in the error)."""
    hit = np.flatnonzero(_key_hashes(chunk) == np.uint64(value))
    return chunk.info[int(hit[0])]["group"] if hit.size else None


def split_group_error(key, label_a: str, label_b: str) -> ValueError:
    return ValueError(
        f"group {key!r} has rows in chunk {label_a} and in chunk {label_b}: a task's rows must all "
        "be in one file, or its group would silently become several tasks; write each group into "
        "a single file (e.g. dask.dataframe's shuffle or set_index on the group, then to_parquet)"
    )
