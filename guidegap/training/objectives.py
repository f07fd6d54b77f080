"""Distillation objectives as small callables selected by name (edm2's loss-class pattern).

Each objective maps ``(student, teacher_preds, batch) -> (loss, parts)``. It calls the student itself, once:
``student.branches(x_t, t, labels)`` (one batch of ``2B``, cond half first) when it needs both branches,
``student(x_t, t, labels)`` (``B``) when it needs only the conditional one. The loop supplies the teacher's
two branches (one no-grad ``2B`` batch) only for objectives with ``needs_teacher``.

Notation: ``e_c = eps_c^S - eps_c^T``, ``e_u = eps_u^S - eps_u^T``, ``Delta = eps_c - eps_u``,
guided ``g = eps_u + w (eps_c - eps_u)``. Per-sample loss = mean over non-batch dims of the squared error;
a term = batch mean of ``weights * per-sample loss``, with ``weights = batch.weights`` (TIRT, or the
loss-moment prior) only for ``weighted`` objectives and ones otherwise. Logged parts are the terms before their coefficients.

| name | loss | student call |
|---|---|---|
| ``dash`` | ``w_cond ||e_c||^2 + w_uncond ||e_u||^2 + w_anchor ||eps_c^S - eps||^2``, TIRT-weighted (DASH, arXiv 2606.00798) | 2B |
| ``dash-no-uncond`` / ``-no-anchor`` / ``-no-tirt`` | DASH ablations | B / 2B / 2B |
| ``cond-only`` | ``||e_c||^2`` | B |
| ``composite`` | ``||g_S - g_T||^2`` at one ``guidance_scale`` | 2B |
| ``multi-w`` | composite with ``w ~ U[w_min, w_max]`` per sample | 2B |
| ``gap`` | ``w_gap ||Delta_S - Delta_T||^2 + w_cond ||e_c||^2`` | 2B |
| ``pdm`` | ``||e_c||^2 + lam ||e_c - e_u||^2`` (PDM, arXiv 2607.24731) | 2B |
| ``scratch`` | ``||eps^S(x_t, t, y') - eps||^2``, ``y'`` = null with probability ``label_dropout`` (CFG training) | B |
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from guidegap._deprecation import renamed_attribute
from guidegap.denoisers.base import Denoiser
from guidegap.errors import InputError

__all__ = [
    "OBJECTIVES",
    "CompositeObjective",
    "CondOnlyObjective",
    "DASHObjective",
    "GapObjective",
    "MultiWObjective",
    "Objective",
    "PDMObjective",
    "ScratchObjective",
    "TeacherPreds",
    "TrainBatch",
    "make_objective",
    "per_sample_mse",
    "weighted_objectives",
]


@dataclass
class TrainBatch:
    """One training batch; ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``; ``weights`` has unit batch mean."""

    x0: Tensor
    noise: Tensor
    x_t: Tensor
    t: Tensor
    labels: Tensor
    weights: Tensor
    generator: torch.Generator


@dataclass
class TeacherPreds:
    """The teacher's two branches at the batch's ``(x_t, t, labels)``."""

    cond: Tensor
    uncond: Tensor


# -- shared helpers -------------------------------------------------------------------------------
def per_sample_mse(error: Tensor) -> Tensor:
    """Mean over non-batch dims of ``error ** 2``, shape ``(B,)``."""
    return error.pow(2).flatten(1).mean(1)


def _term(error: Tensor, weights: Tensor) -> Tensor:
    """Batch mean of ``weights * per_sample_mse(error)``."""
    return (weights * per_sample_mse(error)).mean()


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """``(B,)`` values shaped to broadcast against ``like`` ``(B, ...)``."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _number(where: str, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool):
        value = math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise InputError(f"objective {where!r}: expected {name} a finite number in [{low}, {high}], received {value!r}.")
    return number


