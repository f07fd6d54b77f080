"""Audit text-to-image students from their pipelines: ``guidegap audit STUDENT --teacher TEACHER --prompts FILE``.

Each pipeline encodes the prompts with its own text encoder(s) (:mod:`guidegap.pipelines.conditioning`), its
denoiser becomes a :class:`~guidegap.denoisers.text_unet.TextEmbeddingDenoiser` batched in the pipeline's declared
CFG layout (:mod:`guidegap.recording.layouts`), and the class-conditional machinery does the rest
(:func:`guidegap.audit`: teacher-forced recording on the teacher's guided trajectory, summaries, verdict).
Latents take the denoiser's shape (``in_channels x sample_size``, the pipeline's default image size); the
sampler is the teacher's folder scheduler (``scheduler`` names another class on the same noise schedule).
Sample ``i`` uses prompt ``i % P`` and the initial noise of :func:`audit_generators` — pass those generators to
the pipeline and it generates the audited trajectories (deterministic schedulers). Flow-matching pipelines (SD3)
go through the same sampler: their transformer predicts a velocity, and the gap ``v_c - v_u`` is what CFG combines.
Guidance-distilled students go to :mod:`guidegap.pipelines.distilled`.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from typing import Any

import torch

from guidegap.auditing.render import per_prompt  # the report's table by prompt; named here before it moved
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import Thresholds
from guidegap.denoisers.text_transformer import TextTransformerDenoiser
from guidegap.denoisers.text_unet import TextEmbeddingDenoiser
from guidegap.errors import InputError
from guidegap.pipelines.conditioning import encode_prompts, guidance_embedding, guidance_embedding_reason
from guidegap.pipelines.distilled import audit_guidance_distilled
from guidegap.pipelines.folders import LoadedPipeline, load_pipeline
from guidegap.pipelines.prompts import read_prompts
from guidegap.recording.layouts import default_layout
from guidegap.recording.seeding import INITIAL_NOISE, sample_generators

__all__ = ["audit_pipelines", "audit_generators", "prompt_denoiser", "per_prompt"]

PipelineLike = str | os.PathLike[str] | Any


def audit_generators(seed: int, num_samples: int) -> list[torch.Generator]:
    """Generators that make a pipeline draw the audit's initial noise: ``pipe(..., generator=audit_generators(s, n))``."""
    return sample_generators(seed, range(num_samples), INITIAL_NOISE)


def _loaded(value: PipelineLike, base: PipelineLike | None) -> LoadedPipeline:
    if isinstance(value, LoadedPipeline):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_pipeline(value, base=base if isinstance(base, (str, os.PathLike)) else None)
    if getattr(value, "unet", None) is None and getattr(value, "transformer", None) is None:
        raise InputError(f"expected a pipeline folder or a diffusers pipeline, received {type(value).__name__}.")
    return LoadedPipeline(value, type(value).__name__)


def _call_default(pipe: Any, name: str, fallback: Any) -> Any:
    try:
        default = inspect.signature(pipe.__call__).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return fallback
    return fallback if default is inspect.Parameter.empty or default is None else default


def _is_unet(model: Any) -> bool:
    return "UNet2DConditionModel" in {cls.__name__ for cls in type(model).__mro__}


#: Transformers audited from their pipelines (PixArt-Alpha/Sigma, SD3); others are recorded with guidegap.record.
TEXT_TRANSFORMERS = ("PixArtTransformer2DModel", "SD3Transformer2DModel")


def _denoiser_model(loaded: LoadedPipeline) -> Any:
    model = loaded.denoiser
    if not _is_unet(model) and type(model).__name__ not in TEXT_TRANSFORMERS:
        raise InputError(f"{loaded.describe()}: guidegap audits UNet2DConditionModel, {' and '.join(TEXT_TRANSFORMERS)} "
                         f"pipelines, received {type(model).__name__}; record it with guidegap.record / record_pair.")
    return model


