"""Text-conditioned diffusers transformers (PixArt, SD3) as class-conditional denoisers over prompt tables.

The transformer counterpart of :class:`~guidegap.denoisers.text_unet.TextEmbeddingDenoiser`: label ``i`` selects row ``i``
of every conditioning table (``encoder_hidden_states`` and the family's other forward inputs, e.g. PixArt's
``encoder_attention_mask`` or SD3's ``pooled_projections``) and the null label ``P`` the null condition's row. The
call is the pipelines' own, ``transformer(hidden_states=x, timestep=t, encoder_hidden_states=..., **inputs)``;
learned-sigma outputs (PixArt: ``out_channels == 2 * in_channels``) are reduced to their eps channels by
:func:`~guidegap.denoisers.channels.eps_channels`, as the pipelines do before stepping. For flow-matching
transformers (SD3) the prediction is a velocity and the gap ``v_c - v_u`` is what CFG combines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.denoisers.channels import eps_channels, eps_part
from guidegap.denoisers.text_unet import conditioning_tables
from guidegap.errors import AdapterError

__all__ = ["TextTransformerDenoiser"]


class TextTransformerDenoiser(Denoiser):
    """A text-conditioned transformer whose labels index per-prompt conditioning rows; the null label the null row.

    ``prompt_embeds`` ``(P, L, D)`` / ``null_embeds`` ``(1, L, D)``: ``encoder_hidden_states``; ``inputs`` /
    ``null_inputs``: other forward inputs by name, ``(P, ...)`` and ``(1, ...)``; ``added_cond``: PixArt's
    ``added_cond_kwargs``, one ``(1, ...)`` row (or ``None``) shared by every sample, as its ``__call__`` builds them.
    """

    def __init__(self, transformer: torch.nn.Module, prompt_embeds: torch.Tensor, null_embeds: torch.Tensor, *,
                 inputs: Mapping[str, torch.Tensor] | None = None, null_inputs: Mapping[str, torch.Tensor] | None = None,
                 added_cond: Mapping[str, torch.Tensor | None] | None = None, name: str | None = None,
                 batch_order: str = "uncond-first") -> None:
        label = name or type(transformer).__name__
        config = getattr(transformer, "config", None)
        if config is None or not isinstance(config.get("sample_size"), int) or not isinstance(config.get("in_channels"), int):
            raise AdapterError(f"{label}: expected a diffusers transformer with config.sample_size and config.in_channels, "
                               f"received {type(transformer).__name__}.")
        num_prompts = int(prompt_embeds.shape[0])
        self.tables = conditioning_tables({"encoder_hidden_states": prompt_embeds, **(inputs or {})},
                                    {"encoder_hidden_states": null_embeds, **(null_inputs or {})}, num_prompts, label)
        size, channels = int(config["sample_size"]), int(config["in_channels"])
        super().__init__(num_classes=num_prompts, null_label=num_prompts, sample_shape=(channels, size, size),
                         module=transformer, name=label)
        self.transformer = transformer
        self.added_cond = None if added_cond is None else dict(added_cond)
        self.batch_order = batch_order
        self.eps = eps_channels(transformer)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = labels.to(x.device)
        kwargs: dict[str, Any] = {
            key: (table.to(x.device, x.dtype) if table.is_floating_point() else table.to(x.device))[rows]
            for key, table in self.tables.items()
        }
        if self.added_cond is not None:
            kwargs["added_cond_kwargs"] = {
                key: None if row is None else row.to(x.device, x.dtype).expand(x.shape[0], *row.shape[1:])
                for key, row in self.added_cond.items()
            }
        pred = self.transformer(hidden_states=x, timestep=t, return_dict=False, **kwargs)[0]
        return eps_part(pred, self.eps)

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info["prompts"] = int(self.num_classes)
        info["embedding_shape"] = list(self.tables["encoder_hidden_states"].shape[1:])
        info["inputs"] = sorted(self.tables)
        info["batch_order"] = self.batch_order
        if self.eps is not None:
            info["eps_channels"] = int(self.eps)
        return info
