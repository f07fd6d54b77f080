"""A training run folder (``--out``): one run at a time, a log that matches the checkpoint, resumes that say what they do.

- :func:`hold_run_folder`: an exclusive ``flock`` on ``.guidegap-run.lock`` inside the folder for the whole run;
  the file names the holder (pid, host, start time), so a second ``guidegap distill`` into the same ``--out``
  is refused by name instead of both writing one folder. The kernel drops the lock when a run dies.
- :func:`missing_checkpoint` / :func:`check_resumable`: ``--resume`` on a missing, empty or checkpoint-less folder
  starts at step 0 and says so (scripts pass ``resume=True`` to mean "continue if there is something to continue";
  :func:`check_resume_folder` refuses instead); a checkpoint without a stored training config, or ``--train-steps``
  below the stored step, is refused in one line instead of a ``KeyError`` or a step that was never trained.
- :func:`trim_log`: ``log.jsonl`` keeps only lines up to the step a run starts from (a resumed run repeats the
  steps after its checkpoint; a fresh run starts an empty log).
- :func:`divergence_message`: a non-finite loss saves nothing (the state that produced it would replace the last
  good checkpoint); the message says which checkpoint is kept. :func:`nonfinite_parameters` names NaN/Inf tensors.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from guidegap.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: run folders are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "hold_run_folder", "holding_run_folder", "missing_checkpoint", "check_resume_folder", "check_resumable", "check_steps", "trim_log",
           "divergence_message", "nonfinite_parameters", "is_main_rank"]

LOCK_NAME = ".guidegap-run.lock"


def is_main_rank() -> bool:
    """Rank 0 by the launcher's environment (torchrun / accelerate set ``RANK``), before any process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def _holder_text(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])) if "since" in holder else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {since}"


@contextlib.contextmanager
def hold_run_folder(out: str | os.PathLike[str], enabled: bool = True) -> Iterator[None]:
    """Hold ``out`` for one run inside the block; refuse a folder another live run holds (``enabled=False``: no-op)."""
    if not enabled or fcntl is None:
        yield
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{str(out)!r} is in use by another guidegap run ({_holder_text(path)}); two runs in one folder "
                             "would mix their checkpoints and logs: wait for it to finish, or choose another --out.") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)


def holding_run_folder(checkpoint_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``train(config, ..., resume=False)``: hold ``config.out`` for the whole call (rank 0 only), and say so
    on stderr when ``resume=True`` finds no checkpoint to continue from (the run starts at step 0)."""

    def decorate(train: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(train)
        def held(config: Any, *args: Any, resume: bool = False, **kwargs: Any) -> Any:
            main = is_main_rank()
            why = missing_checkpoint(config.out, checkpoint_name) if resume and main else None
            if why:
                print(f"guidegap: note: --resume: {why}; starting a new run at step 0.", file=sys.stderr)
            with hold_run_folder(config.out, enabled=main):
                return train(config, *args, resume=resume, **kwargs)

        return held

    return decorate


def missing_checkpoint(out: str | os.PathLike[str], checkpoint_name: str) -> str | None:
    """Why ``out`` holds no checkpoint to resume from (mistyped, empty, killed too early); ``None`` when it does."""
    out = Path(out)
    if not out.is_dir():
        return f"there is no run folder {str(out)!r}"
    if (out / checkpoint_name).is_file():
        return None
    contents = [p.name for p in out.iterdir() if p.name != LOCK_NAME]
    return f"{str(out)!r} is empty" if not contents else f"{str(out)!r} has no {checkpoint_name} (stopped before its first checkpoint)"


def check_resume_folder(out: str | os.PathLike[str], checkpoint_name: str) -> None:
    """Refuse ``--resume`` when ``out`` holds no checkpoint to continue from."""
    why = missing_checkpoint(out, checkpoint_name)
    if why:
        raise InputError(f"--resume: {why}, so there is nothing to continue; check the --out path, or drop --resume to "
                         "start a new run.")


def check_resumable(metadata: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse to resume a checkpoint that stores no training config (an export, another tool's file)."""
    if not isinstance(metadata.get("config"), Mapping) or "ema_updates" not in metadata:
        raise InputError(f"cannot resume {str(path)!r}: it stores no training state (metadata 'config' / 'ema_updates'); it "
                         "was not written by guidegap's trainer (an export or another tool's file): start a new --out.")


def check_same_run(metadata: Mapping[str, Any], mixed_precision: str, teacher: str | None,
                   path: str | os.PathLike[str]) -> None:
    """Refuse to resume a run on another precision than it trained in (``auto`` resolves per machine) or against
    another teacher file than it distilled from (the file at the same path replaced); checkpoints written before
    guidegap recorded either are not checked for it."""
    stored = metadata.get("mixed_precision_resolved")
    if stored is not None and stored != mixed_precision:
        raise InputError(f"cannot resume {str(path)!r}: it trained with mixed precision {stored!r} and this run resolves to "
                         f"{mixed_precision!r} ('auto' differs between machines); pass --mixed-precision {stored} to continue it "
                         "as it was trained, or start a new --out.")
    fingerprint = metadata.get("teacher_fingerprint")
    if fingerprint is not None and teacher is not None and fingerprint != teacher:
        raise InputError(f"cannot resume {str(path)!r}: its teacher file has changed since the run started ({fingerprint[:19]} "
                         f"then, {teacher[:19]} now); restore that teacher, or start a new --out to distil from this one.")


def check_steps(steps: int, step: int, path: str | os.PathLike[str]) -> None:
    """Refuse to resume a checkpoint at ``step`` with a target of fewer ``steps`` (nothing to train, a wrong step)."""
    if steps < step:
        raise InputError(f"cannot resume {str(path)!r} with --train-steps {steps}: it is already at step {step}; pass --train-steps "
                         f"above {step} to train further, or use the checkpoint as it is.")


def trim_log(path: str | os.PathLike[str], step: int) -> None:
    """Keep the lines of a ``log.jsonl`` whose ``step`` is at most ``step`` (all of them go for ``step`` 0).

    A line cut short by a kill, or one that is not JSON, is dropped too. Rewritten atomically.
    """
    from guidegap.atomic import write_bytes_atomic

    path = Path(path)
    if not path.is_file():
        return
    kept: list[str] = []
    changed = False
    for line in path.read_text(errors="replace").splitlines(keepends=True):
        try:
            value = json.loads(line)
            keep = line.endswith("\n") and isinstance(value, dict) and int(value.get("step", 0)) <= step
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            changed = True
    if changed:
        write_bytes_atomic(path, "".join(kept).encode())


def divergence_message(loss: float, step: int, start: int, checkpoint_every: int, path: str | os.PathLike[str]) -> str:
    """The error of a non-finite loss at ``step`` of a run that started at ``start`` (nothing is saved for it)."""
    last = max(start, step // checkpoint_every * checkpoint_every)
    kept = (f"the last good checkpoint (step {last}) is kept in {str(path)!r}" if last else
            "no checkpoint was written (none was good yet)")
    return f"the loss became {loss} at step {step}; lower --lr or check the data; {kept}."


def nonfinite_parameters(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``tensors`` that hold a NaN or an Inf."""
    import torch

    return [name for name, t in tensors.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
