"""Diffusers schedulers as guidegap uses them: a default, names for common ones, fresh per-run copies.

Any scheduler with the standard ``set_timesteps`` / ``scale_model_input`` / ``step`` contract works; flow-matching
schedulers (``FlowMatchEulerDiscreteScheduler``), which have no ``scale_model_input`` or ``init_noise_sigma``, take
the state unscaled from unit noise, as their pipelines (SD3) do.
Each chunk of samples and each free-running model gets its own deep copy, because multistep schedulers
keep history and a step counter.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

import torch

from guidegap.errors import InputError

__all__ = ["SCHEDULER_NAMES", "default_scheduler", "make_scheduler", "fresh_copy", "SchedulerStepper", "scheduler_from_config",
           "scheduler_class", "on_stored_schedule", "check_same_schedule", "sampler_for", "MAX_TRAIN_TIMESTEPS"]

SCHEDULER_NAMES: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
}


def default_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "linear") -> Any:
    """DDIM (eta = 0) on the DDPM linear schedule, without x0 clipping so that errors are not hidden."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, clip_sample=False)


def scheduler_class(name: str, source: str, *, fallback: bool = False) -> type:
    """The diffusers scheduler class called ``name``; any other class (a pipeline, a model) is refused.

    The name is checked before diffusers imports anything for it. ``fallback``: an unknown scheduler name (say,
    from a newer diffusers) gives DDIM, which the noise schedule values build just as well.
    """
    import diffusers

    cls = None
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*Scheduler", name) and not name.startswith("Flax"):
        try:
            cls = getattr(diffusers, name, None)
        except Exception:  # a lazily imported module that fails to import
            cls = None
    if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin) and cls is not diffusers.SchedulerMixin:
        return cls
    if fallback and (cls is None and re.fullmatch(r"[A-Za-z0-9]*Scheduler", name)):
        return diffusers.DDIMScheduler
    raise InputError(f"{source} names {name!r}, which is not a diffusers scheduler class; expected a name from "
                     f"{sorted(SCHEDULER_NAMES)} or a diffusers class such as 'DDIMScheduler'.")


def scheduler_from_config(cls: type, config: Any, **overrides: Any) -> Any:
    """``cls.from_config(config, **overrides)`` without its cost: diffusers' ``from_config`` imports every
    compatible scheduler module to list their config keys (~2 s, a third of an audit's fixed start-up time);
    keeping the keys ``cls.__init__`` takes gives the same scheduler."""
    accepted = inspect.signature(cls.__init__).parameters
    # like diffusers, keys the source scheduler only had by default are left to the new class's own defaults
    defaulted = set(dict(config).get("_use_default_values", ()))
    values = {k: v for k, v in dict(config).items() if k not in defaulted}
    return cls(**{k: v for k, v in {**values, **overrides}.items() if k in accepted and not k.startswith("_")})


def make_scheduler(spec: Any = None, *, base: Any = None) -> Any:
    """A scheduler from an instance (used as is), a short name (``"ddim"``, ``"dpm++"``, ...) or ``None``.

    Names build the scheduler from ``base.config`` (default: :func:`default_scheduler`), so the noise
    schedule stays that of the model.
    """
    if spec is not None and not isinstance(spec, str):
        for method in ("set_timesteps", "step"):
            if not callable(getattr(spec, method, None)):
                raise InputError(
                    f"expected a diffusers scheduler with set_timesteps/step, received "
                    f"{type(spec).__name__} without {method}(); pass e.g. diffusers.DDIMScheduler(...) or a name "
                    f"from {sorted(SCHEDULER_NAMES)}."
                )
        return spec
    base = base if base is not None else default_scheduler()
    if spec is None:
        return base
    cls = scheduler_class(SCHEDULER_NAMES.get(spec.lower(), spec), "the scheduler")
    return scheduler_from_config(cls, base.config)


MAX_TRAIN_TIMESTEPS = 100_000  # a stored schedule longer than this is no real model's (every array has this length)


def on_stored_schedule(config: dict[str, Any] | None, name: str | None = None) -> Any:
    """The sampler ``name`` (default DDIM) built on a stored noise schedule (a scheduler config, as checkpoints and
    diffusers folders keep it; x0 clipping off), else on :func:`default_scheduler`.

    The config may name diffusers scheduler classes only (a pipeline or model class there is refused), and at most
    ``MAX_TRAIN_TIMESTEPS`` training steps (checked before any array is built).
    """
    if not config:
        return make_scheduler(name or "ddim", base=default_scheduler())
    from diffusers import DDIMScheduler

    if not isinstance(config, dict):
        raise InputError(f"expected the stored scheduler config to be a JSON object, received {type(config).__name__}; "
                         "re-save the scheduler with save_pretrained.")
    length = config.get("num_train_timesteps", 1000)
    betas = config.get("trained_betas")
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not 1 <= length <= MAX_TRAIN_TIMESTEPS \
            or (betas is not None and (not isinstance(betas, (list, tuple)) or len(betas) > MAX_TRAIN_TIMESTEPS)):
        raise InputError(f"expected a stored schedule of 1 to {MAX_TRAIN_TIMESTEPS:,} training steps, received "
                         f"num_train_timesteps={length!r}{'' if betas is None else ' and trained_betas'}; re-save the scheduler.")
    cls = scheduler_class(str(config.get("_class_name", "DDIMScheduler")), "the stored scheduler config", fallback=True)
    try:
        stored = scheduler_from_config(cls, config)
        base = scheduler_from_config(DDIMScheduler, stored.config, clip_sample=False)
        return make_scheduler(name or "ddim", base=base)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"the stored scheduler config cannot be used ({type(error).__name__}: {error}); re-save the "
                         "scheduler with save_pretrained.") from None


