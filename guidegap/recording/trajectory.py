"""Record both guidance branches of a teacher and a student (or, teacher-free, of one model) along sampling trajectories.

Per chunk of samples, per sampling step: both branches of each model in one batch of 2B, per-sample
metrics (docs/design.md §2) reduced on the fly into :class:`~guidegap.recording.buffers.MetricBuffers`.
The chunk loop is outermost, so memory is bounded by the chunk size and flat in the number of steps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from guidegap._version import __version__
from guidegap.denoisers import Denoiser, DenoiserLike, as_denoiser
from guidegap.errors import InputError
from guidegap.metrics import divergence
from guidegap.metrics.registry import model_values, pair_values
from guidegap.recording import schedulers as sched
from guidegap.recording.buffers import MetricBuffers
from guidegap.recording.guidance import GuidanceLike, as_guidance, describe, scales_for_steps
from guidegap.recording.sampler import run_paths, start_path
from guidegap.recording.seeding import INITIAL_NOISE, sample_generators, sample_noise
from guidegap.results.schema import make_dataset

__all__ = ["trace", "trace_teacher_free", "MODES", "resolve_models", "resolve_pair", "resolve_labels"]

MODES = ("teacher-forced", "free-running")


def resolve_pair(teacher: DenoiserLike | None, student: DenoiserLike | None) -> list[tuple[str, Denoiser]]:
    """Adapt the given models and check that a teacher and a student are compatible."""
    roles = [(name, as_denoiser(model)) for name, model in (("teacher", teacher), ("student", student)) if model is not None]
    if not roles:
        raise InputError("expected a teacher, a student or both, received neither; pass at least one model.")
    if len(roles) == 2:
        (_, t), (_, s) = roles
        if t.num_classes != s.num_classes:
            raise InputError(
                f"teacher and student disagree on the number of classes ({t.num_classes} vs {s.num_classes}); "
                "audit a student against the teacher it was distilled from."
            )
        if t.sample_shape and s.sample_shape and t.sample_shape != s.sample_shape:
            raise InputError(
                f"teacher and student disagree on the sample shape ({t.sample_shape} vs {s.sample_shape}); "
                "they must denoise the same images."
            )
    return roles


def resolve_models(teacher: DenoiserLike | None, student: DenoiserLike | None,
                   scheduler: Any) -> tuple[list[tuple[str, Denoiser]], Any]:
    """The models by role (:func:`resolve_pair`) and their sampler, built on the noise schedule they store when
    ``scheduler`` is a name or ``None`` (models read with :func:`guidegap.load_model`;
    :func:`~guidegap.recording.schedulers.sampler_for`)."""
    roles = resolve_pair(teacher, student)
    return roles, sched.sampler_for(scheduler, [d.scheduler_config for _, d in roles])


def resolve_labels(labels: Sequence[int] | np.ndarray | torch.Tensor | int | None, num_samples: int, denoiser: Denoiser) -> torch.Tensor:
    """Labels for every sample: given, one repeated label, or classes in turn (``i % num_classes``)."""
    if labels is None:
        return torch.arange(num_samples) % denoiser.num_classes
    values = torch.as_tensor(np.asarray(labels), dtype=torch.long).flatten()
    if values.numel() == 1:
        values = values.expand(num_samples).clone()
    elif values.numel() != num_samples:
        raise InputError(f"expected one label or {num_samples} labels (one per sample), received {values.numel()}.")
    denoiser.check_labels(values)
    return values


def _sample_shape(denoisers: list[Denoiser], sample_shape: Sequence[int] | None) -> tuple[int, ...]:
    declared = next((d.sample_shape for d in denoisers if d.sample_shape is not None), None)
    if sample_shape is not None:
        sample_shape = tuple(int(s) for s in sample_shape)
        if declared is not None and declared != sample_shape:
            raise InputError(f"sample_shape {sample_shape} does not match the model's declared {declared}; drop sample_shape.")
        return sample_shape
    if declared is None:
        raise InputError("the models do not declare their sample shape; pass sample_shape=(C, H, W).")
    return declared


def _predict(denoiser: Denoiser, state: torch.Tensor, stepper: sched.SchedulerStepper, t: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both branches of one model at ``state`` (scaled for the scheduler), as float32 on the state's device."""
    model_input = stepper.scale(state, t).to(denoiser.device, denoiser.dtype)
    cond, uncond = denoiser.branches(model_input, t.to(denoiser.device), labels.to(denoiser.device))
    return cond.to(state.device, torch.float32), uncond.to(state.device, torch.float32)


