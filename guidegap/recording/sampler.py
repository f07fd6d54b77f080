"""The one guided sampler loop: each path steps on ``eps_u + w (eps_c - eps_u)`` (CFG, Ho & Salimans 2022).

:func:`run_paths` runs one chunk of samples along one or more paths (one per model that follows its own
trajectory); at every step a callback gives each path's two branches at its state, and whatever it records besides
(:func:`guidegap.trace`'s metrics) is its own business. :func:`sample` draws final images with it (guidance
fidelity, Fréchet distance, grids). Sample ``i`` starts from the same initial noise as trajectory ``i`` of
:func:`guidegap.trace` with the same ``seed``, whatever the chunking, so two models (or two guidance scales)
sampled with one seed differ only through the model (or ``w``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from guidegap.denoisers import DenoiserLike, as_denoiser
from guidegap.errors import InputError
from guidegap.metrics import guided
from guidegap.recording import schedulers as sched
from guidegap.recording.guidance import GuidanceLike, as_guidance, scales_for_steps
from guidegap.recording.seeding import INITIAL_NOISE, SCHEDULER_NOISE, sample_generators, sample_noise

__all__ = ["SamplingPath", "start_path", "run_paths", "sample"]

Branches = tuple[torch.Tensor, torch.Tensor]
# (step, timestep, every path's state) -> every path's (cond, uncond) at its state
BranchesAt = Callable[[int, torch.Tensor, list[torch.Tensor]], list[Branches]]


@dataclass
class SamplingPath:
    """One chunk's trajectory: its own scheduler (multistep schedulers keep history), state and per-sample generators."""

    stepper: sched.SchedulerStepper
    state: torch.Tensor
    generators: list[torch.Generator]


def start_path(scheduler: Any, num_steps: int, noise: torch.Tensor, seed: int, rows: range,
               device: torch.device | str) -> SamplingPath:
    """A path from ``noise`` (scaled to the scheduler's initial sigma); every model of a comparison draws the same
    per-sample scheduler noise, so stochastic schedulers stay paired."""
    stepper = sched.SchedulerStepper(scheduler, num_steps, device)
    return SamplingPath(stepper, noise * stepper.init_noise_sigma, sample_generators(seed, rows, SCHEDULER_NOISE))


def run_paths(paths: list[SamplingPath], scales: np.ndarray, branches_at: BranchesAt,
              after_step: Callable[[int, list[torch.Tensor]], None] | None = None) -> None:
    """Step every path through the first path's timesteps: ``branches_at`` gives the branches at the states, each path
    steps on its guided prediction at ``w = scales[step]``, then ``after_step(step, new states)`` runs."""
    for step, t in enumerate(paths[0].stepper.timesteps):
        w = float(scales[step])
        predictions = branches_at(step, t, [path.state for path in paths])
        for path, (cond, uncond) in zip(paths, predictions):
            path.state = path.stepper.step(guided(cond, uncond, w), t, path.state, path.generators)
        if after_step is not None:
            after_step(step, [path.state for path in paths])


@torch.inference_mode()
def sample(
    model: DenoiserLike,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    guidance_scale: GuidanceLike = 1.0,
    num_steps: int = 50,
    scheduler: Any = None,
    seed: int = 0,
    chunk_size: int = 128,
    clip: bool = True,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Draw one guided sample per label: ``eps = eps_u + w (eps_c - eps_u)`` at every step (CFG, Ho & Salimans 2022).

    Args:
        model: anything :func:`guidegap.as_denoiser` accepts (a :func:`guidegap.load_model` result too).
        labels: requested class of each sample.
        guidance_scale: ``w`` (1 = no guidance): a number, ``"tag"`` (DASH), a per-step list or ``fn(t, T)``.
        num_steps, scheduler: sampler settings (default 50-step DDIM on the model's stored noise schedule, as the audit).
        seed: every random draw derives from it per sample.
        chunk_size: samples per forward batch (the model sees ``2 * chunk_size`` rows).
        clip: clamp the final images to [-1, 1].
        clip_x0: clamp the x0 estimate to [-1, 1] at every step (DASH's DDIM evaluation; DDIM / DDPM only).

    Returns:
        Float32 CPU tensor ``(N, *sample_shape)``.
    """
    denoiser = as_denoiser(model)
    labels = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    if len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= denoiser.num_classes:
        raise InputError(f"expected a non-empty list of labels in [0, {denoiser.num_classes - 1}], received "
                         f"{labels.tolist()[:8]}{'...' if len(labels) > 8 else ''}.")
    for name, value in (("num_steps", num_steps), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"expected {name} to be an integer >= 1, received {value!r}.")
    if denoiser.sample_shape is None:
        raise InputError("the model does not declare its sample shape; wrap it with as_denoiser(..., sample_shape=(C, H, W)).")
    scheduler = sched.sampler_for(scheduler, [denoiser.scheduler_config])
    if clip_x0:
        scheduler = sched.with_x0_clamp(scheduler)
    timesteps = sched.fresh_copy(scheduler, num_steps).timesteps
    scales = scales_for_steps(as_guidance(guidance_scale), timesteps.cpu().numpy(), sched.num_train_timesteps(scheduler))
    images = []
    with denoiser.evaluating():
        for start in range(0, len(labels), chunk_size):
            rows = range(start, min(start + chunk_size, len(labels)))
            chunk_labels = labels[rows.start:rows.stop].to(denoiser.device)
            noise = sample_noise(sample_generators(seed, rows, INITIAL_NOISE), denoiser.sample_shape).to(denoiser.device)
            path = start_path(scheduler, num_steps, noise, seed, rows, denoiser.device)

            def branches(step: int, t: torch.Tensor, states: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
                model_input = path.stepper.scale(states[0], t).to(denoiser.device, denoiser.dtype)
                cond, uncond = denoiser.branches(model_input, t.to(denoiser.device), chunk_labels)
                return [(cond.float(), uncond.float())]

            run_paths([path], scales, branches)
            images.append(path.state.float().cpu())
    out = torch.cat(images)
    return out.clamp(-1.0, 1.0) if clip else out
