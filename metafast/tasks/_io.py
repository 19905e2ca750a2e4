"""Saving and loading TaskSets as ``.npz`` files (the file codec: a leaf module that knows the
arrays and the header, not the TaskSet class).

The packed arrays are stored as they are (dtype and values exact).  ``info`` (a list of dicts)
is stored as one JSON string with type tags, so tuples, numpy scalars and numpy arrays come back
as what they were.  Loading never unpickles anything (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

FORMAT = "metafast.TaskSet"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
ARRAYS = ("X_support", "y_support", "support_offsets", "X_query", "y_query", "query_offsets")


def _encode(value, where: str):
    """JSON-safe form of an info value; raises TypeError naming the task and key."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if np.isfinite(value):
            return value
        return {"__float__": repr(value)}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"__npscalar__": value.dtype.str, "v": _encode(value.item(), where)}
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
    info = []
    for t, d in enumerate(infos):
        info.append({str(k): _encode(v, f"info key {k!r} of task {t}") for k, v in d.items()})
        for k in d:
            if not isinstance(k, str):
                raise TypeError(f"info key {k!r} of task {t} is not a string; only string keys can be saved")
    header = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "info": info, **(fields or {})},
                        allow_nan=False)
    np.savez(path, header=np.asarray(header), **{a: arrays[a] for a in ARRAYS})


def load_taskset(path) -> tuple[dict, list, dict]:
    """(arrays, info, further header fields) of a file written by :func:`save_taskset`.

    Anything else (not a zip archive, a damaged archive, a header that is not the JSON object
    ``save`` writes) is a ValueError naming the file and the problem; a missing file is
    FileNotFoundError.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:          # FileNotFoundError / PermissionError as they are
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
    except ValueError as exc:
        if str(exc).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is damaged or not a TaskSet file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{path!r} is damaged ({type(exc).__name__}: {exc})") from None
    return arrays, [_decode(d) for d in header["info"]], {k: v for k, v in header.items()
                                                         if k not in ("format", "version", "info")}


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
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} was written in TaskSet format version {header.get('version')}; this "
            f"metafast reads version {FORMAT_VERSION}"
        )
    info = header.get("info")
    if not isinstance(info, list) or not all(isinstance(d, dict) for d in info):
        raise ValueError(f"{path!r} has a damaged header: 'info' is not a list of objects")
    return header
