"""Atomic file writes: a crash (even SIGKILL) leaves the old file or the new one, never a broken one.

Write to a temporary file beside the target, fsync it, then ``os.replace`` it over the target (atomic on
POSIX within one folder). Used for result Datasets, checkpoints and figures.

A writer holds an advisory lock (``flock``) on its temporary file until the rename, so a temporary file left
by a killed writer is recognisable: ours by name (``.NAME.<12 hex>SUFFIX``), unlocked and untouched for a
minute. The next write of the same target removes such leftovers (:func:`clean_stale_temps`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, leftovers are not cleaned
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_path", "temp_file_beside", "clean_stale_temps", "check_writable", "write_bytes_atomic", "write_bytes_exclusive",
           "STALE_AFTER_S"]

STALE_AFTER_S = 60.0  # a live writer's temporary file is locked; this also covers the instant before it locks
_PROBE_BYTES = 1 << 20


def _is_ours(name: str, target: str, suffix: str) -> bool:
    return re.fullmatch(rf"\.{re.escape(target)}\.[0-9a-f]{{12}}{re.escape(suffix)}", name) is not None


def clean_stale_temps(path: str | os.PathLike[str], suffix: str = ".tmp", older_than: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporary files of ``path`` left by killed writers; returns what was removed.

    Only files named as :func:`temp_file_beside` names them, regular, unmodified for ``older_than`` seconds and
    not locked by a live writer are removed.
    """
    if fcntl is None:
        return []
    path = Path(path)
    removed: list[Path] = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}"):
        try:
            info = candidate.lstat()
        except OSError:
            continue
        if not _is_ours(candidate.name, path.name, suffix) or not stat.S_ISREG(info.st_mode):
            continue
        if time.time() - info.st_mtime < older_than:
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer is alive
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a temporary file next to ``path``; returns ``(fd, name)`` like ``mkstemp``, the fd locked.

    Unlike ``mkstemp`` (always 0o600), the file gets the permissions a plain ``open`` would give: those of the
    file it will replace, else 0o666 minus the umask, so a renamed checkpoint or figure stays readable as usual.
    Keep the fd open until the file is renamed: its lock tells :func:`clean_stale_temps` the writer is alive.
    """
    clean_stale_temps(path, suffix)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
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
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # nothing left after a successful replace
        os.close(fd)  # releases the lock


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[: 1 << 24]):]


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | memoryview, suffix: str = ".tmp") -> Path:
    """Write ``data`` to ``path`` atomically with plain ``os.write`` calls (a full disk raises ``OSError``)."""
    path = Path(path)
    with atomic_path(path, suffix) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0))
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    return path


def write_bytes_exclusive(path: str | os.PathLike[str], data: bytes | memoryview) -> bool:
    """Create ``path`` with ``data``, whole or not at all, only if it does not exist yet: ``False`` when another
    writer created it first (two processes racing to create one file never replace each other's)."""
    path = Path(path)
    fd, tmp = temp_file_beside(path)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)


def check_writable(path: str | os.PathLike[str], nbytes: int = _PROBE_BYTES) -> None:
    """Raise ``OSError`` unless ``nbytes`` can be written beside ``path`` (folder writable, space left).

    Writes and removes a probe file, so a read-only folder, a full disk or a file-size limit is found before a
    long computation rather than after it; ``path`` itself is not touched.
    """
    path = Path(path)
    try:
        info = os.statvfs(path.parent)
    except (AttributeError, OSError):
        info = None
    if info is not None and info.f_bavail * info.f_frsize < nbytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.parent))
    fd, tmp = temp_file_beside(path, ".probe")
    try:
        _write_all(fd, bytes(nbytes))
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)
