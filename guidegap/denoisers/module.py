"""Adapter for a plain ``torch.nn.Module`` or callable with ``forward(x, t, y)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from guidegap.denoisers.base import Denoiser
from guidegap.errors import AdapterError

__all__ = ["ModuleDenoiser"]


class ModuleDenoiser(Denoiser):
    """Wrap ``fn(x, t, y) -> pred``; the number of classes is given or read from ``fn.num_classes``.

    Example:
        >>> import torch
        >>> from guidegap.denoisers import ModuleDenoiser
        >>> net = lambda x, t, y: x * 0 + y.view(-1, 1, 1, 1).float()
        >>> d = ModuleDenoiser(net, num_classes=3, sample_shape=(1, 2, 2))
        >>> cond, uncond = d.branches(torch.zeros(2, 1, 2, 2), 10, torch.tensor([0, 2]))
        >>> cond.flatten(1)[:, 0].tolist(), uncond.flatten(1)[:, 0].tolist()
        ([0.0, 2.0], [3.0, 3.0])
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        num_classes: int | None = None,
        null_label: int | None = None,
        sample_shape: tuple[int, ...] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise AdapterError(f"expected a torch.nn.Module or callable forward(x, t, y), received {type(fn).__name__}.")
        label = name or type(fn).__name__
        if num_classes is None:
            num_classes = getattr(fn, "num_classes", None)
        if num_classes is None:
            raise AdapterError(
                f"{label}: the number of classes is unknown; pass num_classes=... (and null_label=... if the "
                "unconditional label is not num_classes) or give the module a num_classes attribute."
            )
        if null_label is None:
            null_label = getattr(fn, "null_label", None)
        if sample_shape is None:
            sample_shape = getattr(fn, "sample_shape", None)
        super().__init__(
            num_classes=int(num_classes),
            null_label=int(num_classes if null_label is None else null_label),
            sample_shape=sample_shape,
            module=fn if isinstance(fn, nn.Module) else None,
            name=label,
        )
        self.fn = fn

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pred = self.fn(x, t, labels)
        if not isinstance(pred, torch.Tensor):
            pred = getattr(pred, "sample", pred[0] if isinstance(pred, (tuple, list)) else pred)
        if not isinstance(pred, torch.Tensor) or pred.shape != x.shape:
            got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise AdapterError(
                f"{self.name}: expected a prediction of the input's shape {tuple(x.shape)}, received {got}; "
                "return the eps (or v) prediction as a tensor shaped like x."
            )
        return pred
