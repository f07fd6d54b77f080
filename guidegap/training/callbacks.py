"""Loop hooks: a periodic light audit of the EMA student (rho / cos / verdict logged with the step)."""

from __future__ import annotations

from typing import Any

from guidegap.denoisers import Denoiser

__all__ = ["LightAudit"]


class LightAudit:
    """A small, seeded audit of the student against the teacher; cheap enough to run every few hundred steps.

    ``teacher`` is a model, a checkpoint path, or ``"oracle"``; sampling uses the training noise schedule.
    """

    def __init__(self, teacher: Any, *, num_samples: int = 16, num_steps: int = 10, guidance_scale: float = 4.0,
                 seed: int = 0, schedule: str = "linear") -> None:
        from guidegap.recording.schedulers import make_scheduler
        from guidegap.training.loop import load_teacher
        from guidegap.training.noise import noise_scheduler

        training = noise_scheduler(schedule)
        self.scheduler = make_scheduler("ddim", base=_ddim_on(training))
        self.teacher = load_teacher(teacher, training.alphas_cumprod)[0]
        self.options = {"num_samples": num_samples, "num_steps": num_steps, "guidance_scale": guidance_scale, "seed": seed}

    def __call__(self, step: int, student: Denoiser) -> dict[str, Any]:
        from guidegap.auditing.api import audit

        report = audit(student, self.teacher, scheduler=self.scheduler, n_boot=200, **self.options)
        return {"audit_verdict": report.verdict, "audit_rho": report.summary["rho"].value,
                "audit_cos": report.summary["cos_delta"].value}


def _ddim_on(training: Any) -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(training.config, clip_sample=False)
