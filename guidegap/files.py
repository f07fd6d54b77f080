"""Reading files safely: only regular files are read (a FIFO would block forever), and sizes are given in words."""

from __future__ import annotations

import os
import stat

from guidegap.errors import InputError

__all__ = ["require_regular_file", "human_bytes"]

_KINDS = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFDIR: "folder"}


def require_regular_file(path: str | os.PathLike[str], what: str = "a file") -> None:
    """Refuse anything but a regular file (a FIFO would block the reader forever, a device never ends)."""
    try:
        mode = os.stat(path).st_mode
    except PermissionError:
        raise InputError(f"cannot read {str(path)!r}: permission denied; make it readable (chmod u+r) or copy it.") from None
    except OSError as error:
        raise InputError(f"cannot read {str(path)!r}: {error.strerror or type(error).__name__}; check the path.") from None
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "special file")
        raise InputError(f"{str(path)!r}: expected {what} (a regular file), received a {kind}; pass the file itself.")


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"893 B"``, ``"1.2 MiB"``, ``"3.91 GiB"``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{n} B"
