"""One resolver for every model spec: the audit, the monitor and the trainer turn what they are given into a model here.

A spec is a path (a diffusers folder, a guidegap checkpoint, a state dict with ``factory``), a model already read
from disk (:class:`~guidegap.checkpoints.loading.LoadedModel`), ``"oracle"`` / ``"oracle:SEED"`` (the oracle
tier's exact teacher, docs/design.md §4), or a model (anything :func:`guidegap.as_denoiser` takes).
:func:`resolve_model` gives its denoiser, the noise schedule stored with it, where it came from, the TIRT weights
it was trained with and its parameter count. The oracle teacher stores no schedule, since its eps is exact on any:
it is built on the ``schedule`` it is resolved with, and :meth:`ResolvedModel.on_schedule` moves it to another.
:func:`resolve_sampler` builds the sampler on the schedule the resolved models store, and :func:`resolve_roles` does
both for a teacher / student pair, as every recording (trace, probe, audit) does it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from guidegap.checkpoints.loading import LoadedModel, load_model, load_scheduler
from guidegap.checkpoints.offline import hub_offline
from guidegap.denoisers import Denoiser, as_denoiser, count_parameters
from guidegap.errors import AdapterError, GuidegapError, InputError
from guidegap.oracle.tier import oracle_mixture, parse_oracle

__all__ = ["ResolvedModel", "resolve_model", "resolve_roles", "resolve_sampler"]


@dataclass
class ResolvedModel:
    """A model spec resolved: the denoiser and what is known about where it came from.

    ``scheduler_config``: the noise schedule stored with the model (``None`` when none is; for the oracle teacher,
    the stored config it was resolved on). ``tirt_lambda``: the TIRT ``lambda_t`` of a guidegap checkpoint.
    ``num_parameters``: of the model's module (``None`` for a model without weights, such as the oracle).
    ``data``: the training data it declares, named as the trainer and the probe sets name it (a guidegap checkpoint's
    ``config["data"]``, ``"oracle:SEED"`` for the oracle teacher); ``None`` when unknown.
    """

    denoiser: Denoiser
    scheduler_config: dict[str, Any] | None
    source: str
    tirt_lambda: torch.Tensor | None = None
    num_parameters: int | None = None
    oracle_seed: int | None = None
    data: str | None = None

    def on_schedule(self, schedule: Any) -> "ResolvedModel":
        """The oracle teacher rebuilt on ``schedule`` (its eps is exact on any); any other model as it is."""
        if self.oracle_seed is None:
            return self
        return _oracle(self.source, self.oracle_seed, schedule)


def resolve_model(spec: Any, *, schedule: Any = None, factory: str | None = None, trust_pickle: bool = False,
                  role: str | None = None) -> ResolvedModel:
    """Resolve ``spec`` (see the module docstring) into a :class:`ResolvedModel`.

    ``schedule``: what the oracle teacher is built on, a stored scheduler config (``dict``), a scheduler or
    ``alphas_cumprod`` (default: DDPM-linear, T = 1000). ``factory`` / ``trust_pickle`` apply to files
    (:func:`guidegap.checkpoints.load_model`). ``role`` ("student" / "teacher") starts every error message, so a
    user knows which of two models it is about.
    """
    try:
        return _resolve(spec, schedule, factory, trust_pickle, role)
    except GuidegapError as error:
        if role is None or type(error) not in (InputError, AdapterError):
            raise
        raise type(error)(f"{role}: {error}") from None


def _resolve(spec: Any, schedule: Any, factory: str | None, trust_pickle: bool, role: str | None) -> ResolvedModel:
    seed = parse_oracle(spec)
    if seed is not None:
        return _oracle(str(spec), seed, schedule)
    if isinstance(spec, (str, os.PathLike)):
        return _from_file(load_model(spec, factory=factory, trust_pickle=trust_pickle, role=role), str(spec))
    if isinstance(spec, LoadedModel):
        return _from_file(spec, spec.source)
    denoiser = as_denoiser(spec)
    params = count_parameters(denoiser.module) if denoiser.module is not None else None
    return ResolvedModel(denoiser, None, denoiser.name, num_parameters=params)


def _from_file(loaded: LoadedModel, source: str) -> ResolvedModel:
    tirt = loaded.checkpoint.tirt_lambda if loaded.checkpoint is not None else None
    config = loaded.checkpoint.metadata.get("config") if loaded.checkpoint is not None else None
    data = config.get("data") if isinstance(config, Mapping) else None
    return ResolvedModel(as_denoiser(loaded), loaded.scheduler_config, source, tirt, count_parameters(loaded.model),
                         data=data if isinstance(data, str) and data else None)


def _oracle(source: str, seed: int, schedule: Any) -> ResolvedModel:
    stored = dict(schedule) if isinstance(schedule, Mapping) else None
    if schedule is None or stored is not None:
        alphas_cumprod = load_scheduler(stored).alphas_cumprod
    else:
        alphas_cumprod = getattr(schedule, "alphas_cumprod", schedule)
    return ResolvedModel(oracle_mixture(seed).denoiser(alphas_cumprod), stored, source, oracle_seed=seed, data=f"oracle:{seed}")


def resolve_sampler(spec: Any, *models: ResolvedModel | None) -> Any:
    """The sampler for ``models``: :func:`guidegap.recording.schedulers.sampler_for` on the schedules they store
    (a scheduler instance as it is; a name, default DDIM, on the stored schedule; two different ones refused)."""
    from guidegap.recording.schedulers import sampler_for

    with hub_offline():
        return sampler_for(spec, [m.scheduler_config for m in models if m is not None])


def resolve_roles(teacher: Any, student: Any, scheduler: Any = None, *, factory: str | None = None,
                  trust_pickle: tuple[bool, bool] = (False, False)) -> tuple[ResolvedModel | None, ResolvedModel | None, Any]:
    """Resolve a teacher and a student spec (either may be ``None``) and their sampler (:func:`resolve_sampler`).

    The oracle teacher is built on the student's stored schedule, then moved to the sampler's (a caller's scheduler
    instance too). ``trust_pickle``: for the (student, teacher) files; ``factory`` applies to both.
    """
    student_r = (resolve_model(student, factory=factory, trust_pickle=trust_pickle[0], role="student")
                 if student is not None else None)
    teacher_r = (resolve_model(teacher, factory=factory, trust_pickle=trust_pickle[1], role="teacher",
                               schedule=student_r.scheduler_config if student_r is not None else None)
                 if teacher is not None else None)
    sampler = resolve_sampler(scheduler, student_r, teacher_r)
    if teacher_r is not None:
        teacher_r = teacher_r.on_schedule(sampler)
    return teacher_r, student_r, sampler
