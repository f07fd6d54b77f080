"""Training run configuration: one JSON-safe dataclass, stored in every checkpoint and checked on resume.

Every recipe setting left ``None`` is resolved, in this order, from the named ``recipe`` (``"dash"``: the DASH
paper's values, :data:`RECIPES`), then the tier's defaults (:data:`TIER_DEFAULTS`, sized for a short run on the
tier's hardware). The resolved values are what the checkpoint stores, so a resumed run keeps them. Configs stored
before a setting existed resolve it to what the trainer did then (:data:`LEGACY`), so old runs resume unchanged.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any

from guidegap._deprecation import renamed_attribute, renamed_keywords
from guidegap.errors import InputError
from guidegap.recording.noise_schedules import SCHEDULES  # the noise schedules a run can name

__all__ = ["TrainConfig", "TIRT_MODES", "SCHEDULES", "RECIPES", "TIER_DEFAULTS", "LR_SCHEDULES", "MIXED_PRECISION", "RECIPE_SETTINGS"]

TIRT_MODES = ("learned", "teacher", "uniform", "loss-moment")
LR_SCHEDULES = ("constant", "cosine", "linear", "polynomial", "constant_with_warmup", "cosine_with_restarts")
MIXED_PRECISION = ("no", "bf16", "fp16", "auto")  # auto: fp16 + GradScaler on CUDA, bf16 on a CPU with AMX / AVX-512 BF16, else no
# The settings a recipe or a tier decides, per role.
RECIPE_SETTINGS = ("schedule", "batch_size", "lr", "lr_schedule", "lr_warmup_steps", "lr_min", "weight_decay",
                   "dropout", "ema_decay", "grad_clip", "mixed_precision", "label_dropout_per_batch")

# DASH's public code (configs/{teacher,student}_cifar10.yaml, train_*.py): cosine schedule clipped to
# [1e-4, 0.9999]; AdamW lr 2e-4 annealed by a cosine to 1e-6 over the run, no warm-up; weight decay 0.01
# (teacher, TIRT's lambda in the same group) / 1e-3 (student); EMA 0.9999 / 0.9995; grad clip 1.0; ResBlock
# dropout 0.1; the teacher's label dropout 0.1 as one coin per batch; autocast (fp16 + GradScaler on its GPU).
_DASH_COMMON = dict(schedule="dash-cosine", batch_size=64, lr=2e-4, lr_schedule="cosine", lr_warmup_steps=0, lr_min=1e-6,
                    grad_clip=1.0, mixed_precision="auto")
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "dash": {
        "teacher": {**_DASH_COMMON, "weight_decay": 0.01, "ema_decay": 0.9999, "dropout": 0.1, "label_dropout_per_batch": True},
        "student": {**_DASH_COMMON, "weight_decay": 1e-3, "ema_decay": 0.9995, "dropout": 0.1},
    },
}

# Tier defaults: what a run gets without --recipe. The cpu tier's are the measured fast path on a 2-core CPU
# (analyses/bench_training.py, analyses/time_to_quality.py): bf16 autocast, a short warm-up and a cosine decay at
# a higher learning rate than the paper's 270-epoch run, EMA sized for runs of thousands of steps.
_COMMON = dict(schedule="dash-cosine", lr_schedule="cosine", lr_min=0.0, grad_clip=1.0, dropout=0.0,
               label_dropout_per_batch=False)
TIER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "oracle": {role: {**_COMMON, "schedule": "linear", "batch_size": 512, "lr": 2e-3, "lr_schedule": "constant",
                      "lr_warmup_steps": 0, "weight_decay": 0.0, "ema_decay": 0.999, "mixed_precision": "no"}
               for role in ("teacher", "student")},
    "cpu": {
        "teacher": {**_COMMON, "batch_size": 64, "lr": 5e-4, "lr_warmup_steps": 100, "weight_decay": 0.01,
                    "ema_decay": 0.999, "mixed_precision": "auto"},
        "student": {**_COMMON, "batch_size": 64, "lr": 2e-3, "lr_warmup_steps": 50, "weight_decay": 1e-3,
                    "ema_decay": 0.995, "mixed_precision": "auto"},
    },
    "paper": {role: {**RECIPES["dash"][role], "batch_size": 128, "lr": 1e-4} for role in ("teacher", "student")},
}
# What the trainer did before these settings existed (configs stored without them resume with these).
LEGACY = dict(recipe=None, schedule="linear", lr_schedule="constant", lr_warmup_steps=0, lr_min=0.0, lr_decay_steps=None,
              weight_decay=0.0, dropout=0.0, ema_decay=0.999, mixed_precision="no", label_dropout_per_batch=False,
              tirt_lr=1e-3)
# Settings stored under an older name (configs and checkpoints written before the rename load under the new one).
RENAMED = {"steps": "train_steps"}
# Fields that may change between a run and its resumption (everything else must match).
RESUMABLE_CHANGES = ("train_steps", "lr_decay_steps", "checkpoint_every", "log_every", "audit_every", "progress", "teacher_cache", "export_steps")


@renamed_keywords(steps="train_steps")
@dataclass
class TrainConfig:
    """A teacher-training or distillation run (``role``); see the module docstring for how ``None`` resolves.

    ``teacher_cache``: a folder that stores the teacher's branches per step, so students of one comparison
    (same teacher, seed, data, schedule, batch size) pay the teacher's forward passes once
    (:mod:`guidegap.training.teacher_cache`); results are identical with or without it.

    ``tirt``: ``learned`` (teacher: lambda_t trained jointly), ``teacher`` (student: the teacher's TIRT copied
    and frozen, DASH), ``uniform``, or ``loss-moment`` (Improved DDPM's loss-second-moment importance prior).
    ``tirt_lr``: ``None`` puts lambda_t in the model's AdamW group (lr, weight decay and LR schedule shared, as
    DASH does); a number gives it its own group at that lr without weight decay.

    ``lr_schedule``: a diffusers ``get_scheduler`` name with ``lr_warmup_steps``; it decays over
    ``lr_decay_steps`` (default: the first run's ``train_steps``; a run resumed with more steps stays at the floor) towards the floor ``lr_min``;
    resuming with a larger ``lr_decay_steps`` puts the lr on the longer schedule from the resumed step on (it
    jumps back up to that schedule's value there; not SGDR's restart at the peak). ``mixed_precision``: accelerate's
    autocast (``no``, ``bf16``, ``fp16``, or ``auto``); weights, loss and the model's outputs stay float32.
    ``schedule``: the noise schedule; a student takes its teacher's when not given.
    ``export_steps``: training steps at which the EMA weights are also written, in float16 and without training
    state, to ``out/exports/step_NNNNNNN.pt`` (audit-ready files, e.g. log-spaced to study a run along training).
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
    recipe: str | None = None
    schedule: str | None = None
    num_train_timesteps: int = 1000
    train_steps: int = 1000
    batch_size: int | None = None
    lr: float | None = None
    lr_schedule: str | None = None
    lr_warmup_steps: int | None = None
    lr_min: float | None = None
    lr_decay_steps: int | None = None
    weight_decay: float | None = None
    dropout: float | None = None
    grad_clip: float | None = None
    ema_decay: float | None = None
    mixed_precision: str | None = None
    label_dropout_per_batch: bool | None = None
    tirt: str | None = None
    tirt_lr: float | None = None
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    audit_every: int = 0
    progress: bool = True
    teacher_cache: str | None = None
    export_steps: list[int] = field(default_factory=list)
    from_storage: InitVar[bool] = False  # read back by from_dict: a stored run is checked as it was written

    steps = renamed_attribute("steps", "train_steps")  # training steps; the name said steps before sampling steps met it

    def __post_init__(self, from_storage: bool = False) -> None:
        tirt_chosen = self.tirt is not None
        if self.role not in ("teacher", "student"):
            raise InputError(f"expected role 'teacher' or 'student', received {self.role!r}.")
        if self.recipe is not None and self.recipe not in RECIPES:
            raise InputError(f"expected a recipe in {sorted(RECIPES)} (or none), received {self.recipe!r}.")
        if self.tier not in TIER_DEFAULTS:
            raise InputError(f"expected a tier in {sorted(TIER_DEFAULTS)}, received {self.tier!r}.")
        if self.role == "teacher" and self.objective == "dash":
            self.objective = "scratch"  # a teacher trains on data (label dropout), DASH distils
        if self.tirt is None:
            self.tirt = self._default_tirt()
        if self.tirt not in TIRT_MODES:
            raise InputError(f"expected tirt in {TIRT_MODES}, received {self.tirt!r}.")
        if self.role == "student" and self.objective != "scratch" and not self.teacher:
            raise InputError(f"objective {self.objective!r} distils from a teacher; pass --teacher PATH (or 'oracle' on the oracle tier).")
        self._unset = {name for name in (*RECIPE_SETTINGS, "lr_decay_steps", "tirt_lr") if getattr(self, name) is None}
        if not tirt_chosen:
            self._unset.add("tirt")  # a resumed run keeps the weighting it was stored with
        # a teacher's scratch loss is weighted when its TIRT is trained, unless the options say otherwise
        self._tirt_option_derived = self.objective == "scratch" and self.role == "teacher" and "tirt" not in self.objective_options
        if self.lr_decay_steps is None:
            self.lr_decay_steps = self.train_steps  # stored: a resumed run with more --train-steps stays at the floor past it
        preset = {**TIER_DEFAULTS[self.tier][self.role], **(RECIPES[self.recipe][self.role] if self.recipe else {})}
        if self.recipe and self.tier == "oracle":
            preset["dropout"] = 0.0  # the oracle tier's MLP has no dropout layers
        for name in RECIPE_SETTINGS:
            if getattr(self, name) is None and not (name == "schedule" and self.role == "student" and self.teacher):
                setattr(self, name, preset[name])
        if self.objective == "scratch":
            options = {"label_dropout_per_batch": bool(self.label_dropout_per_batch)} if self.label_dropout_per_batch else {}
            if self.role == "teacher":
                # TIRT is learned jointly with the teacher: its weighted loss is what trains lambda_t.
                options["tirt"] = self.tirt in ("learned", "loss-moment")
            self.objective_options = {**options, **self.objective_options}
        self._check()
        if tirt_chosen and not from_storage:
            self._check_weighting()
        if self.data is None:
            oracle = self.teacher if isinstance(self.teacher, str) and self.teacher.startswith("oracle") else "oracle"
            if self.tier == "paper":
                raise InputError("the paper tier trains on CIFAR from your own folder (nothing is downloaded); pass "
                                 "--data cifar10:/path/to/cifar-10-batches-bin (or cifar100:PATH).")
            self.data = oracle if self.tier == "oracle" else "fashion-mnist"

    def _check(self) -> None:
        steps = self.export_steps
        if not isinstance(steps, (list, tuple)) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps):
            raise InputError(f"expected export_steps as a list of training steps >= 1, received {steps!r}.")
        self.export_steps = sorted(set(steps))
        for name in ("train_steps", "batch_size", "num_train_timesteps"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"expected {name} >= 1, received {getattr(self, name)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"expected lr_schedule in {LR_SCHEDULES}, received {self.lr_schedule!r}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError(f"expected mixed_precision in {MIXED_PRECISION}, received {self.mixed_precision!r}.")
        checks = (("lr", self.lr, self.lr > 0), ("lr_min", self.lr_min, 0 <= self.lr_min <= self.lr),
                  ("lr_warmup_steps", self.lr_warmup_steps, self.lr_warmup_steps >= 0),
                  ("lr_decay_steps", self.lr_decay_steps, self.lr_decay_steps is None or self.lr_decay_steps >= 1),
                  ("weight_decay", self.weight_decay, self.weight_decay >= 0), ("dropout", self.dropout, 0 <= self.dropout < 1),
                  ("ema_decay", self.ema_decay, 0 <= self.ema_decay < 1), ("grad_clip", self.grad_clip, self.grad_clip > 0),
                  ("tirt_lr", self.tirt_lr, self.tirt_lr is None or self.tirt_lr > 0))
        for name, value, ok in checks:
            if not ok:
                raise InputError(f"expected a valid {name} (lr > 0, 0 <= lr_min <= lr, 0 <= dropout < 1, 0 <= ema_decay < 1, "
                                 f"grad_clip > 0, train_steps >= 1), received {name}={value!r}.")

    def _default_tirt(self) -> str:
        """A teacher learns its TIRT (DASH); a weighted DASH student copies its teacher's; any other student is uniform."""
        from guidegap.training.objectives import make_objective

        if self.role == "teacher":
            return "learned"
        weighted_dash = self.objective.startswith("dash") and make_objective(self.objective, **self.objective_options).weighted
        return "teacher" if weighted_dash else "uniform"

    def _check_weighting(self) -> None:
        """Refuse a chosen timestep weighting that the run would ignore: one its objective takes no batch weights for,
        or a teacher's TIRT asked of a teacher."""
        from guidegap.training.objectives import make_objective, weighted_objectives

        if self.tirt == "uniform":
            return
        if self.role == "teacher" and self.tirt == "teacher":
            raise InputError("--tirt teacher copies a teacher's TIRT into a student, but this run trains a teacher; "
                             "pass --tirt learned (DASH: lambda_t trained jointly), loss-moment or uniform.")
        if not make_objective(self.objective, **self.objective_options).weighted:
            fix = ("pass --objective-option tirt=true to weight the scratch loss" if self.objective == "scratch"
                   else f"use a weighted objective ({', '.join(weighted_objectives())})")
            raise InputError(f"--tirt {self.tirt} weights the loss per timestep, but objective {self.objective!r} takes no batch "
                             f"weights and would ignore them; drop --tirt (a resumed run keeps the weighting it was stored "
                             f"with), or {fix}.")

    def resolve_schedule(self, teacher_schedule: str | None) -> None:
        """A student without ``schedule`` takes its teacher's noise schedule; a different one is refused.

        The teacher's eps at ``(x_t, t)`` is only a target on the schedule it was trained on.
        """
        if self.schedule is None:
            self.schedule = teacher_schedule or TIER_DEFAULTS[self.tier][self.role]["schedule"]
        elif teacher_schedule is not None and teacher_schedule != self.schedule:
            raise InputError(f"the teacher was trained on the {teacher_schedule!r} noise schedule, received --schedule "
                             f"{self.schedule!r}; drop --schedule (the student takes the teacher's) or pass {teacher_schedule!r}.")

    def adopt_unset(self, stored: "TrainConfig") -> None:
        """On resume: recipe settings this config left unset take the stored run's values."""
        for name in (*getattr(self, "_unset", ()), *(("model_class", "model_config") if self.model_class is None else ())):
            if getattr(stored, name) is not None or name == "tirt_lr":  # tirt_lr None: lambda in the model's group
                setattr(self, name, getattr(stored, name))
        if "tirt" in getattr(self, "_unset", ()) and getattr(self, "_tirt_option_derived", False):
            self.objective_options["tirt"] = stored.objective_options.get("tirt", self.tirt in ("learned", "loss-moment"))

    def recipe_lines(self) -> list[str]:
        """The resolved recipe, one ``name = value`` per setting (for ``train.log``)."""
        names = ("recipe", *RECIPE_SETTINGS, "lr_decay_steps", "tirt", "tirt_lr", "objective_options")
        return [f"{name} = {getattr(self, name)!r}" for name in names]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """A stored config; settings it predates take the values the trainer used then (:data:`LEGACY`)."""
        known = {f.name for f in fields(cls)}
        values = {**{new: values[old] for old, new in RENAMED.items() if old in values and new not in values}, **values}
        stored = {k: v for k, v in values.items() if k in known}
        if "recipe" not in values:  # stored before recipes existed
            stored = {**{k: v for k, v in LEGACY.items() if k not in values}, **stored}
        return cls(**stored, from_storage=True)

    def resume_mismatch(self, stored: "TrainConfig") -> list[str]:
        """Names of settings that differ from a stored run's and may not change on resume."""
        mine, theirs = self.to_dict(), stored.to_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and k != "out" and mine[k] != theirs[k]]
