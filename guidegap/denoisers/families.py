"""The model families guidegap adapts, one registration each: class name, adapter, bare-call layout, builder.

A family is recognised by a class name in the model's MRO (so diffusers is imported only when one is used).
:func:`guidegap.as_denoiser` picks its adapter; :func:`guidegap.record` on a bare model of the family batches the
branches as its ``layout`` says; guidegap checkpoints and diffusers folders of the family are rebuilt with its
``build``. A new family is one adapter file (a :class:`~guidegap.denoisers.Denoiser` subclass) plus::

    register_family(Family("MyTransformer", adapter=MyTransformerDenoiser, layout=..., build=...))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from guidegap.denoisers.base import Denoiser
from guidegap.denoisers.dit import DiTDenoiser
from guidegap.denoisers.unet2d import UNet2DDenoiser
from guidegap._registry import Registry

__all__ = ["Family", "FAMILIES", "register_family", "remove_family", "family_of", "buildable", "diffusers_builder"]

# (order, label keyword, null label) of one call carrying both branches, as guidegap.recording.layouts.Layout takes them
BareLayout = tuple[str, "str | None", "int | None"]


@dataclass(frozen=True)
class Family:
    """One model family.

    ``adapter(model, **options)``: its :class:`Denoiser` (``None``: the family is recognised but refused, with
    ``refusal``). ``layout(model)``: how a bare model of the family batches the two CFG branches when called directly
    (``None`` when this model cannot do CFG). ``build(config)``: an untrained model from a stored config, for
    checkpoints and folders (``None``: not stored by guidegap).
    """

    name: str
    adapter: Callable[..., Denoiser] | None = None
    layout: Callable[[Any], BareLayout | None] | None = None
    build: Callable[[dict[str, Any]], nn.Module] | None = None
    refusal: str = ""


def diffusers_builder(name: str) -> Callable[[dict[str, Any]], nn.Module]:
    """``build`` of a diffusers model class: ``from_config`` (private keys dropped)."""

    def build(config: dict[str, Any]) -> nn.Module:
        import diffusers

        return getattr(diffusers, name).from_config({k: v for k, v in config.items() if not k.startswith("_")})

    return build


def _config(model: Any) -> dict[str, Any]:
    return getattr(model, "config", {}) or {}


def _unet_layout(model: Any) -> BareLayout | None:
    """guidegap's convention for a class-conditional UNet: cond half first, null label = the last embedding row."""
    embeds = _config(model).get("num_class_embeds")
    return ("cond-first", "class_labels", int(embeds) - 1) if embeds else None


def _dit_layout(model: Any) -> BareLayout | None:
    """guidegap's convention for a class-conditional DiT: cond half first, null label = ``num_embeds_ada_norm``."""
    classes = _config(model).get("num_embeds_ada_norm")
    return ("cond-first", "class_labels", int(classes)) if classes is not None else None


FAMILIES: Registry[Family] = Registry("family", ((f.name, f) for f in (
    Family("UNet2DModel", UNet2DDenoiser, _unet_layout, diffusers_builder("UNet2DModel")),
    Family("DiTTransformer2DModel", DiTDenoiser, _dit_layout, diffusers_builder("DiTTransformer2DModel")),
    Family("UNet2DConditionModel", None, lambda model: ("uncond-first", None, None), refusal=(
        "UNet2DConditionModel is text-conditioned: it has no class labels; audit it with "
        "guidegap.audit_text(teacher_unet, student_unet, prompt_embeds, null_embeds) or record its pipeline with guidegap.record.")),
)))


def register_family(family: Family) -> Family:
    """Add a model family; a class name that is taken is refused. Returns ``family``."""
    return FAMILIES.add(getattr(family, "name", ""), family, Family)


def remove_family(name: str) -> None:
    """Remove a family added with :func:`register_family`; the built-in families stay."""
    FAMILIES.remove(name)


def family_of(model: Any) -> Family | None:
    """The registered family of ``model`` (the first class of its MRO that names one), else ``None``."""
    for cls in type(model).__mro__:
        family = FAMILIES.get(cls.__name__)
        if family is not None:
            return family
    return None


def buildable() -> list[str]:
    """The family names guidegap can rebuild from a stored config."""
    return [name for name, family in FAMILIES.items() if family.build is not None]