def check_same_schedule(student: dict[str, Any] | None, teacher: dict[str, Any] | None) -> None:
    """Refuse a student and teacher whose stored noise schedules differ (the audit would compare other noise levels)."""
    if not student or not teacher:
        return
    a, b = on_stored_schedule(student), on_stored_schedule(teacher)
    if a.alphas_cumprod.shape == b.alphas_cumprod.shape and torch.allclose(a.alphas_cumprod, b.alphas_cumprod, rtol=1e-4, atol=1e-6) \
            and a.config.get("prediction_type") == b.config.get("prediction_type"):
        return

    def describe(s: Any) -> str:
        c = s.config
        return (f"{c.get('beta_schedule')} betas {c.get('beta_start')}-{c.get('beta_end')}, T={c.get('num_train_timesteps')}, "
                f"{c.get('prediction_type')}")

    raise InputError(f"the student and the teacher store different noise schedules (student: {describe(a)}; teacher: "
                     f"{describe(b)}), so one of them would be evaluated at noise levels it was not trained for; audit the "
                     "student against the teacher it was distilled from, or re-save one with the other's scheduler config.")


def sampler_for(spec: Any, stored: list[dict[str, Any] | None]) -> Any:
    """The sampler of a recording: a scheduler instance as it is; else ``spec`` (a name, default DDIM) built on the
    noise schedule the models store (``stored``: one config or ``None`` per model; two different ones are refused by
    :func:`check_same_schedule`), or on :func:`default_scheduler` when none stores one."""
    known = [config for config in stored if config]
    for other in known[1:]:
        check_same_schedule(known[0], other)
    if (spec is not None and not isinstance(spec, str)) or not known:
        return make_scheduler(spec)
    return on_stored_schedule(known[0], spec)


def with_x0_clamp(scheduler: Any, clip_range: float = 1.0) -> Any:
    """The same scheduler with the x0 estimate clamped to ``[-clip_range, clip_range]`` at every step.

    DASH's DDIM evaluation clamps x0 (``clip_sample`` in diffusers' DDIM / DDPM); guidegap's audits do not, so
    that errors are not hidden. Offered for FD / fidelity samples that are compared with the paper's.
    """
    if "clip_sample" not in scheduler.config:
        raise InputError(f"{type(scheduler).__name__} has no x0 clamp (clip_sample); use DDIM or DDPM for clamped sampling.")
    return scheduler_from_config(type(scheduler), scheduler.config, clip_sample=True, clip_sample_range=float(clip_range))


def fresh_copy(scheduler: Any, num_steps: int, device: torch.device | str = "cpu") -> Any:
    """A deep copy with ``set_timesteps(num_steps)`` applied, so runs never share scheduler state."""
    fresh = copy.deepcopy(scheduler)
    fresh.set_timesteps(num_steps, device=device)
    return fresh


class SchedulerStepper:
    """One run's scheduler: scales model inputs and steps with per-sample generators where it accepts them."""

    def __init__(self, scheduler: Any, num_steps: int, device: torch.device | str = "cpu") -> None:
        self.scheduler = fresh_copy(scheduler, num_steps, device)
        self.timesteps = self.scheduler.timesteps
        self._takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters

    @property
    def init_noise_sigma(self) -> float:
        return float(getattr(self.scheduler, "init_noise_sigma", 1.0))

    def scale(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        scale_model_input = getattr(self.scheduler, "scale_model_input", None)
        return sample if scale_model_input is None else scale_model_input(sample, timestep)

    def step(
        self, pred: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, generators: list[torch.Generator]
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"return_dict": False}
        if self._takes_generator:
            kwargs["generator"] = generators
        return self.scheduler.step(pred, timestep, sample, **kwargs)[0]


def num_train_timesteps(scheduler: Any) -> int:
    return int(scheduler.config.num_train_timesteps)


def prediction_type(scheduler: Any) -> str:
    """The config's ``prediction_type``; ``"flow_prediction"`` (a velocity) for flow-matching schedulers, which declare none."""
    default = "flow_prediction" if type(scheduler).__name__.startswith("FlowMatch") else "epsilon"
    return str(scheduler.config.get("prediction_type", None) or default)
