"""Task loaders for CSV data: a directory with one file per task, or one long-format table.

Both read with the standard ``csv`` module and numpy, check every value, and raise a
ValueError naming the file, line and column of the first bad one: nothing is silently dropped,
filled in or converted.  Rows of each task are shuffled with ``seed`` and split into
``n_support`` support rows and ``n_query`` query rows (``None``: all remaining rows).
"""

from __future__ import annotations

import csv
import difflib
import math
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import metafast


# ---------------------------------------------------------------------------------- arguments
def _count(value, name: str, *, minimum: int, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"argument {name!r} must be an integer{' or None' if allow_none else ''}; got {value!r}")
    if value < minimum:
        raise ValueError(f"argument {name!r} must be >= {minimum}; got {value}")
    return int(value)


def _column(name: str, header: Sequence[str], what: str, source: str) -> int:
    if name in header:
        return list(header).index(name)
    close = difflib.get_close_matches(name, header, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{source}: {what} column {name!r} not found; the columns are {list(header)}.{hint}")


# ---------------------------------------------------------------------------------- reading
def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of every non-blank data row; structural errors raised."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = None
            rows: list[tuple[int, list[str]]] = []
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank line
                if header is None:
                    header = [f.strip() for f in fields]
                    dup = sorted({h for h in header if header.count(h) > 1})
                    if dup or "" in header:
                        raise ValueError(
                            f"{path.name}, line {reader.line_num}: header has duplicate or empty column names {dup or ['']}"
                        )
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path.name}, line {reader.line_num}: {len(fields)} fields, but the header has {len(header)}"
                    )
                rows.append((reader.line_num, fields))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path.name}: not valid CSV: {exc}") from None
    if header is None:
        raise ValueError(f"{path.name}: empty file (no header line)")
    return header, rows


def _numbers(path: Path, header: Sequence[str], rows, columns: Sequence[int]) -> np.ndarray:
    """The chosen columns of ``rows`` as a float64 (n, len(columns)) array; every value checked."""
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    for i, (line, fields) in enumerate(rows):
        for j, c in enumerate(columns):
            text = fields[c].strip()
            try:
                value = float(text)
            except ValueError:
                problem = "is empty (missing value)" if not text else f"has {text!r}, which is not a number"
                raise ValueError(f"{path.name}, line {line}, column {header[c]!r} {problem}") from None
            if not math.isfinite(value):
                raise ValueError(f"{path.name}, line {line}, column {header[c]!r} has {text!r}; values must be finite")
            out[i, j] = value
    return out


def _resolve_columns(header, target, features, source: str) -> tuple[int, list[int]]:
    if target is None:
        target = header[-1]
    t = _column(target, header, "target", source)
    if features is None:
        cols = [i for i in range(len(header)) if i != t]
    else:
        if isinstance(features, str):
            features = [features]
        cols = [_column(f, header, "feature", source) for f in features]
    if not cols:
        raise ValueError(f"{source}: no feature columns (the only column is the target {header[t]!r})")
    if t in cols:
        raise ValueError(f"{source}: the target {header[t]!r} is also listed as a feature")
    return t, cols


def _split(
    groups: list[tuple[str, np.ndarray, np.ndarray]],
    n_support: int,
    n_query: int | None,
    n_tasks: int | None,
    seed,
    skip_short: bool,
    unit: str,
) -> metafast.tasks.TaskSet:
    """Shuffle each group's rows and cut them into support and query sets."""
    need = n_support + (n_query or 0)
    kept, short = [], []
    for key, X, y in groups:
        if X.shape[0] < need:
            if not skip_short:
                raise ValueError(
                    f"{unit} {key!r} has {X.shape[0]} rows; n_support={n_support} + "
                    f"n_query={n_query or 0} need {need} (pass skip_short=True to skip such {unit}s)"
                )
            short.append(key)
            continue
        kept.append((key, X, y))
    if short:
        warnings.warn(f"skipped {len(short)} {unit}(s) with fewer than {need} rows: {short}", UserWarning, stacklevel=3)
    if n_tasks is not None:
        if n_tasks > len(kept):
            raise ValueError(f"argument 'n_tasks' is {n_tasks}, but only {len(kept)} {unit}s are usable")
        kept = kept[:n_tasks]
    if not kept:
        raise ValueError(f"no usable {unit}: every one has fewer than {need} rows")
    rng = np.random.default_rng(seed)
    tasks = []
    for key, X, y in kept:
        order = rng.permutation(X.shape[0])
        s, q = order[:n_support], order[n_support : None if n_query is None else n_support + n_query]
        tasks.append(metafast.tasks.Task(X[s], y[s], X[q], y[q], info={unit: key, "n_rows": int(X.shape[0])}))
    return metafast.tasks.TaskSet.from_list(tasks)


