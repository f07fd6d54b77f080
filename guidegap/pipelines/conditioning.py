"""Prompts -> the denoiser's conditioning tables, built by the pipeline's own ``encode_prompt`` and conventions.

What ``encode_prompt`` returns, in which order, is declared per pipeline class (read from its source, never
guessed from shapes), as are the null condition and the added inputs:

==================================  =============================================================  ==============
pipeline                            ``encode_prompt(prompt, ..., do_classifier_free_guidance=True)``  added inputs
==================================  =============================================================  ==============
StableDiffusionPipeline             ``(prompt_embeds, negative_prompt_embeds)``                     none
LatentConsistencyModelPipeline      idem (SD's copy)                                                none
StableDiffusionXLPipeline           ``(prompt_embeds, negative_prompt_embeds, pooled, neg. pooled)``  text_time
StableDiffusion3Pipeline            idem (SDXL's order)                                             pooled_projections
PixArtAlphaPipeline                 ``(prompt_embeds, mask, negative_prompt_embeds, neg. mask)``      resolution
PixArtSigmaPipeline                 idem                                                            none
==================================  =============================================================  ==============

Null condition: ``negative_prompt`` when given, else the pipeline's default — the encoded empty prompt ``""``,
or zeros where ``pipe.config.force_zeros_for_empty_prompt`` is set (SDXL; ``zero_out_negative_prompt`` in its
``encode_prompt``). SDXL's added conditioning follows its ``__call__``: ``text_embeds`` the pooled embeddings,
``time_ids = pipe._get_add_time_ids(original_size, (0, 0), target_size, ...)`` with both sizes the default image
size ``unet.config.sample_size * pipe.vae_scale_factor``, the same ids for the null row. Guidance-embedded UNets
(``time_cond_proj_dim``) take ``pipe.get_guidance_scale_embedding(w - 1)``, as every SD-family ``__call__``.
Transformers take their extra inputs as forward arguments: PixArt the T5 ``encoder_attention_mask`` per row, and
PixArt-Alpha's 1024-px models (``transformer.config.sample_size == 128``) ``added_cond_kwargs`` resolution and aspect
ratio of the default image size (``None`` otherwise, and always for Sigma); SD3 the pooled CLIP embeddings as
``pooled_projections``. ``encode_prompt`` gets the arguments ``__call__`` passes it by default (``clean_caption``,
``max_sequence_length``, ``prompt_2`` ...), so the tables are the ones the pipeline builds.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from guidegap.errors import InputError

__all__ = ["PromptEncoding", "PROMPT_ENCODINGS", "Conditioning", "encode_prompts", "guidance_embedding_reason",
           "guidance_embedding"]


@dataclass(frozen=True)
class PromptEncoding:
    """The declared return values of a pipeline's ``encode_prompt`` and the added inputs its denoiser takes."""

    outputs: tuple[str, ...]
    added: str | None = None  # "text_time" (SDXL), "pooled_projections" (SD3), "resolution" (PixArt-Alpha)


