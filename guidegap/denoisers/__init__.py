"""Denoiser contract and adapters: every model family becomes ``pred = denoiser(x, t, labels)``.

``as_denoiser`` picks the adapter from the model's type; samplers, recorders and metrics never see a
model family.
"""

from __future__ import annotations

from typing import Any

from guidegap.denoisers.base import Denoiser, count_parameters
from guidegap.denoisers.dit import DiTDenoiser
from guidegap.denoisers.memo import Memoized
from guidegap.denoisers.module import ModuleDenoiser
from guidegap.denoisers.unet2d import UNet2DDenoiser
from guidegap.errors import AdapterError

__all__ = ["Denoiser", "DiTDenoiser", "Memoized", "ModuleDenoiser", "UNet2DDenoiser", "as_denoiser", "count_parameters", "DenoiserLike"]

DenoiserLike = Any  # a Denoiser, a diffusers UNet2DModel / DiTTransformer2DModel, or a module/callable(x, t, y)


def as_denoiser(model: DenoiserLike, **options: Any) -> Denoiser:
    """Return ``model`` as a :class:`Denoiser`, choosing the adapter by type.

    ``options`` go to the adapter (e.g. ``num_classes=...`` for a plain module).
    """
    if isinstance(model, Denoiser):
        if options:
            raise AdapterError(f"options {sorted(options)} were given for a model that is already a Denoiser; drop them.")
        return model
    kind = type(model).__name__
    families = {cls.__name__ for cls in type(model).__mro__}  # by name, so diffusers is imported only when used
    if "UNet2DModel" in families:
        return UNet2DDenoiser(model, **options)
    if "DiTTransformer2DModel" in families:
        return DiTDenoiser(model, **options)
    if "UNet2DConditionModel" in families:
        raise AdapterError(
            "UNet2DConditionModel is text-conditioned: it has no class labels; audit it with "
            "guidegap.audit_text(teacher_unet, student_unet, prompt_embeds, null_embeds) or record its pipeline with guidegap.record."
        )
    if callable(model):
        return ModuleDenoiser(model, **options)
    raise AdapterError(
        f"expected a Denoiser, a diffusers UNet2DModel / DiTTransformer2DModel, or a callable forward(x, t, y); "
        f"received {kind}."
    )
