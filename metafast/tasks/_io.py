"""Saving and loading TaskSets as ``.npz`` files (the file codec: a leaf module that knows the
arrays and the header, not the TaskSet class).

The packed arrays are stored as they are (dtype and values exact).  ``info`` (a list of dicts)
is stored in one of two ways, both exact:

- *columns* (format version 2), when every task's info has the same keys in the same order and
  each key holds one plain type (float, int, bool or str) in every task: one array per key, or
  the value once in the header when all tasks share it.  The generated families and
  ``from_frame`` groups are like this, and a million tasks then load in a fraction of a second
  instead of parsing a million JSON objects;
- otherwise one JSON string with type tags, so tuples, numpy scalars and numpy arrays come back
  as what they were.

Version 1 files (JSON info only) still load.  Loading never unpickles anything
(``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

FORMAT = "metafast.TaskSet"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_ZIP_MAGIC = b"PK\x03\x04"
ARRAYS = ("X_support", "y_support", "support_offsets", "X_query", "y_query", "query_offsets")


def _encode(value, where: str):
    """JSON-safe form of an info value; raises TypeError naming the task and key."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":  # before float: np.float64 is one
        return {"__npscalar__": value.dtype.str, "v": _encode(value.item(), where)}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if np.isfinite(value):
            return value
        return {"__float__": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where} is a numpy array of dtype {value.dtype}; only numeric arrays can be saved")
        return {
            "__ndarray__": value.dtype.str,
            "shape": list(value.shape),
            "data": [_encode(v, where) for v in value.ravel().tolist()],
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string dict key {k!r}; only string keys can be saved")
        if any(k.startswith("__") for k in value):
            return {"__dict__": {k: _encode(v, where) for k, v in value.items()}}
        return {k: _encode(v, where) for k, v in value.items()}
    raise TypeError(
        f"{where} is a {type(value).__name__}, which cannot be saved; use numbers, strings, "
        "lists, tuples, dicts or numeric numpy arrays"
    )


def _decode(obj):
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__npscalar__" in obj:
        return np.dtype(obj["__npscalar__"]).type(_decode(obj["v"]))
    if "__ndarray__" in obj:
        data = [_decode(v) for v in obj["data"]]
        return np.asarray(data, dtype=np.dtype(obj["__ndarray__"])).reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(_decode(v) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {k: _decode(v) for k, v in obj["__dict__"].items()}
    return {k: _decode(v) for k, v in obj.items()}


def save_taskset(path, arrays: dict, infos: list, fields: dict | None = None) -> None:
    """Write a TaskSet's ``arrays`` (named as ``ARRAYS``), ``infos`` and further JSON header
    ``fields`` (e.g. the label setting) to ``path`` (``.npz`` is appended by numpy when missing)."""
    for t, d in enumerate(infos):
        for k in d:
            if not isinstance(k, str):
                raise TypeError(f"info key {k!r} of task {t} is not a string; only string keys can be saved")
    columns = info_columns(infos)
    if columns is None:
        info_fields = {
            "info": [{k: _encode(v, f"info key {k!r} of task {t}") for k, v in d.items()} for t, d in enumerate(infos)]
        }
        column_arrays = {}
    else:
        info_fields = {"info_columns": [spec for spec, _ in columns]}
        column_arrays = {f"{_COLUMN}{i}": arr for i, (_, arr) in enumerate(columns) if arr is not None}
    header = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **info_fields, **(fields or {})}, allow_nan=False)
    np.savez(path, header=np.asarray(header), **{a: arrays[a] for a in ARRAYS}, **column_arrays)


_COLUMN = "info_column_"
_COLUMN_DTYPES = {float: np.float64, int: np.int64, bool: np.bool_, str: np.str_}
_KIND_OF = {np.float64: "float", np.int64: "int", np.bool_: "bool", np.str_: "str"}
_DTYPE_KIND = {"float": "f", "int": "i", "bool": "b", "str": "U"}


