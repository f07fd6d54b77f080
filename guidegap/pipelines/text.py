"""Text-conditioned audits: teacher and student ``UNet2DConditionModel`` with given prompt and null embeddings.

Each UNet becomes a :class:`~guidegap.denoisers.text_unet.TextEmbeddingDenoiser` (label ``i`` = prompt ``i``, the
null label = the null embedding) and :func:`guidegap.audit` does the rest.
"""

from __future__ import annotations

from typing import Any

import torch

from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import Thresholds
from guidegap.denoisers.text_unet import TextEmbeddingDenoiser
from guidegap.errors import InputError
from guidegap.recording.guidance import GuidanceLike

__all__ = ["TextEmbeddingDenoiser", "audit_text"]


def audit_text(
    teacher_unet: torch.nn.Module,
    student_unet: torch.nn.Module,
    prompt_embeds: torch.Tensor,
    null_embeds: torch.Tensor,
    *,
    scheduler: Any = None,
    num_steps: int = 50,
    guidance_scale: GuidanceLike = 7.5,
    num_samples: int | None = None,
    seed: int = 0,
    student_prompt_embeds: torch.Tensor | None = None,
    student_null_embeds: torch.Tensor | None = None,
    chunk_size: int = 64,
    thresholds: Thresholds | None = None,
    n_boot: int = 1000,
) -> AuditReport:
    """Audit a text-conditioned student UNet against its teacher, teacher-forced, with free-running divergence.

    ``prompt_embeds`` ``(P, L, D)`` are the text-encoder outputs of ``P`` prompts and ``null_embeds`` ``(1, L, D)``
    the empty (or negative) prompt's, the unconditional branch. Sample ``i`` uses prompt ``i % P``; by default one
    sample per prompt. A student with its own text encoder takes ``student_prompt_embeds`` /
    ``student_null_embeds`` (default: the teacher's). ``scheduler`` is a diffusers scheduler (pass the pipeline's,
    e.g. ``pipe.scheduler``, so the noise schedule is the model's) or a name; default DDIM on DDPM-linear.
    Returns the :class:`~guidegap.auditing.AuditReport` of :func:`guidegap.audit`; labels in its Dataset are
    prompt indices.
    """
    from guidegap.auditing.api import audit

    teacher = TextEmbeddingDenoiser(teacher_unet, prompt_embeds, null_embeds, name="teacher " + type(teacher_unet).__name__)
    student = TextEmbeddingDenoiser(
        student_unet,
        prompt_embeds if student_prompt_embeds is None else student_prompt_embeds,
        null_embeds if student_null_embeds is None else student_null_embeds,
        name="student " + type(student_unet).__name__,
    )
    if student.num_classes != teacher.num_classes:
        raise InputError(f"student_prompt_embeds: expected {teacher.num_classes} prompts like the teacher's, received {student.num_classes}.")
    return audit(student, teacher, num_samples=num_samples or teacher.num_classes, num_steps=num_steps,
                 guidance_scale=guidance_scale, scheduler=scheduler, seed=seed, chunk_size=chunk_size,
                 thresholds=thresholds, n_boot=n_boot)
