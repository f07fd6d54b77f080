"""Declared batch layouts of classifier-free guidance inside diffusers pipelines (docs/design.md §3).

A pipeline runs both branches either in one batch of ``2B`` rows, in an order fixed by its ``__call__``
(``torch.cat([negative_prompt_embeds, prompt_embeds])`` puts uncond first; DiTPipeline's
``torch.cat([class_labels, class_null])`` puts cond first), or as two calls of ``B`` rows labelled with
``model.cache_context("cond")`` / ``("uncond")`` (guider-based and modular pipelines). The order is read
from the pipeline's source once and written down here; it is never guessed from the numbers.

=====================================  ================  =================================================
pipeline / model class                 layout            source of the declaration
=====================================  ================  =================================================
DiTPipeline                            cond-first        ``torch.cat([class_labels, class_null])``, null 1000
StableDiffusion(Img2Img/Inpaint)       uncond-first      ``torch.cat([negative_prompt_embeds, prompt_embeds])``
StableDiffusionXL(Img2Img)Pipeline     uncond-first      idem
StableDiffusion3Pipeline               uncond-first      idem
PixArtAlpha/PixArtSigma/Sana/IF/LTX    uncond-first      idem (LTX inside ``cache_context("cond_uncond")``)
CogView4, Wan (T2V, I2V, VACE)         separate          ``cache_context("cond")`` then ``("uncond")``
``*ModularPipeline``                   separate          guider batches ``pred_cond`` / ``pred_uncond``
DiTTransformer2DModel (bare)           cond-first        guidegap's own convention; null = num_embeds_ada_norm
UNet2DModel (bare, class-conditional)  cond-first        guidegap's own convention; null = num_class_embeds - 1
UNet2DConditionModel (bare)            uncond-first      StableDiffusion's convention
=====================================  ================  =================================================

Learned-sigma models (``out_channels == 2 * in_channels``) are reduced to their eps channels, the first
half, as the pipelines do before guidance (:mod:`guidegap.denoisers.channels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guidegap.denoisers.channels import eps_channels
from guidegap.denoisers.families import family_of
from guidegap.errors import InputError

__all__ = [
    "Layout",
    "ORDERS",
    "PIPELINE_LAYOUTS",
    "CONTEXT_BRANCHES",
    "BATCHED_CONTEXTS",
    "default_layout",
    "eps_channels",
]

ORDERS = ("cond-first", "uncond-first", "separate")

# cache_context names of single-branch calls: plain pipelines use "cond"/"uncond"; diffusers guiders name the
# batches by their prediction ("pred_cond"/"pred_uncond", the guider's _identifier_key values).
CONTEXT_BRANCHES = {"cond": "cond", "pred_cond": "cond", "uncond": "uncond", "pred_uncond": "uncond"}
# cache_context names of calls that carry both branches in one batch, in the pipeline's declared order.
BATCHED_CONTEXTS = frozenset({"cond_uncond"})


@dataclass(frozen=True)
class Layout:
    """How a pipeline lays out the two CFG branches in the denoiser's batch.

    Attributes:
        order: ``"cond-first"`` / ``"uncond-first"`` (one ``2B`` batch, halves in that order) or
            ``"separate"`` (two ``B`` calls labelled by ``cache_context``; unlabelled calls are unguided).
        label_arg: forward argument holding class labels, for class-conditional models (``"class_labels"``).
        null_label: the label id of the unconditional branch; a ``2B`` batch counts as guided only when every
            label of its uncond half is this id.
    """

    order: str
    label_arg: str | None = None
    null_label: int | None = None

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise InputError(f"Layout: expected order in {ORDERS}, received {self.order!r}.")
        if (self.label_arg is None) != (self.null_label is None):
            raise InputError(
                f"Layout: label_arg and null_label go together, received label_arg={self.label_arg!r}, "
                f"null_label={self.null_label!r}; pass both (class-conditional) or neither (text-conditioned)."
            )

    @property
    def batched(self) -> bool:
        return self.order != "separate"

    def halves(self, batch: Any) -> tuple[Any, Any]:
        """``(cond, uncond)`` halves of a ``2B`` batch (tensor) in this layout's order."""
        half = batch.shape[0] // 2
        first, second = batch[:half], batch[half:]
        return (first, second) if self.order == "cond-first" else (second, first)

    def describe(self) -> dict[str, Any]:
        return {"order": self.order, "label_arg": self.label_arg, "null_label": self.null_label}


