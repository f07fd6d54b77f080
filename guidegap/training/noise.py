"""The forward (noising) process of training; the noise schedules themselves are :mod:`guidegap.recording.noise_schedules`.

Their names stay importable from here (``SCHEDULES``, ``dash_cosine_betas``, ``noise_scheduler``, ``schedule_name``).
"""

from __future__ import annotations

import torch

from guidegap.recording.noise_schedules import SCHEDULES, dash_cosine_betas, noise_scheduler, schedule_name

__all__ = ["SCHEDULES", "dash_cosine_betas", "noise_scheduler", "schedule_name", "add_noise"]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (VP forward process)."""
    abar = alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