_SD = PromptEncoding(("prompt_embeds", "negative_prompt_embeds"))
_SDXL = PromptEncoding(("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
                       "text_time")

_PIXART = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")

#: Pipeline class name -> declared encode_prompt outputs.
PROMPT_ENCODINGS: dict[str, PromptEncoding] = {
    "StableDiffusionPipeline": _SD,
    "LatentConsistencyModelPipeline": _SD,
    "StableDiffusionXLPipeline": _SDXL,
    "StableDiffusion3Pipeline": PromptEncoding(_SDXL.outputs, "pooled_projections"),
    "PixArtAlphaPipeline": PromptEncoding(_PIXART, "resolution"),
    "PixArtSigmaPipeline": PromptEncoding(_PIXART),
}


@dataclass
class Conditioning:
    """Per-prompt conditioning rows and the null condition's row, as the denoiser takes them."""

    prompt_embeds: torch.Tensor  # (P, L, D)
    null_embeds: torch.Tensor  # (1, L, D)
    added: dict[str, torch.Tensor] | None  # SDXL: text_embeds (P, D'), time_ids (P, 6)
    null_added: dict[str, torch.Tensor] | None
    null_condition: str  # how the null row was made, for the Dataset attrs
    inputs: dict[str, torch.Tensor] | None = None  # transformers: forward inputs per prompt (encoder_attention_mask, ...)
    null_inputs: dict[str, torch.Tensor] | None = None
    added_cond: dict[str, torch.Tensor | None] | None = None  # PixArt's added_cond_kwargs, one row for every sample

    def denoiser_options(self) -> dict[str, Any]:
        return {"added": self.added, "null_added": self.null_added}

    def transformer_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~guidegap.denoisers.text_transformer.TextTransformerDenoiser`."""
        return {"inputs": self.inputs or {}, "null_inputs": self.null_inputs or {}, "added_cond": self.added_cond}


def _encoding(pipe: Any) -> PromptEncoding:
    for cls in type(pipe).__mro__:
        if cls.__name__ in PROMPT_ENCODINGS:
            return PROMPT_ENCODINGS[cls.__name__]
    raise InputError(
        f"guidegap has no declaration of what {type(pipe).__name__}.encode_prompt returns; expected one of "
        f"{', '.join(sorted(PROMPT_ENCODINGS))}; encode the prompts yourself and use guidegap.audit_text."
    )


def _null_condition(pipe: Any, negative_prompt: str | None) -> str:
    if negative_prompt is not None:
        return f"negative prompt {negative_prompt!r}, encoded"
    if bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False)):
        return "zeros (the pipeline's force_zeros_for_empty_prompt)"
    return "empty prompt '', encoded"


@torch.no_grad()
def encode_prompts(pipe: Any, prompts: list[str], negative_prompt: str | None = None) -> Conditioning:
    """Encode ``prompts`` and the null condition with the pipeline's own text encoder(s) and tokenizer(s)."""
    encoding = _encoding(pipe)
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    device = denoiser.device
    accepted = inspect.signature(pipe.encode_prompt).parameters
    options = {**_call_defaults(pipe, accepted), "prompt": list(prompts), "device": device, "num_images_per_prompt": 1,
               "do_classifier_free_guidance": True}
    if negative_prompt is not None:
        options["negative_prompt"] = [negative_prompt] * len(prompts)
    values = pipe.encode_prompt(**{k: v for k, v in options.items() if k in accepted})
    if not isinstance(values, tuple) or len(values) != len(encoding.outputs):
        raise InputError(f"{type(pipe).__name__}.encode_prompt returned {type(values).__name__} of length "
                         f"{len(values) if isinstance(values, tuple) else '?'}, expected {encoding.outputs}; this diffusers "
                         "version changed it: report it to guidegap.")
    out = dict(zip(encoding.outputs, values))
    null_condition = _null_condition(pipe, negative_prompt)
    prompt_embeds, null_embeds = out["prompt_embeds"].float(), out["negative_prompt_embeds"][:1].float()
    if null_condition.startswith("zeros") and bool(null_embeds.abs().max() > 0):
        raise InputError(f"{type(pipe).__name__}: force_zeros_for_empty_prompt is set but encode_prompt returned a non-zero "
                         "null embedding; report it to guidegap.")
    added = null_added = None
    if encoding.added == "text_time":
        pooled, null_pooled = out["pooled_prompt_embeds"].float(), out["negative_pooled_prompt_embeds"][:1].float()
        time_ids = _sdxl_time_ids(pipe, pooled).to(device)
        added = {"text_embeds": pooled, "time_ids": time_ids.expand(len(prompts), -1)}
        null_added = {"text_embeds": null_pooled, "time_ids": time_ids}
    inputs: dict[str, torch.Tensor] = {}
    null_inputs: dict[str, torch.Tensor] = {}
    if "prompt_attention_mask" in out:  # PixArt's T5 padding mask, per row
        inputs["encoder_attention_mask"] = out["prompt_attention_mask"]
        null_inputs["encoder_attention_mask"] = out["negative_prompt_attention_mask"][:1]
    if encoding.added == "pooled_projections":
        inputs["pooled_projections"] = out["pooled_prompt_embeds"].float()
        null_inputs["pooled_projections"] = out["negative_pooled_prompt_embeds"][:1].float()
    added_cond = None
    if "prompt_attention_mask" in out:
        added_cond = _pixart_resolution(pipe) if encoding.added == "resolution" else {"resolution": None, "aspect_ratio": None}
    return Conditioning(prompt_embeds, null_embeds, added, null_added, null_condition, inputs or None, null_inputs or None,
                        added_cond)


def _call_defaults(pipe: Any, accepted: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """The defaults of ``pipe.__call__`` for the ``encode_prompt`` parameters it shares (what ``__call__`` passes on)."""
    try:
        call = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in call.items()
            if name in accepted and p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _pixart_resolution(pipe: Any) -> dict[str, torch.Tensor | None]:
    """PixArt-Alpha's ``added_cond_kwargs`` as its ``__call__`` builds them: the default image size and its aspect ratio
    for ``sample_size == 128`` transformers (1024 px), ``None`` for the others."""
    if pipe.transformer.config.sample_size != 128:
        return {"resolution": None, "aspect_ratio": None}
    side = float(pipe.transformer.config.sample_size * pipe.vae_scale_factor)
    return {"resolution": torch.tensor([[side, side]]), "aspect_ratio": torch.tensor([[1.0]])}


def _sdxl_time_ids(pipe: Any, pooled: torch.Tensor) -> torch.Tensor:
    """``add_time_ids`` as ``StableDiffusionXLPipeline.__call__`` builds them at its default image size."""
    size = pipe.unet.config.sample_size
    height, width = ((size, size) if isinstance(size, int) else tuple(size))
    image = (int(height) * pipe.vae_scale_factor, int(width) * pipe.vae_scale_factor)
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    projection = int(pooled.shape[-1]) if encoder_2 is None else encoder_2.config.projection_dim
    return pipe._get_add_time_ids(image, (0, 0), image, dtype=torch.float32, text_encoder_projection_dim=projection)


def guidance_embedding_reason(model: Any) -> str | None:
    """Why ``model`` is guidance-distilled (w is an input, there is no unconditional branch), or None.

    LCM-style UNets declare ``time_cond_proj_dim`` (Luo et al. 2023, arXiv 2310.04378; the w-embedding of Meng et
    al. 2023, arXiv 2210.03142); Flux-dev-style transformers declare ``guidance_embeds``.
    """
    config = getattr(model, "config", None) or {}
    name = type(model).__name__
    if config.get("time_cond_proj_dim") is not None:
        return (f"{name} config.time_cond_proj_dim = {config.get('time_cond_proj_dim')}: w enters as a guidance-scale "
                "embedding (LCM-style guidance distillation), so the model has no unconditional branch to compare")
    if config.get("guidance_embeds"):
        return (f"{name} config.guidance_embeds = true: w enters as an embedding (Flux-dev-style guidance distillation), "
                "so the model has no unconditional branch to compare")
    return None


def guidance_embedding(pipe: Any, guidance_scale: float) -> torch.Tensor:
    """``pipe.get_guidance_scale_embedding(w - 1)`` ``(1, time_cond_proj_dim)``, as the pipeline's ``__call__``."""
    dim = pipe.unet.config.time_cond_proj_dim
    w = torch.tensor([float(guidance_scale) - 1.0])
    return pipe.get_guidance_scale_embedding(w, embedding_dim=dim).float()
