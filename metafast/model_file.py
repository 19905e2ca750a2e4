"""Model files: a fitted estimator pickled behind a checked header.

Layout: the magic line ``METAFAST-MODEL\\n``, one line of JSON (the header), then the pickle.  The
header carries the format number, the metafast / numpy / scikit-learn / Python versions that
wrote the file, the payload's size and SHA-256, and free-form metadata (learner, basis, data
shape, fit time).  ``load_model`` reads and checks the header *before* unpickling anything, so
a file from another metafast or numpy version, a truncated or corrupted file, or a file that is
not a model gets a ``ValueError`` naming the file and the problem, never an unpickler traceback.

Version rule: the metafast version must be the installed one (the pickle guard's rule, see
``metafast._pickle``: fitted attributes and kernel layouts may change in any release) and numpy's
major version must match (arrays pickled by numpy 2 do not load in numpy 1).  Like every pickle,
load only files you trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from metafast._version import __version__

MAGIC = b"METAFAST-MODEL\n"
FORMAT = 1
_MAX_HEADER = 1 << 20


def _versions() -> dict:
    import sklearn

    return {"metafast": __version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version()}


def save_model(model: Any, path, metadata: dict | None = None) -> Path:
    """Write ``model`` with a header to ``path`` (atomically: a partial file never replaces a good
    one); returns the path.  ``metadata`` must be JSON-serialisable."""
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    header = {"format": FORMAT, "versions": _versions(), "class": type(model).__name__,
              "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
              "metadata": metadata or {}}
    try:
        line = json.dumps(header, sort_keys=True, default=_json_default).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"argument 'metadata' is not JSON-serialisable: {exc}") from None
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC)
            fh.write(line)
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def read_header(path) -> dict:
    """The checked header of a model file (no unpickling); ValueError naming the file otherwise."""
    header, _ = _read(path, payload=False)
    return header


def load_model(path) -> Any:
    """The estimator saved by :func:`save_model`, after checking header, versions and checksum."""
    header, payload = _read(path, payload=True)
    _check_versions(path, header)
    try:
        return pickle.loads(payload)
    except Exception as exc:  # the checksum matched, so this is an environment problem
        raise ValueError(f"model file {str(path)!r}: could not rebuild the {header.get('class', 'model')} "
                         f"({type(exc).__name__}: {exc})") from None


def _read(path, payload: bool) -> tuple[dict, bytes]:
    name = str(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{name!r} is not a metafast model file (no METAFAST-MODEL header); "
                                 "write one with 'metafast fit' or metafast.model_file.save_model")
            line = fh.readline(_MAX_HEADER)
            data = fh.read() if payload else b""
    except OSError as exc:
        raise ValueError(f"cannot read model file {name!r}: {exc.strerror or exc}") from None
    try:
        header = json.loads(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"model file {name!r} has a damaged header (not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("versions"), dict):
        raise ValueError(f"model file {name!r} has a damaged header (not a metafast header object)")
    if header.get("format") != FORMAT:
        raise ValueError(f"model file {name!r} has format {header.get('format')!r}; this metafast "
                         f"{__version__} reads format {FORMAT}: refit the model with it")
    if payload:
        if len(data) != header.get("payload_bytes") or hashlib.sha256(data).hexdigest() != header.get("payload_sha256"):
            raise ValueError(f"model file {name!r} is truncated or corrupted ({len(data)} bytes of model "
                             f"data, the header says {header.get('payload_bytes')}; checksum mismatch)")
    return header, data


def _check_versions(path, header: dict) -> None:
    saved, now = header["versions"], _versions()
    problems = []
    if str(saved.get("metafast", "")) != now["metafast"]:
        problems.append(f"metafast {saved.get('metafast')} (installed: {now['metafast']})")
    if str(saved.get("numpy", "")).split(".")[:1] != now["numpy"].split(".")[:1]:
        problems.append(f"numpy {saved.get('numpy')} (installed: {now['numpy']})")
    if problems:
        raise ValueError(f"model file {str(path)!r} was written by " + " and ".join(problems)
                         + ", which this installation cannot read safely: refit the model here")
