"""A small class-conditional MLP eps-model, the oracle tier's student (Gaussian-mixture data, seconds on CPU)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from guidegap.errors import InputError

__all__ = ["MLPDenoiser", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos(t f), sin(t f)]`` with ``f = max_period^(-k / (dim/2))`` (DDPM / ADM), ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class MLPDenoiser(nn.Module):
    """Small class-conditional MLP eps-model for the oracle tier: x flattened, sinusoidal t embedding, nn.Embedding(num_classes + 1) labels (null = last row).

    ``h = in(x) + c`` with ``c = time_mlp(emb(t)) + label_embedding(y)``, then ``depth`` residual blocks
    ``h += Linear(SiLU(h + c))`` and ``out(SiLU(h))``. Works with :func:`guidegap.as_denoiser` through its
    ``num_classes`` / ``null_label`` / ``sample_shape`` attributes.
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...] = (1, 4, 4),
        num_classes: int = 4,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 64,
        sigma_data: float | None = None,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in sample_shape)
        sizes = dict(num_classes=num_classes, hidden=hidden, depth=depth, time_dim=time_dim)
        if not shape or any(s < 1 for s in shape) or any(isinstance(v, bool) or int(v) < 1 for v in sizes.values()):
            raise InputError(
                f"MLPDenoiser: expected positive sample_shape and sizes, received sample_shape={sample_shape}, {sizes}."
            )
        if int(time_dim) % 2:
            raise InputError(f"MLPDenoiser: expected an even time_dim (cos and sin halves), received {time_dim}.")
        self.sample_shape = shape
        self.num_classes, self.hidden, self.depth, self.time_dim = (int(v) for v in sizes.values())
        self.null_label = self.num_classes
        dim = math.prod(shape)
        self.input = nn.Linear(dim, self.hidden)
        self.time_mlp = nn.Sequential(nn.Linear(self.time_dim, self.hidden), nn.SiLU(), nn.Linear(self.hidden, self.hidden))
        self.label_embedding = nn.Embedding(self.num_classes + 1, self.hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(self.hidden, self.hidden)) for _ in range(self.depth))
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(self.hidden, dim))
        # Optional EDM-style preconditioning (Karras et al. 2022, Table 1) written for VP eps-prediction:
        # eps = c_skip(t) x_t + c_out(t) F(c_in(t) x_t), with c_skip, c_out the Gaussian-data optimum for
        # data std sigma_data. At high noise c_out -> 0, so the network's errors shrink with the target.
        self.sigma_data, self.schedule, self.num_train_timesteps = sigma_data, schedule, int(num_train_timesteps)
        if sigma_data is not None:
            from guidegap.recording.noise_schedules import noise_scheduler

            abar = noise_scheduler(schedule, self.num_train_timesteps).alphas_cumprod.double()
            var = abar * float(sigma_data) ** 2 + (1 - abar)
            self.register_buffer("c_in", (1 / var.sqrt()).float(), persistent=False)
            self.register_buffer("c_skip", ((1 - abar).sqrt() / var).float(), persistent=False)
            self.register_buffer("c_out", (abar * float(sigma_data) ** 2 / var).sqrt().float(), persistent=False)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-safe (checkpoints store them as JSON)."""
        return {
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "depth": self.depth,
            "time_dim": self.time_dim,
            "sigma_data": self.sigma_data,
            "schedule": self.schedule,
            "num_train_timesteps": self.num_train_timesteps,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MLPDenoiser":
        """Build an (untrained) model from :attr:`config`; load the state dict separately."""
        valid = ("sample_shape", "num_classes", "hidden", "depth", "time_dim", "sigma_data", "schedule", "num_train_timesteps")
        unknown = sorted(set(config) - set(valid))
        if unknown:
            raise InputError(f"MLPDenoiser.from_config: unknown keys {unknown}; valid keys are {list(valid)}.")
        options = dict(config)
        if "sample_shape" in options:
            options["sample_shape"] = tuple(options["sample_shape"])
        return cls(**options)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """eps prediction shaped like ``x`` ``(B, *sample_shape)``; ``t`` and ``y`` of shape ``(B,)``."""
        batch = x.shape[0]
        if tuple(x.shape[1:]) != self.sample_shape:
            raise InputError(f"MLPDenoiser: expected x of shape (B, {', '.join(map(str, self.sample_shape))}), received {tuple(x.shape)}.")
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(batch) if t.ndim == 0 else t
        y = torch.as_tensor(y, device=x.device, dtype=torch.long)
        y = y.expand(batch) if y.ndim == 0 else y
        c = self.time_mlp(timestep_embedding(t, self.time_dim).to(x.dtype)) + self.label_embedding(y)
        if self.sigma_data is None:
            return self._body(x, c).reshape(x.shape)
        index = t.round().long().clamp(0, self.num_train_timesteps - 1)
        scale = [-1] + [1] * (x.ndim - 1)
        c_in, c_skip, c_out = (v[index].to(x.dtype).view(scale) for v in (self.c_in, self.c_skip, self.c_out))
        return c_skip * x + c_out * self._body(c_in * x, c).reshape(x.shape)

    def _body(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.input(x.flatten(1)) + c
        for block in self.blocks:
            h = h + block(h + c)
        return self.output(h)