def prompt_denoiser(pipeline: PipelineLike, prompts: Sequence[str], negative_prompt: str | None = None, role: str = "model",
                    guidance_scale: float | None = None) -> tuple[TextEmbeddingDenoiser | TextTransformerDenoiser, str]:
    """The pipeline's UNet or transformer as the denoiser the audit records (label ``i`` = prompt ``i``, null label =
    the null condition), and how its null condition was made. ``guidance_scale``: the w embedding of a
    guidance-embedded UNet."""
    loaded = _loaded(pipeline, None)
    pipe, model = loaded.pipe, _denoiser_model(loaded)
    prompts = list(prompts)
    conditioning = encode_prompts(pipe, prompts, negative_prompt)
    if not _is_unet(model):
        if guidance_scale is not None:
            raise InputError(f"{loaded.describe()}: a guidance embedding is measured for UNet2DConditionModel students only.")
        return TextTransformerDenoiser(model, conditioning.prompt_embeds, conditioning.null_embeds,
                                       name=f"{role} {type(model).__name__}", batch_order=default_layout(pipe, model).order,
                                       **conditioning.transformer_options()), conditioning.null_condition
    embedding = guidance_embedding(pipe, guidance_scale) if guidance_scale is not None else None
    # A guidance-embedded model's pipeline runs no CFG batch (LCM): the bare UNet's declared layout applies.
    layout = default_layout(pipe if embedding is None else None, model)
    denoiser = TextEmbeddingDenoiser(model, conditioning.prompt_embeds, conditioning.null_embeds,
                                     name=f"{role} {type(model).__name__}", timestep_cond=embedding,
                                     batch_order=layout.order, **conditioning.denoiser_options())
    return denoiser, conditioning.null_condition


def _is_flow(scheduler: Any) -> bool:
    """Flow matching (SD3's FlowMatchEulerDiscreteScheduler): no ``alphas_cumprod``, the model predicts a velocity."""
    return getattr(scheduler, "alphas_cumprod", None) is None


def _fixed_shift(scheduler: Any) -> Any:
    """``scheduler``, refused when its flow-matching shift depends on the image size (Flux-style dynamic shifting)."""
    if scheduler.config.get("use_dynamic_shifting"):
        raise InputError(f"{type(scheduler).__name__} with use_dynamic_shifting: expected a fixed shift (SD3, SD3.5), "
                         "received timesteps that depend on the image size (mu); guidegap does not compute mu yet.")
    return scheduler


def _sampler(spec: Any, pipe: Any) -> Any:
    from guidegap.recording.schedulers import make_scheduler

    base = _fixed_shift(pipe.scheduler)
    sampler = make_scheduler(spec, base=base) if spec is None or isinstance(spec, str) else make_scheduler(spec)
    if _is_flow(sampler) != _is_flow(base):
        raise InputError(f"--scheduler: expected a scheduler of the folder's kind ({type(base).__name__}, "
                         f"{'flow matching' if _is_flow(base) else 'DDPM family'}), received {type(sampler).__name__}; "
                         "pick one of that kind or drop --scheduler.")
    return sampler


def _noise_levels(scheduler: Any) -> torch.Tensor:
    """``alphas_cumprod``, or for flow matching the sigmas of a full-length schedule (its shift included)."""
    from guidegap.recording.schedulers import fresh_copy, num_train_timesteps

    if not _is_flow(scheduler):
        return torch.as_tensor(scheduler.alphas_cumprod)
    return torch.as_tensor(fresh_copy(_fixed_shift(scheduler), num_train_timesteps(scheduler)).sigmas)


def _check_schedules(teacher: Any, student: Any) -> None:
    """Teacher-forced comparison needs one noise schedule and one prediction type."""
    if _is_flow(teacher.scheduler) != _is_flow(student.scheduler):
        raise InputError(f"teacher samples with {type(teacher.scheduler).__name__} but the student with "
                         f"{type(student.scheduler).__name__}; expected both flow matching or both DDPM family; audit the "
                         "student against the teacher it was distilled from.")
    a, b = (_noise_levels(p.scheduler) for p in (teacher, student))
    if a.shape != b.shape or not torch.allclose(a, b):
        raise InputError("teacher and student folders have different noise schedules (scheduler/ alphas_cumprod or flow "
                         "sigmas); expected a student distilled on the teacher's schedule; audit it against the teacher "
                         "it came from.")
    kinds = [str(p.scheduler.config.get("prediction_type", "epsilon")) for p in (teacher, student)]
    if kinds[0] != kinds[1]:
        raise InputError(f"teacher predicts {kinds[0]!r} but the student {kinds[1]!r}; expected the same prediction_type.")