# ---------------------------------------------------------------------------------- loaders
def load_csv_dir(
    path,
    target: str | None = None,
    features: Sequence[str] | None = None,
    n_support: int = 5,
    n_query: int | None = None,
    n_tasks: int | None = None,
    seed: int | None = 0,
    pattern: str = "*.csv",
    skip_short: bool = False,
) -> metafast.tasks.TaskSet:
    """One task per CSV file of a directory (files in name order, the same columns in each).

    ``target`` defaults to the last column and ``features`` to all the others.  ``n_tasks``
    keeps the first files; ``skip_short=True`` skips (with a warning) files with too few rows
    instead of raising.  ``info`` of each task holds the file name and its row count.
    """
    n_support = _count(n_support, "n_support", minimum=1, allow_none=False)
    n_query = _count(n_query, "n_query", minimum=0, allow_none=True)
    n_tasks = _count(n_tasks, "n_tasks", minimum=1, allow_none=True)
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"argument 'path': {str(directory)!r} is not a directory")
    files = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"argument 'path': no file matching {pattern!r} in {str(directory)!r}")
    groups = []
    first_header = None
    for file in files:
        header, rows = _read_table(file)
        if first_header is None:
            first_header = header
            t, cols = _resolve_columns(header, target, features, file.name)
            names = [header[t]] + [header[c] for c in cols]
        else:
            missing = [n for n in names if n not in header]
            if missing:
                raise ValueError(
                    f"{file.name}: columns {missing} are missing (they are in {files[0].name}); "
                    f"its columns are {header}"
                )
        t_i = header.index(names[0])
        c_i = [header.index(n) for n in names[1:]]
        data = _numbers(file, header, rows, [t_i] + c_i)
        groups.append((file.name, np.ascontiguousarray(data[:, 1:]), data[:, 0].copy()))
    return _split(groups, n_support, n_query, n_tasks, seed, skip_short, "file")


def load_csv_long(
    path,
    group: str,
    target: str | None = None,
    features: Sequence[str] | None = None,
    n_support: int = 5,
    n_query: int | None = None,
    n_tasks: int | None = None,
    seed: int | None = 0,
    skip_short: bool = False,
) -> metafast.tasks.TaskSet:
    """One task per value of the ``group`` column of one long-format CSV file.

    Groups are taken in order of first appearance; ``target`` defaults to the last column that
    is not ``group`` and ``features`` to all the other columns.  ``info`` holds the group value.
    """
    n_support = _count(n_support, "n_support", minimum=1, allow_none=False)
    n_query = _count(n_query, "n_query", minimum=0, allow_none=True)
    n_tasks = _count(n_tasks, "n_tasks", minimum=1, allow_none=True)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"argument 'path': {str(file)!r} is not a file")
    header, rows = _read_table(file)
    g = _column(group, header, "group", file.name)
    rest = [h for i, h in enumerate(header) if i != g]
    if not rest:
        raise ValueError(f"{file.name}: only the group column {group!r}; no target or features")
    t, cols = _resolve_columns(rest, target, features, file.name)
    t_i = header.index(rest[t])
    c_i = [header.index(rest[c]) for c in cols]
    if g in c_i:
        raise ValueError(f"{file.name}: the group column {group!r} cannot also be a feature")
    by_group: dict[str, list] = {}
    for line, fields in rows:
        key = fields[g].strip()
        if not key:
            raise ValueError(f"{file.name}, line {line}, column {group!r} is empty (missing group)")
        by_group.setdefault(key, []).append((line, fields))
    groups = []
    for key, group_rows in by_group.items():
        data = _numbers(file, header, group_rows, [t_i] + c_i)
        groups.append((key, np.ascontiguousarray(data[:, 1:]), data[:, 0].copy()))
    return _split(groups, n_support, n_query, n_tasks, seed, skip_short, "group")


DATA_DIR = Path(__file__).parent / "data"


def load_stations(
    n_support: int = 10, n_query: int | None = 10, n_tasks: int | None = None, seed: int | None = 0
) -> metafast.tasks.TaskSet:
    """The bundled demo: one task per weather-station file (synthetic, realistic shape).

    Features day_of_year and humidity_pct, target temperature_c; 12 stations, 48 rows each.
    """
    return load_csv_dir(
        DATA_DIR / "stations",
        target="temperature_c",
        n_support=n_support,
        n_query=n_query,
        n_tasks=n_tasks,
        seed=seed,
    )
