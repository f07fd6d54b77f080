"""Adapter for diffusers ``UNet2DModel`` with a class embedding (null label = last embedding row)."""

from __future__ import annotations

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.denoisers.channels import checked_eps_channels, eps_part
from guidegap.errors import AdapterError

__all__ = ["UNet2DDenoiser"]


def _square(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


class UNet2DDenoiser(Denoiser):
    """A class-conditional ``UNet2DModel``: ``num_class_embeds = num_classes + 1``, null = ``num_classes``.

    Learned-sigma UNets (``out_channels == 2 * in_channels``) are reduced to their eps channels.
    """

    def __init__(self, model: torch.nn.Module, *, num_classes: int | None = None, name: str = "UNet2DModel") -> None:
        config = model.config
        embeds = config.get("num_class_embeds")
        if config.get("class_embed_type") not in (None, "embedding") or embeds is None:
            raise AdapterError(
                f"{name} has no class-label embedding (num_class_embeds={embeds}, "
                f"class_embed_type={config.get('class_embed_type')!r}), so it cannot do classifier-free guidance; "
                "train it with num_class_embeds = num_classes + 1 (the last row is the null label)."
            )
        if num_classes is None:
            num_classes = int(embeds) - 1
        if num_classes + 1 != int(embeds):
            raise AdapterError(
                f"{name}: expected num_class_embeds = num_classes + 1 = {num_classes + 1}, received {embeds}; "
                "guidegap uses the last embedding row as the null label."
            )
        self.in_channels = int(config["in_channels"])
        self.eps = checked_eps_channels(config, name)
        super().__init__(
            num_classes=num_classes,
            null_label=num_classes,
            sample_shape=(self.in_channels, *_square(config["sample_size"])),
            module=model,
            name=name,
        )
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return eps_part(self.model(x, t, class_labels=labels, return_dict=False)[0], self.eps)
