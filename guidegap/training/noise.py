"""Training noise schedules (VP, T = 1000): DDPM linear or cosine (Nichol & Dhariwal 2021)."""

from __future__ import annotations

from typing import Any

import torch

from guidegap.errors import InputError

__all__ = ["SCHEDULES", "noise_scheduler", "add_noise"]

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def noise_scheduler(schedule: str = "linear", num_train_timesteps: int = 1000) -> Any:
    """A ``DDPMScheduler`` holding the training schedule; it is stored in checkpoints and audits sample with it."""
    from diffusers import DDPMScheduler

    if schedule not in SCHEDULES:
        raise InputError(f"expected a noise schedule in {sorted(SCHEDULES)}, received {schedule!r}.")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=SCHEDULES[schedule], clip_sample=False)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (VP forward process)."""
    abar = alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
