"""Adapter for diffusers ``DiTTransformer2DModel`` (null label = ``num_embeds_ada_norm``, eps channels only)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.denoisers.channels import checked_eps_channels, eps_part
from guidegap.errors import AdapterError

__all__ = ["DiTDenoiser"]


class DiTDenoiser(Denoiser):
    """A class-conditional DiT. Label dropout is disabled during calls: guidegap chooses the null label itself.

    DiT's ``LabelEmbedding`` drops labels at random in ``train()`` mode; this adapter turns that off for the
    duration of each call (other layers keep their mode, so the adapter can also be used for training).
    """

    def __init__(self, model: torch.nn.Module, *, name: str = "DiTTransformer2DModel") -> None:
        from diffusers.models.embeddings import LabelEmbedding

        config = model.config
        num_classes = config.get("num_embeds_ada_norm")
        if num_classes is None:
            raise AdapterError(f"{name}: config.num_embeds_ada_norm is None, so the model has no class labels to guide.")
        self._label_embedders = [m for m in model.modules() if isinstance(m, LabelEmbedding)]
        if not self._label_embedders or any(m.embedding_table.num_embeddings <= num_classes for m in self._label_embedders):
            raise AdapterError(
                f"{name}: expected label embeddings with a null row (num_embeds_ada_norm + 1 = {num_classes + 1} rows), "
                "received none; the model was built without class dropout and cannot do classifier-free guidance."
            )
        self.in_channels = int(config["in_channels"])
        self.eps = checked_eps_channels(config, name)
        size = int(config["sample_size"])
        super().__init__(
            num_classes=int(num_classes),
            null_label=int(num_classes),
            sample_shape=(self.in_channels, size, size),
            module=model,
            name=name,
        )
        self.model = model

    @contextlib.contextmanager
    def _labels_as_given(self) -> Iterator[None]:
        modes = [m.training for m in self._label_embedders]
        for m in self._label_embedders:
            m.training = False
        try:
            yield
        finally:
            for m, mode in zip(self._label_embedders, modes):
                m.training = mode

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._labels_as_given():
            pred = self.model(x, timestep=t, class_labels=labels, return_dict=False)[0]
        return eps_part(pred, self.eps)
