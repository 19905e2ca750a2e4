"""Model files: a fitted estimator as arrays and a JSON description, behind a checked header.

Layout (format 2): the magic line ``METAFAST-MODEL\\n``, one line of JSON (the header), then a
zip archive read with ``np.load(..., allow_pickle=False)``: ``description.json`` (the object
tree: estimator, parameters and fitted state, recursively; see ``metafast._model_state``) and one
``.npy`` member per array.  The header carries the format number, the metafast / numpy /
scikit-learn / Python versions that wrote the file, the archive's size and SHA-256, and free-form
metadata (learner, basis, data shape, fit time), at most ``MAX_HEADER_BYTES`` of JSON.

Nothing in a format-2 file is executable.  Loading rebuilds objects only from an allow-list:
metafast's own classes and the classes plugins declare through the ``metafast_model_types``
hook (``metafast._model_types``); an unknown class name is refused, whoever wrote the file.
scikit-learn objects inside a basis are stored with skops, and types skops does not trust by
default are refused unless the caller trusts the file (``trusted=True`` or a list of type names).

Format 1 (metafast 0.4 and earlier) held a pickle: a forged header can make it run any code, so
``load_model`` reads one only with ``trusted=True`` (and a ``LegacyModelWarning``); ``read_header``
never unpickles.  Version rule, for both formats: the metafast version must be the installed one
(fitted attributes may change in any release) and numpy's major version must match.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from metafast._model_skops import SkopsCodec, UntrustedTypes
from metafast._model_state import RefusedClass, StateError, decode, encode
from metafast._model_types import allowed_types
from metafast._version import __version__

MAGIC = b"METAFAST-MODEL\n"
FORMAT = 2
LEGACY_FORMAT = 1
MAX_HEADER_BYTES = 1 << 20
"""The header line (metadata included) is at most 1 MiB; ``save_model`` refuses a larger one."""
_DESCRIPTION = "description.json"
_TRUST_HINT = "load_model(path, trusted=True) or 'metafast predict --trust-model'"


class UntrustedModelError(ValueError):
    """The file needs code or types nobody said are safe; the message says what and how to trust it."""


class LegacyModelWarning(UserWarning):
    """A trusted format-1 (pickle) model file was loaded: re-save it to get a file without code."""


def _versions() -> dict:
    import sklearn

    return {
        "metafast": __version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------- writing
def save_model(model: Any, path, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (atomically: a partial file never replaces a good one); returns
    the path.  ``metadata`` must be a JSON-serialisable dict of at most about 1 MiB as JSON."""
    header = {
        "format": FORMAT,
        "versions": _versions(),
        "class": type(model).__name__,
        "metadata": _checked_metadata(metadata),
    }
    payload = _archive(model)
    header.update(payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    line = json.dumps(header, sort_keys=True, default=_json_default).encode() + b"\n"
    if len(line) > MAX_HEADER_BYTES:
        raise ValueError(
            f"argument 'metadata' takes {len(line)} bytes as JSON; a model file's header holds "
            f"at most {MAX_HEADER_BYTES} bytes (1 MiB): keep large data out of the metadata"
        )
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


def _checked_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"argument 'metadata' must be a dict; got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"argument 'metadata' is not JSON-serialisable: {exc}") from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _archive(model: Any) -> bytes:
    """The zip archive of ``model``: description.json and one .npy member per array."""
    names: dict[type, str] = {}
    for name, cls in allowed_types().items():
        names.setdefault(cls, name)
    try:
        description, arrays = encode(model, names, SkopsCodec())
    except StateError as exc:
        raise TypeError(f"cannot save the {type(model).__name__}: {exc}") from None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_DESCRIPTION, json.dumps({"root": description}, allow_nan=False, separators=(",", ":")))
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- reading
def read_header(path) -> dict:
    """The checked header of a model file of either format (nothing is unpickled or rebuilt);
    ValueError naming the file otherwise."""
    header, _ = _read(path, payload=False)
    return header


def load_model(path, trusted: bool | Iterable[str] = False) -> Any:
    """The estimator saved by :func:`save_model`, after checking header, versions and checksum.

    ``trusted``: False (default) rebuilds only allow-listed classes and the scikit-learn types
    skops trusts; a list of type names trusts those types in skops payloads too; True trusts the
    file entirely, which format-1 (pickle) files need: give it only for files you wrote.
    """
    header, payload = _read(path, payload=True)
    _check_versions(path, header)
    if header["format"] == LEGACY_FORMAT:
        return _load_legacy(path, header, payload, trusted)
    return _rebuild(str(path), payload, trusted)


def _load_legacy(path, header: dict, payload: bytes, trusted) -> Any:
    name = str(path)
    if trusted is not True:
        raise UntrustedModelError(
            f"model file {name!r} has format 1, which holds a pickle: loading it can run any code its "
            f"author put in it, and a checksum cannot tell who that was.  If you wrote it yourself, "
            f"load it with {_TRUST_HINT}, then save it again (format {FORMAT} holds no code)"
        )
    warnings.warn(
        f"loading the format-1 (pickle) model file {name!r} because it is trusted; save it again "
        f"to get a format-{FORMAT} file that holds no code",
        LegacyModelWarning,
        stacklevel=3,
    )
    try:
        return pickle.loads(payload)
    except Exception as exc:  # the checksum matched, so this is an environment problem
        raise ValueError(
            f"model file {name!r}: could not rebuild the {header.get('class', 'model')} ({type(exc).__name__}: {exc})"
        ) from None


