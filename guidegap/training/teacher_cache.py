"""Pay the teacher's cost once: its two branches per training step, stored for every student of a comparison.

Every distillation objective needs only ``eps_T(x_t, y)`` and ``eps_T(x_t, null)`` at the student's
``(x_t, t, y)`` (docs/design.md §4), and step ``k`` of rank ``r`` draws its batch from a generator seeded by
``(seed, k, r)``. So students that share the teacher, seed, data, schedule and batch size see the same
``(x_t, t, y)`` at every step, and one teacher pass per step can serve them all. The first run computes
and stores each step's branches (float32, exact); later runs load them. The cache is data only
(safetensors), written atomically, and every step file carries its ``t`` and ``labels`` so a run that draws
a different batch is refused rather than trained on the wrong targets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from guidegap.atomic import atomic_path, write_bytes_exclusive
from guidegap.errors import InputError

__all__ = ["TeacherCache", "teacher_fingerprint"]

MANIFEST = "cache.json"


def teacher_fingerprint(spec: Any) -> str:
    """What identifies a teacher: the SHA-256 of its checkpoint file (or folder files), or its spec string."""
    if isinstance(spec, (str, Path)) and Path(spec).exists():
        path = Path(spec)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return f"sha256:{digest.hexdigest()}"
    if isinstance(spec, str):
        return spec
    raise InputError(f"a teacher cache needs a teacher given as a path or 'oracle[:SEED]', received {type(spec).__name__}; "
                     "drop --teacher-cache for in-memory teachers.")


class TeacherCache:
    """A folder of per-step teacher branches, tied by ``cache.json`` to the run settings that draw the batches."""

    def __init__(self, folder: str | Path, key: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = json.loads(json.dumps(key, sort_keys=True))
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        if not manifest.exists():  # created whole, and only if no other run got there first
            write_bytes_exclusive(manifest, json.dumps(self.key, indent=2, sort_keys=True).encode())
        try:  # whoever created it, the manifest on disk decides
            stored = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"teacher cache {manifest} is unreadable ({error}); delete the folder or choose another.") from None
        if stored != self.key:
            differ = sorted(k for k in set(stored) | set(self.key) if stored.get(k) != self.key.get(k))
            raise InputError(f"teacher cache {self.folder} was made for other settings ({', '.join(differ)} differ); "
                             "use another --teacher-cache folder for this run.")
        self.hits = 0
        self.misses = 0

    def _file(self, step: int, rank: int) -> Path:
        return self.folder / f"step{step:07d}_rank{rank:03d}.safetensors"

    def branches(self, step: int, rank: int, t: torch.Tensor, labels: torch.Tensor,
                 compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's ``(cond, uncond)`` for this step: loaded when stored, else ``compute()``-d and stored."""
        path = self._file(step, rank)
        if path.exists():
            try:
                stored = load_file(str(path))
            except Exception as error:  # a truncated file cannot happen (atomic writes) but a copied one can
                raise InputError(f"teacher cache file {path} is unreadable ({error}); delete it to recompute.") from None
            if not (torch.equal(stored["t"], t.cpu()) and torch.equal(stored["labels"], labels.cpu())):
                raise InputError(f"teacher cache {path} holds another batch than step {step} draws; the cache belongs to "
                                 "another run; use a fresh --teacher-cache folder.")
            self.hits += 1
            return stored["cond"].to(t.device), stored["uncond"].to(t.device)
        cond, uncond = compute()
        tensors = {"cond": cond.detach().float().cpu().contiguous(), "uncond": uncond.detach().float().cpu().contiguous(),
                   "t": t.cpu().contiguous(), "labels": labels.cpu().contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp)
        self.misses += 1
        return cond, uncond