def info_columns(infos: list) -> list | None:
    """[(header spec, array or None)] of the info dicts as columns, or None when they are not
    columnar (different keys, mixed or other types).  A spec is [key, kind] with its array, or
    [key, "const", value] when every task has the same JSON-plain value."""
    if not infos:
        return None
    keys = tuple(infos[0])
    if any(tuple(d) != keys for d in infos):
        return None
    out = []
    for k in keys:
        values = [d[k] for d in infos]
        first = values[0]
        kind = type(first)
        if any(type(v) is not kind for v in values):
            return None
        plain = first is None or kind in (bool, int, str) or (kind is float and np.isfinite(first))
        if plain and all(v == first for v in values):
            out.append(([k, "const", first], None))
            continue
        if kind not in _COLUMN_DTYPES or (kind is str and any(v.endswith("\x00") for v in values)):
            return None  # numpy strings drop trailing NULs: keep such text in JSON
        try:
            arr = np.array(values, dtype=_COLUMN_DTYPES[kind])
        except OverflowError:  # ints beyond int64
            return None
        out.append(([k, _KIND_OF[_COLUMN_DTYPES[kind]]], arr))
    return out


def _columns_to_info(path: str, specs, data, n_tasks: int) -> list:
    """The info dicts of a version-2 file's columns, each column checked against the header."""
    if not isinstance(specs, list):
        raise ValueError(f"{path!r} has a damaged header: 'info_columns' is not a list")
    keys, columns = [], []
    for i, spec in enumerate(specs):
        if not (isinstance(spec, list) and len(spec) in (2, 3) and isinstance(spec[0], str)):
            raise ValueError(f"{path!r} has a damaged header: info column {i} is {spec!r}")
        key, kind = spec[0], spec[1]
        if kind == "const" and len(spec) == 3:
            columns.append([spec[2]] * n_tasks)
        elif kind in _DTYPE_KIND and len(spec) == 2:
            name = f"{_COLUMN}{i}"
            if name not in data.files:
                raise ValueError(f"{path!r} is damaged: info column {key!r} is missing")
            arr = data[name]
            if arr.ndim != 1 or arr.shape[0] != n_tasks or arr.dtype.kind != _DTYPE_KIND[kind]:
                raise ValueError(
                    f"{path!r} is damaged: info column {key!r} is not {n_tasks} {kind} values "
                    f"(shape {arr.shape}, dtype {arr.dtype})"
                )
            columns.append(arr.tolist())
        else:
            raise ValueError(f"{path!r} has a damaged header: info column {i} is {spec!r}")
        keys.append(key)
    if not keys:
        return [{} for _ in range(n_tasks)]
    return [dict(zip(keys, row)) for row in zip(*columns)]


def load_taskset(path) -> tuple[dict, list, dict]:
    """(arrays, info, further header fields) of a file written by :func:`save_taskset`.

    Anything else (not a zip archive, a damaged archive, a header that is not the JSON object
    ``save`` writes) is a ValueError naming the file and the problem; a missing file is
    FileNotFoundError.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:  # FileNotFoundError / PermissionError as they are
        magic = fh.read(4)
    if magic != _ZIP_MAGIC:
        raise ValueError(f"{path!r} is not a metafast TaskSet file: not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [a for a in ("header", *ARRAYS) if a not in data.files]
            if missing:
                raise ValueError(f"{path!r} is not a metafast TaskSet file (missing {', '.join(missing)})")
            header = _read_header(path, data["header"])
            arrays = {a: data[a] for a in ARRAYS}
            if "info_columns" in header:
                n_tasks = max(int(arrays["support_offsets"].shape[0]) - 1, 0)
                info = _columns_to_info(path, header["info_columns"], data, n_tasks)
            else:
                info = [_decode(d) for d in header["info"]]
    except ValueError as exc:
        if str(exc).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is damaged or not a TaskSet file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{path!r} is damaged ({type(exc).__name__}: {exc})") from None
    return arrays, info, {k: v for k, v in header.items() if k not in ("format", "version", "info", "info_columns")}


def _read_header(path: str, raw: np.ndarray) -> dict:
    """The JSON header object, checked field by field."""
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path!r} is not a metafast TaskSet file: its header is not a string")
    try:
        header = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!r} has a damaged header (not JSON: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a metafast TaskSet file (its header is not a TaskSet header)")
    if header.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{path!r} was written in TaskSet format version {header.get('version')}; this "
            f"metafast reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if header.get("version") == 2 and "info_columns" in header:
        return header
    info = header.get("info")
    if not isinstance(info, list) or not all(isinstance(d, dict) for d in info):
        raise ValueError(f"{path!r} has a damaged header: 'info' is not a list of objects")
    return header
