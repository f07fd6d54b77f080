"""Denoiser contract and adapters: every model family becomes ``pred = denoiser(x, t, labels)``.

``as_denoiser`` picks the adapter of the model's family (:mod:`guidegap.denoisers.families`, one registration
per family); samplers, recorders and metrics never see a model family. Every adapter lives in this folder: the
class-conditional diffusers models, plain modules, the text-conditioned UNets and transformers of pipelines
(:mod:`~guidegap.denoisers.text_unet`, :mod:`~guidegap.denoisers.text_transformer`), views of one model as other
branches (:mod:`~guidegap.denoisers.views`), and the one eps-channel helper (:mod:`~guidegap.denoisers.channels`).
"""

from __future__ import annotations

import os
from typing import Any

from guidegap.denoisers.base import Denoiser, count_parameters
from guidegap.denoisers.dit import DiTDenoiser
from guidegap.denoisers.families import FAMILIES, Family, family_of, register_family, remove_family
from guidegap.denoisers.memo import Memoized
from guidegap.denoisers.module import ModuleDenoiser
from guidegap.denoisers.unet2d import UNet2DDenoiser
from guidegap.errors import AdapterError

__all__ = ["Denoiser", "DiTDenoiser", "Family", "Memoized", "ModuleDenoiser", "UNet2DDenoiser", "as_denoiser", "count_parameters",
           "register_family", "remove_family", "DenoiserLike"]

DenoiserLike = Any  # a Denoiser, a model of a registered family (UNet2DModel, DiTTransformer2DModel), or a callable(x, t, y)


def as_denoiser(model: DenoiserLike, **options: Any) -> Denoiser:
    """Return ``model`` as a :class:`Denoiser`, choosing the adapter of its family (:mod:`guidegap.denoisers.families`).

    ``options`` go to the adapter (e.g. ``num_classes=...`` for a plain module); a model of no registered family that is
    callable as ``forward(x, t, y)`` gets :class:`ModuleDenoiser`. A model read with :func:`guidegap.load_model` gives
    its model's denoiser with ``scheduler_config`` set to the noise schedule stored with it.
    """
    if _read_from_disk(model):  # guidegap.load_model's result: its model, carrying the schedule stored beside it
        denoiser = as_denoiser(model.model, **options)
        denoiser.scheduler_config = model.scheduler_config
        return denoiser
    if isinstance(model, Denoiser):
        if options:
            raise AdapterError(f"options {sorted(options)} were given for a model that is already a Denoiser; drop them.")
        return model
    family = family_of(model)
    if family is not None:
        if family.adapter is None:
            raise AdapterError(family.refusal)
        return family.adapter(model, **options)
    if callable(model):
        return ModuleDenoiser(model, **options)
    if isinstance(model, (str, os.PathLike)):
        raise AdapterError(f"expected a model, received the path {str(model)!r}; load it first with "
                           "guidegap.load_model(path) (guidegap.audit takes paths as they are).")
    adapted = " / ".join(name for name, f in FAMILIES.items() if f.adapter is not None)
    raise AdapterError(f"expected a Denoiser, a {adapted}, or a callable forward(x, t, y); received {type(model).__name__}.")


def _read_from_disk(model: Any) -> bool:
    """A :class:`guidegap.checkpoints.LoadedModel` (recognised by its fields: this package sits below checkpoints)."""
    return not callable(model) and all(hasattr(model, field) for field in ("model", "scheduler_config", "source", "kind"))
