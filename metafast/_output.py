"""Output files of the ``metafast fit`` / ``predict`` commands: checked before the work, written
whole or not at all.

Rules (the reliability contract's "an output path that is an input is refused"):

- an output that is one of the command's inputs is refused (same resolved path, or the same
  file through a hard link or another name: ``os.path.samefile``);
- a directory, or an existing file that is not a regular file (a device node such as
  ``/dev/full``, a FIFO, a socket), is refused: a command writes regular files only;
- a symlink is written through: its target gets the new content and the link stays a link;
- the content goes to a temporary file beside the target and replaces it in one step, so a
  failing write (disk full, file too large, permission) leaves the previous file intact.

Every refusal and failure is an :class:`OutputError` (a ``ValueError``: the CLI prints it in one
line and exits with status 2).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


class OutputError(ValueError):
    """An output path the command refuses, or a write that failed: one line, exit status 2."""


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), option: str = "-o") -> Path:
    """The regular file to write for ``path`` (a symlink resolved to its target), or OutputError.

    ``inputs`` are the files the command reads: writing over one of them would destroy it.
    """
    text = os.fspath(path)
    if not text:
        raise OutputError(f"{option}: the output path is empty")
    real = Path(os.path.realpath(text))
    for given in inputs:
        if _same_file(real, given):
            raise OutputError(
                f"{option} {text!r} is the input {os.fspath(given)!r}: writing there would destroy "
                "it; choose another output file"
            )
    if real.is_dir():
        raise OutputError(f"{option} {text!r} is a directory; give the path of a file to write")
    if real.exists() and not real.is_file():
        raise OutputError(
            f"{option} {text!r} is not a regular file (a device, FIFO or socket); metafast writes "
            "regular files only: give a file path"
        )
    if not real.parent.is_dir():
        raise OutputError(f"{option} {text!r}: the folder {str(real.parent)!r} does not exist")
    return real


def _same_file(real: Path, other: str | os.PathLike) -> bool:
    other_real = os.path.realpath(os.fspath(other))
    if str(real) == other_real:
        return True
    try:
        return os.path.samefile(real, other_real)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def write_file(path: Path, write: Callable, binary: bool = False, what: str = "the output") -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then move it over ``path`` in one
    step.  Any OSError (ENOSPC, EFBIG, EACCES ...) becomes an OutputError and leaves ``path`` as
    it was.  A new file gets the usual permissions (0666 less the umask); a replaced one keeps its own."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {str(path)!r}: {exc.strerror or exc}") from None
    try:
        try:
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
                os.fchmod(fh.fileno(), _mode_for(path))
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(
                f"cannot write {what} to {str(path)!r}: {exc.strerror or exc}; the previous file, if any, is unchanged"
            ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
