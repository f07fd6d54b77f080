"""The training noise schedules (VP, T = 1000): DDPM linear, diffusers' cosine, and DASH's exact cosine.

``dash-cosine`` is the cosine schedule of Nichol & Dhariwal (2021, Eq. 17) as DASH trains on it:
``abar(t) = f(t) / f(0)``, ``f(t) = cos^2(pi/2 (t/T + s) / (1 + s))``, ``s = 0.008``, and
``beta_t = 1 - abar(t+1) / abar(t)`` clipped to ``[1e-4, 0.9999]`` (DASH's ``diffusion/schedule.py``).
diffusers' ``squaredcos_cap_v2`` is the same curve with betas capped at 0.999 and not floored, so its
alpha-bar differs (by up to 4e-4 relative, 10x at t = 999); ``cosine`` keeps that one for old runs.
The schedule reaches diffusers as a ``DDPMScheduler`` with ``trained_betas``, so checkpoints store it
and every audit samples on exactly the schedule the model was trained on.
"""

from __future__ import annotations

import math
from typing import Any

from guidegap.errors import InputError

__all__ = ["SCHEDULES", "dash_cosine_betas", "noise_scheduler", "schedule_name"]

SCHEDULES = ("linear", "cosine", "dash-cosine")  # the training noise schedules guidegap builds

_DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def dash_cosine_betas(num_train_timesteps: int = 1000, s: float = 0.008,
                      beta_min: float = 1e-4, beta_max: float = 0.9999) -> list[float]:
    """Betas of the Nichol & Dhariwal cosine schedule clipped to ``[beta_min, beta_max]`` (DASH), in float64."""
    import torch

    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64)
    f = torch.cos((steps / num_train_timesteps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(beta_min, beta_max).tolist()


def noise_scheduler(schedule: str = "linear", num_train_timesteps: int = 1000) -> Any:
    """A ``DDPMScheduler`` holding the training schedule; it is stored in checkpoints and audits sample with it."""
    from diffusers import DDPMScheduler

    if schedule not in SCHEDULES:
        raise InputError(f"expected a noise schedule in {list(SCHEDULES)}, received {schedule!r}.")
    if schedule == "dash-cosine":
        return DDPMScheduler(num_train_timesteps=num_train_timesteps, trained_betas=dash_cosine_betas(num_train_timesteps),
                             clip_sample=False)
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=_DIFFUSERS_NAMES[schedule], clip_sample=False)


def schedule_name(scheduler_config: dict[str, Any] | None) -> str | None:
    """The name in :data:`SCHEDULES` of a stored scheduler config's noise schedule, or ``None`` if it is none of them."""
    import torch

    if not scheduler_config:
        return None
    config = dict(scheduler_config)
    steps = int(config.get("num_train_timesteps", 1000))
    betas = config.get("trained_betas")
    if betas is not None:
        reference = torch.tensor(dash_cosine_betas(steps), dtype=torch.float64)
        given = torch.as_tensor(betas, dtype=torch.float64)
        return "dash-cosine" if given.shape == reference.shape and torch.allclose(given, reference, rtol=1e-6, atol=0) else None
    by_diffusers_name = {v: k for k, v in _DIFFUSERS_NAMES.items()}
    defaults = config.get("beta_start", 1e-4) == 1e-4 and config.get("beta_end", 0.02) == 0.02
    name = by_diffusers_name.get(config.get("beta_schedule", "linear"))
    return name if name != "linear" or defaults else None
