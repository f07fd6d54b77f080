"""Adapter for text-conditioned ``UNet2DConditionModel`` s: a class-conditional denoiser over prompt embeddings.

A text-conditioned UNet becomes a class-conditional :class:`~guidegap.denoisers.Denoiser` over a table of
embeddings: label ``i`` is prompt ``i`` (``encoder_hidden_states = prompt_embeds[i]``) and the null label ``P``
(the number of prompts) is the null (empty- or negative-prompt) embedding. SDXL-style UNets
(``addition_embed_type = "text_time"``) take one table per added input (``text_embeds``, ``time_ids``) indexed
the same way; guidance-embedded UNets (``time_cond_proj_dim``, LCM) take a fixed ``timestep_cond``. Everything
else, the sampler, teacher forcing, metrics and verdicts, is the class-conditional machinery; pipeline folders are
encoded into these tables by :mod:`guidegap.pipelines.conditioning`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.denoisers.channels import eps_channels, eps_part
from guidegap.errors import AdapterError, InputError

__all__ = ["TextEmbeddingDenoiser", "conditioning_tables"]


def _embeddings(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (2, 3) or not value.is_floating_point():
        got = f"shape {tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(f"{name}: expected a float tensor of text embeddings (P, L, D) or (L, D), received {got}.")
    return (value if value.ndim == 3 else value.unsqueeze(0)).detach()


class TextEmbeddingDenoiser(Denoiser):
    """A ``UNet2DConditionModel`` whose labels index prompt embeddings; the null label selects ``null_embeds``.

    ``added`` / ``null_added``: SDXL's added inputs per prompt ``(P, ...)`` and for the null condition ``(1, ...)``;
    ``timestep_cond``: a guidance-scale embedding ``(1, D)`` for UNets with ``time_cond_proj_dim``; ``batch_order``:
    the pipeline's declared CFG batch layout (:data:`guidegap.recording.layouts.PIPELINE_LAYOUTS`; StableDiffusion
    puts the uncond half first). Learned-sigma UNets (``out_channels == 2 * in_channels``) are reduced to their eps
    channels (:func:`~guidegap.denoisers.channels.eps_channels`).
    """

    def __init__(self, unet: torch.nn.Module, prompt_embeds: torch.Tensor, null_embeds: torch.Tensor,
                 *, name: str | None = None, added: Mapping[str, torch.Tensor] | None = None,
                 null_added: Mapping[str, torch.Tensor] | None = None, timestep_cond: torch.Tensor | None = None,
                 batch_order: str = "uncond-first") -> None:
        label = name or type(unet).__name__
        config = getattr(unet, "config", None)
        if config is None or config.get("cross_attention_dim") is None:
            raise AdapterError(f"{label}: expected a text-conditioned UNet2DConditionModel (config.cross_attention_dim), "
                               f"received {type(unet).__name__}.")
        supplied = {"addition_embed_type": added is not None, "time_cond_proj_dim": timestep_cond is not None,
                    "class_embed_type": False}
        for key, given in supplied.items():
            if (config.get(key) is not None) != given:
                raise AdapterError(
                    f"{label}: config.{key} = {config.get(key)!r} but the extra conditioning it needs (SDXL added_cond_kwargs, "
                    "a guidance-scale embedding, class labels) was " + ("given" if given else "not given") + "; audit "
                    "its pipeline folder (guidegap.pipelines.audit_pipelines), which builds these inputs as the pipeline does."
                )
        prompts = _embeddings(prompt_embeds, "prompt_embeds")
        null = _embeddings(null_embeds, "null_embeds")
        if null.shape[0] != 1 or null.shape[1:] != prompts.shape[1:]:
            raise InputError(
                f"null_embeds: expected one embedding shaped like a prompt's {tuple(prompts.shape[1:])}, received "
                f"{tuple(null.shape)}; pass the embedding of the empty (or negative) prompt."
            )
        size = config["sample_size"]
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.in_channels = int(config["in_channels"])
        super().__init__(num_classes=prompts.shape[0], null_label=prompts.shape[0],
                         sample_shape=(self.in_channels, height, width), module=unet, name=label)
        self.unet = unet
        self.table = torch.cat([prompts, null.to(prompts.dtype)])
        self.added = conditioning_tables(added, null_added, prompts.shape[0], label)
        self.timestep_cond = None if timestep_cond is None else timestep_cond.detach().reshape(1, -1)
        self.batch_order = batch_order
        self.eps = eps_channels(unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = labels.to(x.device)
        embeds = self.table.to(device=x.device, dtype=x.dtype)[rows]
        extra: dict[str, Any] = {}
        if self.added:
            extra["added_cond_kwargs"] = {k: v.to(device=x.device, dtype=x.dtype)[rows] for k, v in self.added.items()}
        if self.timestep_cond is not None:
            extra["timestep_cond"] = self.timestep_cond.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1)
        pred = self.unet(x, t, encoder_hidden_states=embeds, return_dict=False, **extra)[0]
        return eps_part(pred, self.eps)

    def with_timestep_cond(self, timestep_cond: torch.Tensor, name: str) -> "TextEmbeddingDenoiser":
        """The same UNet and tables with another guidance-scale embedding (guidance-distilled models)."""
        other = copy.copy(self)
        other.timestep_cond, other.name = timestep_cond.detach().reshape(1, -1), name
        return other

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info["prompts"] = int(self.num_classes)
        info["embedding_shape"] = list(self.table.shape[1:])
        info["added_inputs"] = sorted(self.added)
        info["batch_order"] = self.batch_order
        return info


def conditioning_tables(added: Mapping[str, torch.Tensor] | None, null_added: Mapping[str, torch.Tensor] | None,
                  num_prompts: int, label: str) -> dict[str, torch.Tensor]:
    """One table per added input (SDXL ``text_embeds``, ``time_ids``): the prompts' rows, then the null row."""
    if added is None:
        return {}
    null_added = null_added or {}
    if set(added) != set(null_added):
        raise InputError(f"{label}: expected the same added inputs for the prompts and the null condition, received "
                         f"{sorted(added)} and {sorted(null_added)}.")
    tables = {}
    for key, rows in added.items():
        null = null_added[key]
        if rows.shape[0] != num_prompts or null.shape != (1, *rows.shape[1:]):
            raise InputError(f"{label}: expected added input {key!r} shaped ({num_prompts}, ...) with a (1, ...) null row, "
                             f"received {tuple(rows.shape)} and {tuple(null.shape)}.")
        tables[key] = torch.cat([rows.detach(), null.detach().to(rows.dtype)])
    return tables