def _rebuild(name: str, payload: bytes, trusted) -> Any:
    try:
        archive = np.load(io.BytesIO(payload), allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"model file {name!r} has a damaged archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"model file {name!r} has a damaged archive (not a zip of arrays)")
    allowed = allowed_types()
    codec = SkopsCodec(trusted, own_types=[f"{c.__module__}.{c.__qualname__}" for c in allowed.values()])
    with archive:
        try:
            return decode(_description(name, archive), allowed, lambda key: _member(archive, key), codec)
        except RefusedClass as exc:
            raise UntrustedModelError(
                f"model file {name!r} names the class {exc.name!r}, which is not on the allow-list of "
                "classes a model file may rebuild (metafast's own and those plugins declare through "
                "metafast_model_types); refused, nothing in the file was run.  If it comes from a plugin, "
                "install that plugin"
            ) from None
        except UntrustedTypes as exc:
            raise UntrustedModelError(
                f"model file {name!r} holds scikit-learn objects with types that skops does not trust by "
                f"default: {', '.join(exc.types)}.  Load it only if you trust whoever wrote it: "
                f"{_TRUST_HINT} (or trusted=[those type names])"
            ) from None
        except StateError as exc:
            raise ValueError(f"model file {name!r} cannot be rebuilt: {exc}") from None
        except (Exception, RecursionError) as exc:  # e.g. a state that fails a class's own checks
            raise ValueError(f"model file {name!r} cannot be rebuilt ({type(exc).__name__}: {exc})") from None


def _description(name: str, archive) -> Any:
    if _DESCRIPTION not in archive.files:
        raise ValueError(f"model file {name!r} has no {_DESCRIPTION} in its archive")
    raw = archive[_DESCRIPTION]
    try:
        description = json.loads(bytes(raw).decode()) if isinstance(raw, bytes) else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        description = None
    if not isinstance(description, dict) or "root" not in description:
        raise ValueError(f"model file {name!r} has a damaged {_DESCRIPTION}")
    return description["root"]


def _member(archive, key: str) -> Any:
    if key not in archive.files or key == _DESCRIPTION:
        raise StateError(f"the description refers to the array {key!r}, which the archive lacks")
    return archive[key]


def _read(path, payload: bool) -> tuple[dict, bytes]:
    name = str(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError(
                    f"{name!r} is not a metafast model file (no METAFAST-MODEL header); "
                    "write one with 'metafast fit' or metafast.model_file.save_model"
                )
            line = fh.readline(MAX_HEADER_BYTES + 1)
            data = fh.read() if payload else b""
    except OSError as exc:
        raise ValueError(f"cannot read model file {name!r}: {exc.strerror or exc}") from None
    if not line.endswith(b"\n"):
        raise ValueError(f"model file {name!r} has a damaged header (no end of line within {MAX_HEADER_BYTES} bytes)")
    try:
        header = json.loads(line.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"model file {name!r} has a damaged header (not JSON)") from None
    _check_header(name, header)
    if payload and (
        len(data) != header["payload_bytes"] or hashlib.sha256(data).hexdigest() != header["payload_sha256"]
    ):
        raise ValueError(
            f"model file {name!r} is truncated or corrupted ({len(data)} bytes of model "
            f"data, the header says {header['payload_bytes']}; checksum mismatch)"
        )
    return header, data


def _check_header(name: str, header: Any) -> None:
    """The header's shape: a damaged or hand-made header is a ValueError, never a KeyError later."""
    if not isinstance(header, dict) or not isinstance(header.get("versions"), dict):
        raise ValueError(f"model file {name!r} has a damaged header (not a metafast header object)")
    if header.get("format") not in (FORMAT, LEGACY_FORMAT) or isinstance(header.get("format"), bool):
        raise ValueError(
            f"model file {name!r} has format {header.get('format')!r}; this metafast "
            f"{__version__} reads formats {LEGACY_FORMAT} and {FORMAT}: refit the model with it"
        )
    header.setdefault("metadata", {})
    problems = [
        key
        for key, kind in (("metadata", dict), ("payload_bytes", int), ("payload_sha256", str))
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool)
    ]
    if not isinstance(header.get("class", ""), str):
        problems.append("class")
    if problems:
        raise ValueError(f"model file {name!r} has a damaged header (bad {', '.join(problems)})")


def _check_versions(path, header: dict) -> None:
    saved, now = header["versions"], _versions()
    problems = []
    if str(saved.get("metafast", "")) != now["metafast"]:
        problems.append(f"metafast {saved.get('metafast')} (installed: {now['metafast']})")
    if str(saved.get("numpy", "")).split(".")[:1] != now["numpy"].split(".")[:1]:
        problems.append(f"numpy {saved.get('numpy')} (installed: {now['numpy']})")
    if problems:
        raise ValueError(
            f"model file {str(path)!r} was written by "
            + " and ".join(problems)
            + ", which this installation cannot read safely: refit the model here"
        )
