"""Output files of the CLI and the benchmark report: checked before a run, written atomically.

A benchmark runs for minutes; finding only at the end that its output folder cannot be written
loses the run.  ``writable_dir`` / ``writable_file`` check an ``--out`` target up front (by
creating the folder and a probe file in it), and ``atomic_write`` writes through a temporary file
in the same folder and renames it into place, so a reader never sees a half-written file and an
interrupted run leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


class OutputError(OSError):
    """An output path that cannot be written; the message names the path and the reason."""


def writable_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder that exists (created if needed) and accepts new files."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{str(out)!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".metafast-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write into {str(out)!r}: {exc.strerror or exc}") from None
    return out


def writable_file(path: str | os.PathLike, default_name: str) -> Path:
    """The file ``path`` names (``default_name`` inside it when it is an existing folder), after
    checking that its folder accepts new files."""
    target = Path(path)
    if target.is_dir():
        target = target / default_name
    writable_dir(target.parent)
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; renamed to ``path`` when the block succeeds, removed
    when it fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or None)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
