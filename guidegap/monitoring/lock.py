"""One writer per training log: an advisory lock on a file beside the zarr store that names its writer.

Every append holds ``flock`` on ``.NAME.lock`` (beside the store) while it repairs and writes, so two appends
never interleave. The file keeps the last writer's pid and host: an append from another process while that
writer is still alive on this host is refused with a message naming it (two runs sharing a store would
replace each other's entries). A writer that died (a relaunched job) leaves nothing that blocks: the kernel
drops its lock, and its pid is no longer alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from guidegap.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: appends are not serialised there
    fcntl = None  # type: ignore[assignment]

__all__ = ["store_lock", "lock_path", "WAIT_S"]

WAIT_S = 60.0  # an append takes well under a second; a lock held longer belongs to a stuck writer


def lock_path(store: Path) -> Path:
    return store.parent / f".{store.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"


@contextlib.contextmanager
def store_lock(store: Path, wait: float = WAIT_S) -> Iterator[None]:
    """Hold the store's lock inside the block; refuse a second live writer (see the module docstring)."""
    if fcntl is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(store), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(f"the training log {str(store)!r} has been locked for {wait:.0f} s by {_describe(_holder(fd))}; "
                                     "stop that process, or give this run its own store= path.") from None
                time.sleep(0.05)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        last = _holder(fd)
        if (last.get("host") == me["host"] and isinstance(last.get("pid"), int) and last["pid"] != me["pid"]
                and _alive(last["pid"])):
            raise InputError(f"the training log {str(store)!r} is being written by another live process ({_describe(last)}); "
                             f"two runs in one log would replace each other's entries: give this run its own store= path, "
                             f"or stop that process (remove {lock_path(store).name} if it is not a guidegap run).")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**me, "since": time.time()}).encode(), 0)
        yield
    finally:
        os.close(fd)
