"""Atomic file writes: a crash (even SIGKILL) leaves the old file or the new one, never a broken one.

Write to a temporary file beside the target, fsync it, then ``os.replace`` it over the target (atomic on
POSIX within one folder). Used for result Datasets, checkpoints and figures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "temp_file_beside"]


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a temporary file next to ``path``; returns ``(fd, name)`` like ``mkstemp``.

    Unlike ``mkstemp`` (always 0o600), the file gets the permissions a plain ``open`` would give: those of the
    file it will replace, else 0o666 minus the umask, so a renamed checkpoint or figure stays readable as usual.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        if path.is_file():
            try:
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            except OSError:
                pass
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {str(path)!r}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary file name to write; on a clean exit it is fsynced and renamed over ``path``.

    On any error (or interruption) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = temp_file_beside(path, suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # nothing left after a successful replace
