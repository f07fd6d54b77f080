"""Training run configuration: one JSON-safe dataclass, stored in every checkpoint and checked on resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from guidegap.errors import InputError

__all__ = ["TrainConfig", "TIRT_MODES"]

TIRT_MODES = ("learned", "teacher", "uniform", "loss-moment")
# Batch size and learning rate per tier when not given (oracle: 283k-parameter MLP; cpu/paper: UNets).
TIER_DEFAULTS = {"oracle": (512, 2e-3), "cpu": (64, 2e-4), "paper": (128, 1e-4)}
# Fields that may change between a run and its resumption (everything else must match).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "audit_every", "progress", "teacher_cache")


@dataclass
class TrainConfig:
    """A teacher-training or distillation run (``role``); defaults follow DESIGN.md §4-5.

    ``teacher_cache``: a folder that stores the teacher's branches per step, so students of one comparison
    (same teacher, seed, data, schedule, batch size) pay the teacher's forward passes once
    (:mod:`guidegap.training.teacher_cache`); results are identical with or without it.

    ``tirt``: ``learned`` (teacher: lambda_t trained jointly), ``teacher`` (student: the teacher's TIRT copied
    and frozen, DASH), ``uniform``, or ``loss-moment`` (Improved DDPM's loss-second-moment importance prior).
    """

    out: str
    role: str = "student"
    objective: str = "dash"
    objective_options: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    tier: str = "cpu"
    arch: str = "unet"
    model_class: str | None = None
    model_config: dict[str, Any] | None = None
    data: str | None = None
    schedule: str = "linear"
    num_train_timesteps: int = 1000
    steps: int = 1000
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    tirt: str | None = None
    tirt_lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    audit_every: int = 0
    progress: bool = True
    teacher_cache: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ("teacher", "student"):
            raise InputError(f"expected role 'teacher' or 'student', received {self.role!r}.")
        if self.role == "teacher" and self.objective == "dash":
            self.objective = "scratch"  # a teacher trains on data (label dropout), DASH distils
        if self.tirt is None:
            self.tirt = "learned" if self.role == "teacher" else ("teacher" if self.objective.startswith("dash") else "uniform")
        if self.tirt not in TIRT_MODES:
            raise InputError(f"expected tirt in {TIRT_MODES}, received {self.tirt!r}.")
        if self.role == "teacher" and self.objective == "scratch":
            # TIRT is learned jointly with the teacher: its weighted loss is what trains lambda_t.
            self.objective_options = {"tirt": self.tirt in ("learned", "loss-moment"), **self.objective_options}
        if self.role == "student" and self.objective != "scratch" and not self.teacher:
            raise InputError(f"objective {self.objective!r} distils from a teacher; pass --teacher PATH (or 'oracle' on the oracle tier).")
        tier_batch, tier_lr = TIER_DEFAULTS.get(self.tier, (64, 2e-4))
        self.batch_size = tier_batch if self.batch_size is None else self.batch_size
        self.lr = tier_lr if self.lr is None else self.lr
        for name in ("steps", "batch_size", "num_train_timesteps"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"expected {name} >= 1, received {getattr(self, name)}.")
        if self.data is None:
            oracle = self.teacher if isinstance(self.teacher, str) and self.teacher.startswith("oracle") else "oracle"
            if self.tier == "paper":
                raise InputError("the paper tier trains on CIFAR from your own folder (nothing is downloaded); pass "
                                 "--data cifar10:/path/to/cifar-10-batches-bin (or cifar100:PATH).")
            self.data = oracle if self.tier == "oracle" else "fashion-mnist"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def resume_mismatch(self, stored: "TrainConfig") -> list[str]:
        """Names of settings that differ from a stored run's and may not change on resume."""
        mine, theirs = self.to_dict(), stored.to_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and k != "out" and mine[k] != theirs[k]]
