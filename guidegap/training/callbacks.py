"""Loop hooks: a periodic light audit of the EMA student (rho / cos / verdict logged with the step).

:class:`LightAudit` is a :class:`guidegap.monitoring.GuidanceMonitor` on the training noise schedule that, by
default, neither raises nor writes a zarr log (pass ``store=`` / ``raise_on=`` to get either): one implementation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from guidegap._deprecation import renamed_keywords
from guidegap.monitoring.monitor import GuidanceMonitor

__all__ = ["LightAudit"]


class LightAudit(GuidanceMonitor):
    """A small, seeded audit of the student against the teacher; cheap enough to run every few hundred steps.

    ``teacher`` is a model, a checkpoint path, or ``"oracle"``; sampling uses DDIM on the training noise schedule
    (``schedule`` with ``num_train_timesteps`` steps, as the student's ``TrainConfig``). ``data``: a data-probe check
    instead (:class:`~guidegap.monitoring.GuidanceMonitor`'s ``data``; ``"auto"``: the teacher's declared held-out split).
    """

    @renamed_keywords(num_steps="sampling_steps")
    def __init__(self, teacher: Any, *, num_samples: int | None = None,
                 sampling_steps: int | None = None, guidance_scale: float = 4.0,
                 seed: int = 0, schedule: str = "linear", store: str | os.PathLike[str] | None = None,
                 raise_on: str | Iterable[str] | None = None, num_train_timesteps: int = 1000, data: Any = None) -> None:
        from guidegap.recording.schedulers import make_scheduler
        from guidegap.recording.noise_schedules import noise_scheduler

        super().__init__(teacher, store=store, raise_on=raise_on, num_samples=num_samples, sampling_steps=sampling_steps,
                         guidance_scale=guidance_scale, seed=seed, data=data,
                         scheduler=make_scheduler("ddim", base=_ddim_on(noise_scheduler(schedule, num_train_timesteps))))


def _ddim_on(training: Any) -> Any:
    from diffusers import DDIMScheduler

    from guidegap.recording.schedulers import scheduler_from_config

    return scheduler_from_config(DDIMScheduler, training.config, clip_sample=False)
