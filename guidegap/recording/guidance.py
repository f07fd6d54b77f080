"""Guidance-scale schedules ``w`` (diffusers convention: ``w = 1`` is no guidance).

A schedule gives one ``w`` per sampling step from the step's training timestep. Besides constants and
explicit per-step lists, guidegap ships DASH's time-adaptive guidance (TAG),
``w(t) = 1 + 3 * sigmoid(5 (0.5 - t / T))`` (arXiv 2606.00798): ~1 at high noise, ~4 near the data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from guidegap.errors import InputError

__all__ = ["GuidanceSchedule", "GuidanceLike", "as_guidance", "constant", "tag"]


@dataclass(frozen=True)
class GuidanceSchedule:
    """Maps (timestep, number of training timesteps) to a guidance scale; ``spec`` is a JSON-safe description."""

    fn: Callable[[float, int], float]
    spec: str

    def __call__(self, timestep: float, num_train_timesteps: int) -> float:
        return float(self.fn(float(timestep), int(num_train_timesteps)))

    def values(self, timesteps: Sequence[float] | np.ndarray, num_train_timesteps: int) -> np.ndarray:
        """The scale for every timestep of a sampling run (or a probe's sampled timesteps)."""
        return np.array([self(t, num_train_timesteps) for t in np.asarray(timesteps, dtype=np.float64)], dtype=np.float64)


def constant(scale: float) -> GuidanceSchedule:
    """The same ``w`` at every step."""
    return GuidanceSchedule(lambda t, T: scale, json.dumps({"kind": "constant", "scale": float(scale)}))


def tag(w_min: float = 1.0, w_max: float = 4.0, sharpness: float = 5.0) -> GuidanceSchedule:
    """DASH's TAG schedule ``w(t) = w_min + (w_max - w_min) * sigmoid(sharpness * (0.5 - t / T))``."""

    def fn(t: float, T: int) -> float:
        return w_min + (w_max - w_min) / (1.0 + math.exp(-sharpness * (0.5 - t / T)))

    spec = {"kind": "tag", "w_min": w_min, "w_max": w_max, "sharpness": sharpness}
    return GuidanceSchedule(fn, json.dumps(spec))


class _PerStep:
    """A list of scales, one per sampling step (valid only for a run with that many steps)."""

    def __init__(self, scales: Sequence[float]) -> None:
        self.scales = [float(s) for s in scales]


GuidanceLike = float | int | str | Sequence[float] | GuidanceSchedule | Callable[[float, int], float]


def as_guidance(value: GuidanceLike) -> GuidanceSchedule | _PerStep:
    """Accept a number, ``"tag"``, a per-step list, a :class:`GuidanceSchedule` or ``fn(t, T) -> w``."""
    if isinstance(value, GuidanceSchedule):
        return value
    if isinstance(value, bool):
        raise InputError(f"expected a guidance scale (number, 'tag', per-step list or schedule), received {value!r}.")
    if isinstance(value, (int, float, np.floating, np.integer)):
        if not math.isfinite(float(value)):
            raise InputError(f"expected a finite guidance scale, received {value!r}.")
        return constant(float(value))
    if isinstance(value, str):
        if value.lower() in ("tag", "dash"):
            return tag()
        try:
            return constant(float(value))
        except ValueError:
            raise InputError(f"expected a guidance scale number or 'tag', received {value!r}.") from None
    if callable(value):
        name = getattr(value, "__qualname__", type(value).__name__)
        return GuidanceSchedule(value, json.dumps({"kind": "callable", "name": name}))
    if isinstance(value, (Sequence, np.ndarray)):
        return _PerStep(value)
    raise InputError(f"expected a guidance scale (number, 'tag', per-step list or schedule), received {type(value).__name__}.")


def scales_for_steps(guidance: GuidanceSchedule | _PerStep, timesteps: np.ndarray, num_train_timesteps: int) -> np.ndarray:
    """Resolve a schedule to one scale per sampling step."""
    if isinstance(guidance, _PerStep):
        if len(guidance.scales) != len(timesteps):
            raise InputError(
                f"expected one guidance scale per sampling step ({len(timesteps)}), received {len(guidance.scales)}; "
                "pass a number, 'tag', or a list of the right length."
            )
        return np.asarray(guidance.scales, dtype=np.float64)
    return guidance.values(timesteps, num_train_timesteps)


def describe(guidance: GuidanceSchedule | _PerStep) -> str:
    """JSON description for Dataset attrs."""
    if isinstance(guidance, _PerStep):
        return json.dumps({"kind": "per-step", "scales": guidance.scales})
    return guidance.spec
