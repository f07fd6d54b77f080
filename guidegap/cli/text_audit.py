"""``guidegap audit`` for text-to-image pipeline folders: routes to :func:`guidegap.pipelines.audit_pipelines`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from guidegap.errors import InputError, first_line

__all__ = ["wants_text_audit", "text_report"]


def wants_text_audit(args: argparse.Namespace) -> bool:
    """Text-to-image when prompts are given, STUDENT / --teacher / --base is a pipeline folder with a tokenizer, or
    STUDENT is a bare text-conditioned denoiser folder (BK-SDM's unet/)."""
    from guidegap.pipelines.folders import denoiser_folder, is_text_pipeline

    if args.prompts or any(is_text_pipeline(p) for p in (args.student, args.teacher, args.base)):
        return True
    return args.student is not None and denoiser_folder(args.student) is not None


def text_report(args: argparse.Namespace, thresholds: Any) -> Any:
    from guidegap.pipelines.text_audit import audit_pipelines

    if args.labels:
        raise InputError("--labels picks classes of class-conditional models; for a text-to-image pipeline pass "
                         "--prompts FILE (sample i uses prompt i % P).")
    if args.factory or args.trust_pickle:
        raise InputError("--factory / --trust-pickle apply to checkpoint files; pipeline folders load as data "
                         "(safetensors or weights-only .bin); drop them.")
    guidance = None
    if args.guidance_scale is not None:
        try:
            guidance = float(args.guidance_scale)
        except ValueError:
            raise InputError(f"expected a number for --guidance-scale of a text-to-image audit, received "
                             f"{args.guidance_scale!r}; schedules such as 'tag' are for class-conditional audits.") from None
    return audit_pipelines(
        args.student, args.teacher, prompts=args.prompts, negative_prompt=args.negative_prompt, base=args.base,
        num_samples=args.num_samples, num_steps=args.num_steps, guidance_scale=guidance, scheduler=args.scheduler,
        seed=args.seed, chunk_size=args.chunk_size, thresholds=thresholds, divergence=not args.no_divergence,
        progress=not args.no_progress and not args.json and sys.stderr.isatty(), true_cfg=args.true_cfg,
        device=_device(args.device),
    )


def _device(name: str | None) -> Any:
    """``--device`` as a torch.device, refused in one line when this machine has no such device."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        first = first_line(error, 120)
        raise InputError(f"expected --device to name a device of this machine (cpu, cuda, cuda:1, ...), received "
                         f"{name!r} ({first}).") from None
    return device