def trace(
    teacher: DenoiserLike | None,
    student: DenoiserLike | None = None,
    *,
    num_samples: int = 64,
    num_steps: int = 50,
    guidance_scale: GuidanceLike = 4.0,
    labels: Sequence[int] | np.ndarray | torch.Tensor | int | None = None,
    scheduler: Any = None,
    mode: str = "teacher-forced",
    seed: int = 0,
    chunk_size: int = 64,
    keep_predictions: bool = False,
    divergence: bool = False,
    sample_shape: Sequence[int] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Record both guidance branches of ``teacher`` and ``student`` along guided sampling trajectories.

    Args:
        teacher, student: anything :func:`guidegap.denoisers.as_denoiser` accepts (a model read with
            :func:`guidegap.load_model` too); either may be ``None`` to record one model alone (its role names the
            ``model`` coordinate). :func:`guidegap.audit` also takes paths.
        num_samples: trajectories to record; samples ``i`` get label ``labels[i]`` (default ``i % K``).
        num_steps: sampling steps passed to ``scheduler.set_timesteps``.
        guidance_scale: ``w`` (1 = no guidance): a number, ``"tag"`` (DASH), a per-step list or ``fn(t, T)``.
        scheduler: a diffusers scheduler or a name (``"ddim"``, ``"dpm++"``, ``"euler"``, ...; default DDIM), built
            on the noise schedule stored with the models (checkpoints, :func:`guidegap.load_model`), else DDPM-linear.
        mode: ``"teacher-forced"`` (both models on the teacher's guided states) or ``"free-running"``
            (each model on its own guided trajectory from the same noise; adds ``divergence``).
        seed: every random draw derives from it per sample, so chunking never changes the result.
        chunk_size: samples per forward batch (the model sees ``2 * chunk_size`` rows).
        keep_predictions: also store full predictions and states (memory grows with steps and samples).
        divergence: in teacher-forced mode, also run the student along its own guided trajectory from
            the same noise and record ``divergence`` (one more student forward per step; free-running
            mode always records it).

    Returns:
        An ``xarray.Dataset`` following :mod:`guidegap.results.schema`.

    Example:
        >>> import guidegap
        >>> from guidegap.oracle import GaussianMixture, collapsed_student
        >>> from guidegap.recording.schedulers import default_scheduler
        >>> scheduler = default_scheduler()
        >>> teacher = GaussianMixture.random(seed=0).denoiser(scheduler)
        >>> ds = guidegap.trace(teacher, collapsed_student(teacher, 4.0), num_samples=8, num_steps=10, scheduler=scheduler)
        >>> float(ds.gap_norm.sel(model="student").max())
        0.0
    """
    if mode not in MODES:
        raise InputError(f"expected mode in {MODES}, received {mode!r}; use guidegap.probe() for the data-probe mode.")
    plan = _plan(*resolve_models(teacher, student, scheduler), labels, num_samples, num_steps, guidance_scale, seed, chunk_size,
                 sample_shape)
    roles, labels_all, shape, scheduler, timesteps, scales = (plan.roles, plan.labels, plan.shape, plan.scheduler,
                                                              plan.timesteps, plan.scales)
    free_running = mode == "free-running" and len(roles) == 2
    shadow = divergence and not free_running and len(roles) == 2
    buffers = MetricBuffers(len(roles), num_samples, len(timesteps))
    buffers.arrays["guidance_scale"] = scales

    bar = _progress_bar(progress, num_samples * len(timesteps))
    with _evaluating([d for _, d in roles]), torch.inference_mode():
        for start in range(0, num_samples, chunk_size):
            rows = range(start, min(start + chunk_size, num_samples))
            _record_chunk([d for _, d in roles], rows, labels_all[rows.start : rows.stop], shape, scheduler, num_steps,
                          scales, seed, free_running, shadow, keep_predictions, buffers, bar)
    if bar is not None:
        bar.close()

    config = {"mode": mode if len(roles) == 2 else "single-model", "keep_predictions": keep_predictions,
              "divergence": bool(free_running or shadow)}
    return _dataset(plan, buffers, config, "free-running" if free_running else "teacher-forced", "guidegap.trace")


def trace_teacher_free(
    model: DenoiserLike,
    *,
    num_samples: int = 64,
    num_steps: int = 50,
    guidance_scale: GuidanceLike = 4.0,
    labels: Sequence[int] | np.ndarray | torch.Tensor | int | None = None,
    scheduler: Any = None,
    seed: int = 0,
    chunk_size: int = 64,
    sample_shape: Sequence[int] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Record one model without a teacher: both branches along its guided path, and how far guidance moves it.

    From the same noise the model runs twice, guided at ``w`` and unguided (``w = 1``: its conditional branch alone,
    :class:`~guidegap.denoisers.views.UnguidedView`); ``guidance_response`` is the RMS distance of the two states after
    each step (a model whose guidance does nothing keeps them identical). The Dataset has ``model = ["student"]``,
    the model's per-sample metrics on its guided path and ``guidance_response``; the options are :func:`trace`'s of the
    same names (a teacher-free recording keeps no full predictions).
    """
    from guidegap.denoisers.views import UnguidedView

    plan = _plan(*resolve_models(None, model, scheduler), labels, num_samples, num_steps, guidance_scale, seed,
                 chunk_size, sample_shape)
    guided_model = plan.roles[0][1]
    unguided = UnguidedView(guided_model)
    buffers = MetricBuffers(1, num_samples, len(plan.timesteps))
    buffers.arrays["guidance_scale"] = plan.scales
    bar = _progress_bar(progress, num_samples * len(plan.timesteps))
    with _evaluating([guided_model, unguided]), torch.inference_mode():
        for start in range(0, num_samples, chunk_size):
            rows = range(start, min(start + chunk_size, num_samples))
            _record_chunk([guided_model, unguided], rows, plan.labels[rows.start : rows.stop], plan.shape, plan.scheduler,
                          num_steps, plan.scales, seed, True, False, False, buffers, bar, recorded=1,
                          divergence_name="guidance_response")
    if bar is not None:
        bar.close()
    config = {"mode": "teacher-free", "keep_predictions": False, "divergence": True}
    return _dataset(plan, buffers, config, "free-running", "guidegap.trace_teacher_free")


@dataclass
class _Plan:
    """What a recording was asked for, checked: the models by role, every sample's label, the steps and their w."""

    roles: list[tuple[str, Denoiser]]
    labels: torch.Tensor
    shape: tuple[int, ...]
    scheduler: Any
    guidance: Any
    timesteps: torch.Tensor
    scales: np.ndarray
    num_samples: int
    num_steps: int
    seed: int
    chunk_size: int


def _plan(roles: list[tuple[str, Denoiser]], scheduler: Any, labels: Any, num_samples: int, num_steps: int,
          guidance_scale: GuidanceLike, seed: int, chunk_size: int, sample_shape: Sequence[int] | None) -> _Plan:
    for name, value, least in (("num_samples", num_samples, 1), ("num_steps", num_steps, 1), ("chunk_size", chunk_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"expected {name} to be an integer >= {least}, received {value!r}.")
    num_samples, num_steps, seed, chunk_size = int(num_samples), int(num_steps), int(seed), int(chunk_size)  # numpy ints: JSON
    labels_all = resolve_labels(labels, num_samples, roles[0][1])
    shape = _sample_shape([d for _, d in roles], sample_shape)
    scheduler = sched.make_scheduler(scheduler)
    guidance = as_guidance(guidance_scale)
    timesteps = sched.fresh_copy(scheduler, num_steps).timesteps
    scales = scales_for_steps(guidance, timesteps.cpu().numpy(), sched.num_train_timesteps(scheduler))
    return _Plan(roles, labels_all, shape, scheduler, guidance, timesteps, scales, num_samples, num_steps, seed, chunk_size)


def _dataset(plan: _Plan, buffers: MetricBuffers, config: dict[str, Any], mode: str, history: str) -> xr.Dataset:
    """The recording as a Dataset: ``config`` (what differs between recordings) joins the plan's settings in attrs."""
    config = {
        "num_samples": plan.num_samples,
        "num_steps": plan.num_steps,
        "guidance": json.loads(describe(plan.guidance)),
        "seed": plan.seed,  # chunk_size is not here: it changes how the work is batched, never the result
        "sample_shape": list(plan.shape),
        # Private diffusers keys (e.g. _use_default_values, a set) vary between processes: leave them out.
        "scheduler": {"class": type(plan.scheduler).__name__,
                      **{k: _json_safe(v) for k, v in dict(plan.scheduler.config).items() if not k.startswith("_")}},
        "models": {name: d.describe() for name, d in plan.roles},
        **config,
    }
    attrs = {
        "guidegap_version": __version__,
        "mode": mode,
        "config": json.dumps(config, sort_keys=True),
        "prediction_type": sched.prediction_type(plan.scheduler),
        "history": f"{history} (guidegap {__version__})",
    }
    return make_dataset(buffers.arrays, models=[name for name, _ in plan.roles], labels=plan.labels.numpy(),
                        timesteps=plan.timesteps.cpu().numpy(), attrs=attrs)


def _record_chunk(
    models: list[Denoiser],
    rows: range,
    labels: torch.Tensor,
    shape: tuple[int, ...],
    scheduler: Any,
    num_steps: int,
    scales: np.ndarray,
    seed: int,
    free_running: bool,
    shadow: bool,
    keep_predictions: bool,
    buffers: MetricBuffers,
    bar: Any,
    recorded: int | None = None,
    divergence_name: str = "divergence",
) -> None:
    """Run one chunk's trajectories through the sampler loop, writing per-sample metrics into ``buffers``.

    The leader (``models[0]``) follows its own guided path; the student follows its own too when ``free_running``
    or ``shadow`` (teacher-forced metrics, plus the student on its own trajectory for ``divergence`` only).
    Only the first ``recorded`` models' metrics are stored (default all; pair metrics need two), and the distance
    of the two paths under ``divergence_name`` (the teacher-free recording's ``guidance_response``).
    """
    recorded = len(models) if recorded is None else recorded
    device = models[0].device
    span = slice(rows.start, rows.stop)
    noise = sample_noise(sample_generators(seed, rows, INITIAL_NOISE), shape).to(device)
    paths = [start_path(scheduler, num_steps, noise, seed, rows, device) for _ in (range(2) if free_running or shadow else range(1))]

    def branches_at(step: int, t: torch.Tensor, states: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        preds = []
        for m, denoiser in enumerate(models):
            owner = m if free_running else 0  # teacher-forced: every model at the leader's state
            cond, uncond = _predict(denoiser, states[owner], paths[owner].stepper, t, labels)
            preds.append((cond, uncond))
            if m < recorded:
                buffers.put(model_values(cond, uncond), span, step, model=m)
                if keep_predictions:
                    buffers.put({"pred_cond": cond, "pred_uncond": uncond, "state": states[owner]}, span, step, model=m)
        if recorded == 2:
            (tc, tu), (sc, su) = preds
            buffers.put(pair_values(sc, su, tc, tu, float(scales[step])), span, step)
        if shadow:  # the student's own guided step, from its own state
            preds[1] = _predict(models[1], states[1], paths[1].stepper, t, labels)
        return preds[: len(paths)]

    def after_step(step: int, states: list[torch.Tensor]) -> None:
        if len(states) == 2:
            buffers.put({divergence_name: divergence(states[1], states[0])}, span, step)
        if bar is not None:
            bar.update(len(rows))

    run_paths(paths, scales, branches_at, after_step)


class _evaluating:
    """Put every denoiser in eval mode (DiT drops labels at random in train mode) and restore after."""

    def __init__(self, denoisers: list[Denoiser]) -> None:
        self.contexts = [d.evaluating() for d in denoisers]

    def __enter__(self) -> None:
        for context in self.contexts:
            context.__enter__()

    def __exit__(self, *exc: object) -> None:
        for context in reversed(self.contexts):
            context.__exit__(*exc)


def _progress_bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="sample-step", desc="recording", leave=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
