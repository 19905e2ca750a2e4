"""Tasks from tables: one task per group of a pandas DataFrame (or a CSV file).

Every row of a group goes into its task: ``n_support`` rows drawn at random (reproducibly for
``seed``) form the support set and the rest the query set (or exactly ``n_query`` of the rest
when given).  ``n_support=None`` puts every row of a group in the support and leaves the query
empty: whole groups as training tasks (learners meta-train on every labelled row; hold groups
out for testing with :func:`metafast.tasks.split_groups`).  Order, documented so nothing is silently reordered: tasks follow the order in
which their group first appears in the frame; inside the support and the query sets rows keep
their frame order.  ``info`` holds ``group`` (the key, a tuple for several group columns) and
``support_rows`` / ``query_rows`` (positions in the frame, for ``df.iloc``), and, when
``n_query`` is given, ``unused_rows``: the group's rows left out of the task.

pandas is an optional dependency (the ``frames`` extra), imported only here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from metafast._validation import check_positive_int
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet, _offsets_from_sizes


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "metafast.tasks.from_frame/from_csv need pandas; install it with "
            "`pip install pandas` or `pip install metafast[frames]`"
        ) from None
    return pd


def _as_list(value, name: str) -> list:
    if isinstance(value, str):
        return [value]
    try:
        out = list(value)
    except TypeError:
        return [value]
    if not out:
        raise ValueError(f"parameter {name!r} is empty; name at least one column")
    return out


def _scalar(v):
    return v.item() if isinstance(v, np.generic) else v


def _key(v):
    return tuple(_scalar(x) for x in v) if isinstance(v, tuple) else _scalar(v)


def from_frame(
    df,
    group: str | Sequence[str],
    features: str | Sequence[str],
    target: str,
    n_support: int | None,
    n_query: int | None = None,
    seed: Any = 0,
    *,
    drop_small: bool = False,
    dropna: bool = False,
    dtype=None,
) -> TaskSet:
    """One task per group of ``df``: features -> X, target -> y.

    Errors name the column, the group and the row: a missing column, a non-numeric feature or
    target, NaN/inf values (or ``dropna=True``: such rows are dropped and counted in a warning),
    groups with fewer than ``n_support + max(n_query, 1)`` rows (or ``drop_small=True``: such
    groups are dropped and counted in a warning).  ``n_support=None``: whole groups, every row
    in the support, no query rows (``n_query`` must then be None).  An integer target gives int64 class labels,
    a float target float y.  ``dtype`` forces X's float dtype (default: float32 only when every
    feature column is float32).
    """
    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"argument 'df' must be a pandas DataFrame; got {type(df).__name__}")
    groups, feats = _as_list(group, "group"), _as_list(features, "features")
    if isinstance(target, (list, tuple)):
        raise TypeError("parameter 'target' must be one column name")
    wanted = groups + feats + [target]
    missing = [c for c in dict.fromkeys(wanted) if c not in df.columns]
    if missing:
        raise ValueError(
            f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found in "
            f"the DataFrame; its columns are {', '.join(map(repr, list(df.columns)[:20]))}"
        )
    repeated = {c: int(np.sum(df.columns == c)) for c in dict.fromkeys(wanted)}
    repeated = {c: n for c, n in repeated.items() if n > 1}
    if repeated:
        c, n = next(iter(repeated.items()))
        raise ValueError(
            f"column {c!r} appears {n} times in the DataFrame, so which one to use is ambiguous"
            f"{' (also ' + ', '.join(map(repr, list(repeated)[1:])) + ')' if len(repeated) > 1 else ''}; "
            "rename the copies or drop them, e.g. df.loc[:, ~df.columns.duplicated()]"
        )
    if target in feats or target in groups or set(feats) & set(groups):
        raise ValueError("the group, feature and target columns must be different columns")
    whole_groups = n_support is None
    if whole_groups:
        if n_query is not None:
            raise ValueError(
                f"n_support=None puts every row of a group in the support: n_query must then be None (got {n_query!r})"
            )
        n_support = 0
    else:
        n_support = check_positive_int(n_support, "n_support")
    if n_query is not None:
        n_query = check_positive_int(n_query, "n_query")

    # group codes in order of first appearance (NaN keys are kept and reported, never dropped)
    if len(groups) == 1:
        codes, uniques = pd.factorize(df[groups[0]], sort=False, use_na_sentinel=True)
        keys = [_key(u) for u in uniques]
    else:
        codes, uniques = pd.MultiIndex.from_frame(df[groups]).factorize()
        keys = [_key(tuple(u)) for u in uniques]
    codes = np.asarray(codes, dtype=np.int64)
    bad_key = codes < 0
    if len(groups) > 1:
        bad_key |= df[groups].isna().any(axis=1).to_numpy()

    def group_of(row: int) -> str:
        return "a missing group key" if codes[row] < 0 else f"group {keys[codes[row]]!r}"

    # numeric checks, naming the column and the first offending group
    arrays = {}
    for col in feats + [target]:
        s = df[col]
        if pd.api.types.is_complex_dtype(s):
            raise TypeError(
                f"{'feature' if col in feats else 'target'} column {col!r} is complex "
                f"(dtype {s.dtype}): complex values are not supported; split it into real "
                "and imaginary columns if both matter"
            )
        if not pd.api.types.is_numeric_dtype(s):
            s = _numeric_or_raise(pd, s, col, "feature" if col in feats else "target", group_of)
        arrays[col] = s.to_numpy()

    X = np.column_stack([arrays[c].astype(np.float64, copy=False) for c in feats])
    y_raw = arrays[target]
    classification = y_raw.dtype.kind in "iu"
    y = y_raw.astype(np.int64) if classification else y_raw.astype(np.float64)
    if dtype is None:
        dtype = np.float32 if all(df[c].dtype == np.float32 for c in feats) else np.float64
    elif np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"parameter 'dtype' must be float32 or float64; got {np.dtype(dtype)}")

    finite = np.isfinite(X).all(axis=1) & (np.isfinite(y) if not classification else True)
    bad_rows = ~finite | bad_key
    keep = np.ones(len(df), dtype=bool)
    if bad_rows.any():
        if not dropna:
            row = int(np.flatnonzero(bad_rows)[0])
            if bad_key[row]:
                raise ValueError(
                    f"row {row} has a missing group key (NaN in {groups}); pass dropna=True to drop such rows"
                )
            cols = [c for j, c in enumerate(feats) if not np.isfinite(X[row, j])]
            if not classification and not np.isfinite(y[row]):
                cols.append(target)
            kind = "NaN" if any(np.isnan(arrays[c][row]) for c in cols) else "inf"
            raise ValueError(
                f"column {cols[0]!r} has {kind} at row {row} ({group_of(row)}); {int(bad_rows.sum())} "
                "rows have NaN/inf in all; pass dropna=True to drop them"
            )
        keep &= ~bad_rows
        warnings.warn(
            f"from_frame: dropped {int(bad_rows.sum())} rows with NaN/inf values or missing group keys (dropna=True)",
            UserWarning,
            stacklevel=2,
        )

    sizes = np.bincount(codes[keep], minlength=len(keys))
    need = 1 if whole_groups else n_support + (n_query if n_query is not None else 1)
    small = np.flatnonzero(sizes < need)
    if small.size:
        if not drop_small:
            listed = ", ".join(f"{keys[g]!r} ({sizes[g]} rows)" for g in small[:5])
            more = f" and {small.size - 5} more" if small.size > 5 else ""
            raise ValueError(
                f"{small.size} group{'s' if small.size > 1 else ''} ha{'ve' if small.size > 1 else 's'} fewer "
                f"than {'1 labelled row' if whole_groups else 'n_support + ' + ('n_query' if n_query is not None else '1 query row')} = {need} rows: "
                f"{listed}{more}; pass drop_small=True to drop them"
            )
        keep &= ~np.isin(codes, small)
        warnings.warn(
            f"from_frame: dropped {small.size} groups with fewer than {need} rows "
            f"({int(sizes[small].sum())} rows; drop_small=True)",
            UserWarning,
            stacklevel=2,
        )
    pos = np.flatnonzero(keep)
    if pos.size == 0:
        raise ValueError("no rows are left to make tasks from")

    # renumber the surviving groups 0..T-1 in first-appearance order
    alive = np.flatnonzero(np.bincount(codes[pos], minlength=len(keys)) > 0)
    remap = np.full(len(keys), -1, dtype=np.int64)
    remap[alive] = np.arange(alive.size)
    g = remap[codes[pos]]

    # random rank of each row inside its group, then take the first n_support as support
    rng = np.random.default_rng(resolve_seed(seed))
    by_group = np.lexsort((rng.random(pos.size), g))
    counts = np.bincount(g, minlength=alive.size)
    starts = _offsets_from_sizes(counts)[:-1]
    rank = np.empty(pos.size, dtype=np.int64)
    rank[by_group] = np.arange(pos.size) - starts[g[by_group]]
    in_support = rank < n_support if not whole_groups else np.ones(pos.size, dtype=bool)
    in_query = ~in_support if n_query is None else (~in_support & (rank < n_support + n_query))

    def part(mask):
        sel = np.flatnonzero(mask)
        sel = sel[np.lexsort((sel, g[sel]))]  # by group, frame order inside a group
        rows = pos[sel]
        return rows, _offsets_from_sizes(np.bincount(g[sel], minlength=alive.size))

    s_rows, s_off = part(in_support)
    q_rows, q_off = part(in_query)
    info = [
        {
            "group": keys[k],
            "support_rows": s_rows[s_off[t] : s_off[t + 1]],
            "query_rows": q_rows[q_off[t] : q_off[t + 1]],
        }
        for t, k in enumerate(alive.tolist())
    ]
    if n_query is not None:  # rows beyond n_support + n_query were left out on request: say which
        u_rows, u_off = part(~in_support & ~in_query)
        for t, d in enumerate(info):
            d["unused_rows"] = u_rows[u_off[t] : u_off[t + 1]]
    return TaskSet(
        X[s_rows].astype(dtype, copy=False),
        y[s_rows],
        s_off,
        X[q_rows].astype(dtype, copy=False),
        y[q_rows],
        q_off,
        info=info,
    )


def _cell_kind(v) -> str:
    """Kind of a present cell: 'real', 'complex', 'text' (a number written as text) or 'bad'."""
    if isinstance(v, (bool, np.bool_)):
        return "bad"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "real"
    if isinstance(v, (complex, np.complexfloating)):
        return "complex"
    if isinstance(v, (str, bytes)):
        try:
            float(v)
        except ValueError:
            return "bad"
        return "text"
    return "bad"


_KIND_HINT = {
    "bad": "it holds values that are not numbers",
    "complex": "it holds complex values, which are not supported",
    "text": "it holds numbers stored as text; convert them with pd.to_numeric first",
}


def _numeric_or_raise(pd, s, col: str, what: str, group_of):
    """An object column holding only real numbers (and missing values) becomes float; anything
    else is a TypeError naming the first cell that is not a number, else the first complex or
    textual number (text is never parsed silently)."""
    missing = s.isna().to_numpy()
    kinds = np.array(
        ["missing" if gone else _cell_kind(v) for v, gone in zip(s.to_numpy(dtype=object), missing)], dtype=object
    )
    if s.dtype == object and np.isin(kinds, ("real", "missing")).all():
        return pd.Series(pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), index=s.index)
    for kind in ("bad", "complex", "text"):
        hits = np.flatnonzero(kinds == kind)
        if hits.size:
            row = int(hits[0])
            break
    else:
        kind, row = "bad", 0
    raise TypeError(
        f"{what} column {col!r} is not numeric (dtype {s.dtype}; {_KIND_HINT[kind]}): first offending "
        f"value {s.iloc[row]!r} at row {row}, {group_of(row)}"
    )


def from_csv(
    path,
    group,
    features,
    target,
    n_support: int | None,
    n_query: int | None = None,
    seed: Any = 0,
    *,
    read_csv_kwargs: dict | None = None,
    **kwargs,
) -> TaskSet:
    """:func:`from_frame` on ``pandas.read_csv(path, **read_csv_kwargs)``."""
    pd = _pandas()
    df = pd.read_csv(path, **(read_csv_kwargs or {}))
    return from_frame(df, group, features, target, n_support, n_query, seed, **kwargs)


#: pandas' default missing-value markers (read_csv's na_values); ``metafast fit``/``predict`` apply
#: them to every column but the group columns: there 'NA' is Namibia and 'None' a name, and only
#: an empty cell is a missing key
CSV_MISSING_MARKERS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


def is_real_numeric(series) -> bool:
    """A column of real numbers (int or float, any pandas dtype), not text, bool or complex."""
    pd = _pandas()
    return (
        pd.api.types.is_numeric_dtype(series)
        and not pd.api.types.is_bool_dtype(series)
        and not pd.api.types.is_complex_dtype(series)
    )