def _audit_cfg(student_p: LoadedPipeline, teacher_p: LoadedPipeline | None, prompts: list[str], negative_prompt: str | None,
               w: float, divergence: bool, options: dict[str, Any]) -> tuple[AuditReport, dict[str, str]]:
    """The class-conditional audit of two CFG pipelines' UNets over the prompt tables (teacher-free without a teacher)."""
    from guidegap.auditing.api import audit

    if teacher_p is not None and guidance_embedding_reason(teacher_p.denoiser) is not None:
        raise InputError(f"the teacher is guidance-distilled ({guidance_embedding_reason(teacher_p.denoiser)}) but the "
                         "student is not; expected a CFG teacher for a CFG student.")
    student_d, student_null = prompt_denoiser(student_p, prompts, negative_prompt, "student")
    nulls = {"student": student_null}
    teacher_d = None
    if teacher_p is not None:
        _check_schedules(teacher_p.pipe, student_p.pipe)
        teacher_d, nulls["teacher"] = prompt_denoiser(teacher_p, prompts, negative_prompt, "teacher")
    return audit(student_d, teacher_d, guidance_scale=w, divergence=divergence, **options), nulls


def audit_pipelines(
    student: PipelineLike,
    teacher: PipelineLike | None = None,
    *,
    prompts: Sequence[str] | str | os.PathLike[str] | None = None,
    negative_prompt: str | None = None,
    base: PipelineLike | None = None,
    num_samples: int | None = None,
    num_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: Any = None,
    seed: int = 0,
    chunk_size: int = 64,
    thresholds: Thresholds | None = None,
    n_boot: int = 1000,
    progress: bool = False,
    divergence: bool = True,
    true_cfg: bool = False,
    device: str | torch.device | None = None,
) -> AuditReport:
    """Audit a text-to-image student pipeline against its teacher pipeline (or teacher-free).

    ``student`` / ``teacher``: pipeline folders (or loaded pipelines); a bare UNet folder as ``student`` replaces the
    UNet of ``base`` (default: the teacher's folder), BK-SDM style. ``prompts``: a list, a prompts file, or None for
    the default set; ``negative_prompt`` replaces the pipeline's null condition. Defaults follow the student
    pipeline's ``__call__``: ``num_inference_steps``, ``guidance_scale``; one sample per prompt. A guidance-distilled
    student gets the ``guidance-distilled`` verdict with its response to w (and, with ``true_cfg``, the null-prompt
    probe). ``device`` moves both pipelines there (e.g. ``"cuda"``; default: where they are, the CPU for folders).
    Returns an :class:`~guidegap.auditing.AuditReport`; the Dataset's ``label`` is the prompt index into
    ``attrs["prompts"]`` and ``attrs["null_condition"]`` says how each model's null branch was made.
    """
    prompt_list = list(prompts) if isinstance(prompts, (list, tuple)) else read_prompts(prompts)
    teacher_p = _loaded(teacher, None) if teacher is not None else None
    student_p = _loaded(student, base if base is not None else teacher)
    pipe = student_p.pipe
    if device is not None:
        for loaded in (teacher_p, student_p):
            if loaded is not None:
                loaded.pipe.to(device)
    w = float(guidance_scale if guidance_scale is not None else _call_default(pipe, "guidance_scale", 7.5))
    options = dict(num_samples=num_samples or len(prompt_list), seed=seed, chunk_size=chunk_size, progress=progress,
                   num_steps=int(num_steps or _call_default(pipe, "num_inference_steps", 50)),
                   scheduler=_sampler(scheduler, (teacher_p or student_p).pipe), thresholds=thresholds, n_boot=n_boot)
    reason = guidance_embedding_reason(student_p.denoiser)
    if reason is not None:
        if not _is_unet(student_p.denoiser):
            raise InputError(f"the student is guidance-distilled ({reason}); guidegap measures the response to w of "
                             "UNet2DConditionModel students (LCM-style) only so far; expected a UNet pipeline folder.")
        model, null_condition = prompt_denoiser(student_p, prompt_list, negative_prompt, "student", w)
        at_one = model.with_timestep_cond(guidance_embedding(pipe, 1.0), model.name + " (w = 1)")
        options["scheduler"] = _sampler(scheduler, pipe)  # its own sampler (LCM), not the teacher's
        report = audit_guidance_distilled(model, at_one, reason, guidance_scale=w, true_cfg=true_cfg, **options)
        nulls = {"student": null_condition}
    else:
        report, nulls = _audit_cfg(student_p, teacher_p, prompt_list, negative_prompt, w, divergence, options)
    ds = report.dataset
    ds["label"].attrs.update(long_name="prompt index (into attrs['prompts'])")
    ds.attrs.update(
        student=student_p.describe(),
        teacher=teacher_p.describe() if teacher_p is not None else "",
        prompts=json.dumps(prompt_list),
        null_condition=json.dumps(nulls),
        pipeline=type(pipe).__name__,
    )
    return report
