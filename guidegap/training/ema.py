"""Exponential moving average of model weights (with the usual warm-up, min(decay, (1 + n) / (10 + n)))."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps a shadow copy of a model; ``update`` after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, param in zip(self.model.parameters(), model.parameters()):
            shadow.lerp_(param.detach(), 1 - decay)
        for shadow, buffer in zip(self.model.buffers(), model.buffers()):
            shadow.copy_(buffer)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.model.load_state_dict(state)
        self.updates = int(updates)
