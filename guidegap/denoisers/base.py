"""The one denoiser contract every other part of guidegap relies on.

A class-conditional denoiser maps ``(x_t, t, labels) -> pred`` (an eps prediction, or whatever the
scheduler's ``prediction_type`` says), where ``labels == null_label`` asks for the unconditional branch.
Samplers, recorders and metrics only ever see this contract; adapters in this folder turn model families
into it (k-diffusion's ``external.py`` pattern).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from guidegap.errors import AdapterError

__all__ = ["Denoiser", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Elements of every parameter of ``module``."""
    return int(sum(p.numel() for p in module.parameters()))


class Denoiser:
    """A class-conditional denoiser with a null label, usable for classifier-free guidance.

    Subclasses implement :meth:`forward`. ``num_classes`` real classes are ``0 .. num_classes - 1``;
    ``null_label`` (usually ``num_classes``) selects the unconditional branch.

    Attributes:
        num_classes: number of real classes.
        null_label: the label id of the unconditional branch.
        sample_shape: shape of one sample ``(C, H, W)``, or ``None`` when the model does not declare it.
        name: short description used in messages and Dataset attrs.
        batch_order: how :meth:`branches` batches the two branches: ``"cond-first"`` (guidegap's convention),
            ``"uncond-first"`` (StableDiffusion pipelines) or ``"separate"`` calls (see ``guidegap.recording.layouts``).
        scheduler_config: the noise schedule stored with the model's weights (a diffusers scheduler config), set for
            models read from disk; recordings build their sampler on it. ``None``: none known.
    """

    batch_order: str = "cond-first"
    scheduler_config: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        num_classes: int,
        null_label: int,
        sample_shape: tuple[int, ...] | None,
        module: nn.Module | None = None,
        name: str = "denoiser",
    ) -> None:
        if num_classes < 1:
            raise AdapterError(f"{name}: expected num_classes >= 1, received {num_classes}; declare the number of real classes.")
        if 0 <= null_label < num_classes:
            raise AdapterError(
                f"{name}: the null label {null_label} is one of the {num_classes} real classes; "
                f"use a label outside 0..{num_classes - 1} (guidegap's convention is null_label = num_classes)."
            )
        self.num_classes = int(num_classes)
        self.null_label = int(null_label)
        self.sample_shape = tuple(int(s) for s in sample_shape) if sample_shape is not None else None
        self.module = module
        self.name = name

    # -- the contract -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the prediction for a batch; ``t`` and ``labels`` have shape ``(B,)``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, t: torch.Tensor | float | int, labels: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        labels = torch.as_tensor(labels, device=x.device, dtype=torch.long)
        if labels.ndim == 0:
            labels = labels.expand(batch)
        return self.forward(x, t, labels)

    def branches(
        self, x: torch.Tensor, t: torch.Tensor | float | int, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(pred_cond, pred_uncond)``: one batch of ``2B`` in :attr:`batch_order`, as pipelines do, or
        two calls of ``B`` for ``"separate"``."""
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(batch) if t.ndim == 0 else t
        labels = torch.as_tensor(labels, device=x.device, dtype=torch.long).expand(batch)
        null = torch.full_like(labels, self.null_label)
        if self.batch_order == "separate":
            return self(x, t, labels), self(x, t, null)
        if self.batch_order == "uncond-first":
            pred_uncond, pred_cond = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, labels])).chunk(2)
            return pred_cond, pred_uncond
        pred_cond, pred_uncond = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
        return pred_cond, pred_uncond

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if self.module is not None:
            for tensor in self.module.parameters():
                return tensor.device
            for tensor in self.module.buffers():
                return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        if self.module is not None:
            for tensor in self.module.parameters():
                return tensor.dtype
        return torch.float32

    @contextlib.contextmanager
    def evaluating(self) -> Iterator["Denoiser"]:
        """Put the wrapped module in eval mode for the duration and restore each submodule's mode after."""
        if self.module is None:
            yield self
            return
        modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        try:
            yield self
        finally:
            for module, training in modes:
                module.training = training

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raise when a requested label is not a real class (the null label is not a valid request)."""
        bad = (labels < 0) | (labels >= self.num_classes)
        if bool(bad.any()):
            raise AdapterError(
                f"{self.name}: expected labels in 0..{self.num_classes - 1}, received {labels[bad][0].item()}; "
                "pass real class ids (the null label is added by guidegap)."
            )

    def describe(self) -> dict[str, object]:
        """A JSON-safe description of the denoiser for Dataset attrs."""
        info: dict[str, object] = {
            "name": self.name,
            "num_classes": self.num_classes,
            "null_label": self.null_label,
            "sample_shape": list(self.sample_shape) if self.sample_shape is not None else None,
        }
        if self.module is not None:
            info["num_parameters"] = count_parameters(self.module)
        return info

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes}, "
            f"null_label={self.null_label}, sample_shape={self.sample_shape})"
        )