class Objective:
    """A distillation (or training) loss; subclasses set the class attributes and implement :meth:`terms`."""

    name: str = "objective"
    needs_teacher: bool = True
    weighted: bool = False  # the loss takes the batch's per-timestep weights (TIRT); otherwise they are ones

    uses_tirt = renamed_attribute("uses_tirt", "weighted")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "uses_tirt" in vars(cls) and not isinstance(vars(cls)["uses_tirt"], property):  # a subclass of the old name
            warnings.warn(f"{cls.__name__}.uses_tirt is deprecated; set weighted.", DeprecationWarning, stacklevel=2)
            cls.weighted = bool(vars(cls)["uses_tirt"])
            del cls.uses_tirt

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}

    def __call__(self, student: Denoiser, teacher: TeacherPreds | None, batch: TrainBatch) -> tuple[Tensor, dict[str, float]]:
        """Return ``(scalar loss with grad, {part: float})`` for ``batch``."""
        if self.needs_teacher and teacher is None:
            raise InputError(f"objective {self.name!r} needs the teacher's branches; pass TeacherPreds(cond=..., uncond=...).")
        batch_size = batch.x_t.shape[0]
        if self.weighted:
            weights = batch.weights
            if tuple(weights.shape) != (batch_size,):
                raise InputError(
                    f"objective {self.name!r}: expected batch.weights of shape ({batch_size},), received {tuple(weights.shape)}; "
                    "pass one TIRT weight per sample."
                )
        else:
            weights = torch.ones(batch_size, device=batch.x_t.device, dtype=batch.x_t.dtype)
        terms = self.terms(student, teacher, batch, weights)
        coefficients = self.coefficients()
        loss = sum(coefficients.get(part, 1.0) * value for part, value in terms.items())
        return loss, {part: float(value.detach()) for part, value in terms.items()}  # type: ignore[return-value]

    def terms(self, student: Denoiser, teacher: TeacherPreds | None, batch: TrainBatch, weights: Tensor) -> dict[str, Tensor]:
        """The loss terms before their coefficients, by part name."""
        raise NotImplementedError

    def coefficients(self) -> dict[str, float]:
        """Coefficient of each part in the total loss (1 when absent)."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if options else ''}{options})"


class DASHObjective(Objective):
    """DASH (arXiv 2606.00798): both branches matched independently plus an anchor to the true noise, TIRT-weighted."""

    def __init__(
        self,
        w_cond: float = 1.0,
        w_uncond: float = 1.0,
        w_anchor: float = 0.1,
        *,
        uncond: bool = True,
        anchor: bool = True,
        tirt: bool = True,
    ) -> None:
        super().__init__()
        self.w_cond = _number("dash", "w_cond", w_cond, low=0.0)
        self.w_uncond = _number("dash", "w_uncond", w_uncond, low=0.0)
        self.w_anchor = _number("dash", "w_anchor", w_anchor, low=0.0)
        self.uncond, self.anchor, self.weighted = bool(uncond), bool(anchor), bool(tirt)
        self.name = "dash" + "".join(f"-no-{n}" for n, on in (("uncond", uncond), ("anchor", anchor), ("tirt", tirt)) if not on)
        self.options = dict(w_cond=self.w_cond, w_uncond=self.w_uncond, w_anchor=self.w_anchor, uncond=self.uncond,
                            anchor=self.anchor, tirt=self.weighted)

    def terms(self, student, teacher, batch, weights):
        if self.uncond:
            cond, uncond = student.branches(batch.x_t, batch.t, batch.labels)
        else:
            cond = student(batch.x_t, batch.t, batch.labels)
        terms = {"cond": _term(cond - teacher.cond, weights)}
        if self.uncond:
            terms["uncond"] = _term(uncond - teacher.uncond, weights)
        if self.anchor:
            terms["anchor"] = _term(cond - batch.noise, weights)
        return terms

    def coefficients(self):
        return {"cond": self.w_cond, "uncond": self.w_uncond, "anchor": self.w_anchor}


class CondOnlyObjective(Objective):
    """Conditional-branch distillation: the student only ever sees real labels; its null label gets no gradient."""

    name = "cond-only"

    def terms(self, student, teacher, batch, weights):
        return {"cond": _term(student(batch.x_t, batch.t, batch.labels) - teacher.cond, weights)}


class CompositeObjective(Objective):
    """Guided-output distillation at one guidance scale ``w``: ``||g_S - g_T||^2``."""

    name = "composite"

    def __init__(self, guidance_scale: float = 4.0) -> None:
        super().__init__()
        self.guidance_scale = _number(self.name, "guidance_scale", guidance_scale)
        self.options = dict(guidance_scale=self.guidance_scale)

    def scales(self, batch: TrainBatch) -> Tensor | float:
        return self.guidance_scale

    def terms(self, student, teacher, batch, weights):
        cond, uncond = student.branches(batch.x_t, batch.t, batch.labels)
        w = self.scales(batch)
        w = _per_sample(w, cond) if isinstance(w, Tensor) else w
        guided_error = (uncond - teacher.uncond) + w * ((cond - uncond) - (teacher.cond - teacher.uncond))
        return {"guided": _term(guided_error, weights)}


class MultiWObjective(CompositeObjective):
    """Composite distillation with ``w ~ U[w_min, w_max]`` per sample, drawn from ``batch.generator``."""

    name = "multi-w"

    def __init__(self, w_min: float = 1.0, w_max: float = 7.0) -> None:
        Objective.__init__(self)
        self.w_min = _number(self.name, "w_min", w_min)
        self.w_max = _number(self.name, "w_max", w_max, low=self.w_min)
        self.options = dict(w_min=self.w_min, w_max=self.w_max)

    def scales(self, batch: TrainBatch) -> Tensor:
        u = torch.rand(batch.x_t.shape[0], generator=batch.generator, dtype=torch.float64)
        return (self.w_min + (self.w_max - self.w_min) * u).to(batch.x_t.device, batch.x_t.dtype)


class GapObjective(Objective):
    """Gap matching: ``w_gap ||Delta_S - Delta_T||^2 + w_cond ||e_c||^2``."""

    name = "gap"

    def __init__(self, w_gap: float = 1.0, w_cond: float = 1.0) -> None:
        super().__init__()
        self.w_gap = _number(self.name, "w_gap", w_gap, low=0.0)
        self.w_cond = _number(self.name, "w_cond", w_cond, low=0.0)
        self.options = dict(w_gap=self.w_gap, w_cond=self.w_cond)

    def terms(self, student, teacher, batch, weights):
        cond, uncond = student.branches(batch.x_t, batch.t, batch.labels)
        cond_error = cond - teacher.cond
        return {"gap": _term(cond_error - (uncond - teacher.uncond), weights), "cond": _term(cond_error, weights)}

    def coefficients(self):
        return {"gap": self.w_gap, "cond": self.w_cond}


class PDMObjective(GapObjective):
    """PDM (arXiv 2607.24731): ``||e_c||^2 + lam ||e_c - e_u||^2``.

    Since ``e_c - e_u = Delta_S - Delta_T``, this is :class:`GapObjective` with ``w_gap = lam, w_cond = 1``, and it is
    built as exactly that: the same loss and gradient (tested), so at the defaults and one seed the two train identical
    students (the Fashion-MNIST campaign trains pdm at another seed, as gap's seed replicate). Both stay registered because both are named baselines of the comparison.
    """

    name = "pdm"

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__(w_gap=_number(self.name, "lam", lam, low=0.0), w_cond=1.0)
        self.lam = self.w_gap
        self.options = dict(lam=self.lam)


class ScratchObjective(Objective):
    """Standard CFG training on data (no teacher): labels dropped to the null label with probability ``label_dropout``.

    Per sample by default (Ho & Salimans 2022); ``label_dropout_per_batch`` draws one coin for the whole batch,
    as DASH's teacher training does. Both train the null branch on ``label_dropout`` of the samples on average.
    """

    name = "scratch"
    needs_teacher = False

    def __init__(self, label_dropout: float = 0.1, tirt: bool = False, label_dropout_per_batch: bool = False) -> None:
        super().__init__()
        self.label_dropout = _number(self.name, "label_dropout", label_dropout, low=0.0, high=1.0)
        self.weighted = bool(tirt)
        self.per_batch = bool(label_dropout_per_batch)
        self.options = dict(label_dropout=self.label_dropout, tirt=self.weighted, label_dropout_per_batch=self.per_batch)

    def drop_labels(self, student: Denoiser, batch: TrainBatch) -> Tensor:
        """The batch's labels with each (or, per batch, all) replaced by ``student.null_label`` with probability ``label_dropout``."""
        coins = torch.rand(batch.labels.shape[0], generator=batch.generator)
        drop = (coins[:1] < self.label_dropout).expand_as(coins) if self.per_batch else coins < self.label_dropout
        return torch.where(drop.to(batch.labels.device), torch.full_like(batch.labels, student.null_label), batch.labels)

    def terms(self, student, teacher, batch, weights):
        pred = student(batch.x_t, batch.t, self.drop_labels(student, batch))
        return {"eps": _term(pred - batch.noise, weights)}


# -- registry -------------------------------------------------------------------------------------
OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "dash": DASHObjective,
    "dash-no-uncond": lambda **options: DASHObjective(**{"uncond": False, **options}),
    "dash-no-anchor": lambda **options: DASHObjective(**{"anchor": False, **options}),
    "dash-no-tirt": lambda **options: DASHObjective(**{"tirt": False, **options}),
    "cond-only": CondOnlyObjective,
    "composite": CompositeObjective,
    "multi-w": MultiWObjective,
    "gap": GapObjective,
    "pdm": PDMObjective,
    "scratch": ScratchObjective,
}
_FACTORY_CLASS = {"dash-no-uncond": DASHObjective, "dash-no-anchor": DASHObjective, "dash-no-tirt": DASHObjective}


def _option_names(name: str) -> list[str]:
    factory = _FACTORY_CLASS.get(name, OBJECTIVES[name])
    target = factory.__init__ if isinstance(factory, type) else factory
    return [p for p in inspect.signature(target).parameters if p != "self"]


def make_objective(name: str, **options: Any) -> Objective:
    """Build the objective registered as ``name`` with keyword ``options`` (see the module table)."""
    if name not in OBJECTIVES:
        raise InputError(f"expected an objective name in {sorted(OBJECTIVES)}, received {name!r}.")
    valid = _option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"objective {name!r}: unknown options {unknown}; valid options are {valid}.")
    return OBJECTIVES[name](**options)


def weighted_objectives() -> list[str]:
    """The registered objectives whose loss takes the batch weights at their default options."""
    return [name for name in OBJECTIVES if make_objective(name).weighted]