_UNCOND_FIRST = Layout("uncond-first")
_SEPARATE = Layout("separate")

#: Pipeline class name -> declared layout. DiTPipeline's null class is the constant 1000 in its __call__.
PIPELINE_LAYOUTS: dict[str, Layout] = {
    "DiTPipeline": Layout("cond-first", "class_labels", 1000),
    "StableDiffusionPipeline": _UNCOND_FIRST,
    "StableDiffusionImg2ImgPipeline": _UNCOND_FIRST,
    "StableDiffusionInpaintPipeline": _UNCOND_FIRST,
    "StableDiffusionXLPipeline": _UNCOND_FIRST,
    "StableDiffusionXLImg2ImgPipeline": _UNCOND_FIRST,
    "StableDiffusion3Pipeline": _UNCOND_FIRST,
    "PixArtAlphaPipeline": _UNCOND_FIRST,
    "PixArtSigmaPipeline": _UNCOND_FIRST,
    "SanaPipeline": _UNCOND_FIRST,
    "IFPipeline": _UNCOND_FIRST,
    "LTXPipeline": _UNCOND_FIRST,
    "CogView4Pipeline": _SEPARATE,
    "WanPipeline": _SEPARATE,
    "WanImageToVideoPipeline": _SEPARATE,
    "WanVACEPipeline": _SEPARATE,
}


def _model_layout(model: Any) -> Layout | None:
    """The layout of a bare denoiser called directly, as its family declares it (:mod:`guidegap.denoisers.families`)."""
    family = family_of(model)
    declared = family.layout(model) if family is not None and family.layout is not None else None
    return Layout(*declared) if declared is not None else None


def default_layout(pipeline: Any | None, model: Any) -> Layout:
    """The declared layout for ``pipeline`` (by class name), or for a bare ``model`` when ``pipeline`` is None."""
    if pipeline is not None:
        names = [cls.__name__ for cls in type(pipeline).__mro__]
        for name in names:
            if name in PIPELINE_LAYOUTS:
                layout = PIPELINE_LAYOUTS[name]
                if name == "DiTPipeline":
                    _check_dit_null(model, layout)
                return layout
        if any(name.endswith("ModularPipeline") for name in names):
            return _SEPARATE
        raise InputError(
            f"guidegap does not know how {names[0]} lays out the CFG branches in the denoiser's batch; read its "
            "__call__ and pass layout=Layout('uncond-first') (torch.cat([negative_prompt_embeds, prompt_embeds])), "
            "Layout('cond-first'), or Layout('separate') (branches run as separate calls under "
            "cache_context('cond'/'uncond'))."
        )
    layout = _model_layout(model)
    if layout is None:
        raise InputError(
            f"guidegap has no declared CFG layout for a bare {type(model).__name__}; pass layout=Layout('cond-first') or "
            "Layout('uncond-first') (with label_arg/null_label for class labels), or Layout('separate')."
        )
    return layout


def _check_dit_null(model: Any, layout: Layout) -> None:
    classes = (getattr(model, "config", {}) or {}).get("num_embeds_ada_norm")
    if classes is not None and int(classes) != layout.null_label:
        raise InputError(
            f"DiTPipeline always uses class {layout.null_label} as the null label, but this transformer's null label is "
            f"num_embeds_ada_norm = {classes}; the pipeline cannot do CFG with it. Use a transformer with "
            f"num_embeds_ada_norm = {layout.null_label}, or record the bare model with guidegap.record(model)."
        )
