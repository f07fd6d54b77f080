"""The xarray schema of every guidegap result (docs/design.md §3).

Dims: ``sample``; ``step`` for trajectories (absent in data-probe results); ``model`` (``teacher`` /
``student``) for per-model variables; ``channel``, ``height``, ``width`` only when full predictions are
kept. Coordinates: ``timestep`` on ``step`` (on ``sample`` for data probes), ``label`` on ``sample``.
Every variable carries ``long_name`` and ``units`` (``"1"`` = dimensionless, CF convention); attrs are
netCDF-safe (str / int / float / numeric arrays; the run configuration is a JSON string in ``config``).
The variables are those of :mod:`guidegap.metrics.registry` (the table below lists the built-in ones).

=====================  ==========================  ================================================
variable               dims                        meaning
=====================  ==========================  ================================================
gap_norm               model, sample, step         RMS(eps_c - eps_u): size of the guidance signal
cond_norm              model, sample, step         RMS(eps_c)
uncond_norm            model, sample, step         RMS(eps_u)
parallel_fraction      model, sample, step         ||Delta_par|| / ||Delta|| (APG, Sadat et al. 2024)
nonfinite              model, sample, step         1 where a prediction had NaN/Inf
gap_cos                sample, step                cos(Delta_S, Delta_T)
gap_mse                sample, step                mean((Delta_S - Delta_T)^2)
cond_error             sample, step                RMS(eps_c^S - eps_c^T)
uncond_error           sample, step                RMS(eps_u^S - eps_u^T)
guided_error           sample, step                RMS(e_u + w (e_c - e_u))
amplification          sample, step                guided_error(w) / guided_error(1)
divergence             sample, step                RMS(x_S - x_T) after the step (free-running only)
guidance_response      sample, step                RMS(x at w - x at w=1) of one model (teacher-free audit)
guidance_scale         step                        w used at the step
pred_cond, pred_uncond model, sample, step, c,h,w  full predictions (only with keep_predictions)
state                  model, sample, step, c,h,w  x_t each model was evaluated at (keep_predictions)
=====================  ==========================  ================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from guidegap.errors import InputError
from guidegap.metrics.registry import VariablesView

__all__ = ["Variable", "VARIABLES", "COORDINATES", "MODES", "make_dataset", "validate", "config_of", "seed_of", "is_probe"]

MODES = ("teacher-forced", "free-running", "data-probe", "pipeline")


@dataclass(frozen=True)
class Variable:
    """Schema entry: the dims in trajectory form (``step`` is dropped for data probes) and CF-style metadata."""

    dims: tuple[str, ...]
    long_name: str
    units: str


# Derived from the metric registry, so a metric added there is part of the schema (its dims follow its kind).
VARIABLES: Mapping[str, Variable] = VariablesView(lambda m: Variable(m.dims, m.long_name, m.units))

COORDINATES: dict[str, Variable] = {
    "sample": Variable(("sample",), "sample index", "1"),
    "step": Variable(("step",), "sampling step index", "1"),
    "model": Variable(("model",), "model role", "1"),
    "label": Variable(("sample",), "requested class label", "1"),
    "timestep": Variable(("step",), "training timestep of the sampling step", "training timestep"),
}


def _dims_for(name: str, spec: Variable, has_step: bool) -> tuple[str, ...]:
    dims = spec.dims if has_step else tuple(d for d in spec.dims if d != "step")
    if name == "guidance_scale" and not has_step:
        dims = ("sample",)
    return dims


def make_dataset(
    data: dict[str, np.ndarray],
    *,
    models: list[str],
    labels: np.ndarray,
    timesteps: np.ndarray,
    attrs: dict[str, str | int | float],
    has_step: bool = True,
) -> xr.Dataset:
    """Assemble a Dataset from arrays named as in :data:`VARIABLES`, attaching metadata and coordinates.

    ``timesteps`` is per step (trajectories) or per sample (``has_step=False``, data probes).
    """
    variables = {}
    for name, values in data.items():
        spec = VARIABLES[name]
        variables[name] = xr.Variable(_dims_for(name, spec, has_step), values, {"long_name": spec.long_name, "units": spec.units})
    timestep_dim = "step" if has_step else "sample"
    coords: dict[str, xr.Variable] = {
        "sample": xr.Variable("sample", np.arange(len(labels), dtype=np.int64)),
        "model": xr.Variable("model", np.array(models, dtype=object)),
        "label": xr.Variable("sample", np.asarray(labels, dtype=np.int64)),
        "timestep": xr.Variable(timestep_dim, _timestep_values(timesteps)),
    }
    if has_step:
        coords["step"] = xr.Variable("step", np.arange(len(timesteps), dtype=np.int64))
    for name, var in coords.items():
        spec = COORDINATES[name]
        var.attrs.update(long_name=spec.long_name, units=spec.units)
    ds = xr.Dataset(variables, coords=coords, attrs=dict(attrs))
    validate(ds)
    return ds


def _timestep_values(timesteps: np.ndarray) -> np.ndarray:
    values = np.asarray(timesteps, dtype=np.float64)
    return values.astype(np.int64) if np.all(values == np.round(values)) else values


def _netcdf_safe(value: object) -> bool:
    """True for attr values netCDF stores and reads back unchanged: str, int, float, 1-D numeric arrays."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.size > 0 and (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating))
    return False


def validate(ds: xr.Dataset) -> None:
    """Raise :class:`InputError` when ``ds`` is not a guidegap result (metadata, dims, attrs)."""
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"expected a guidegap result (xarray.Dataset), received {type(ds).__name__}.")
    for name in ("guidegap_version", "mode", "config"):
        if name not in ds.attrs:
            raise InputError(f"expected a guidegap result with attrs['{name}'], received a Dataset without it; write results with guidegap.")
    for key, value in ds.attrs.items():
        if not _netcdf_safe(value):
            raise InputError(f"attr {key!r} is {type(value).__name__}, which netCDF cannot store; use str, int or float.")
    if not isinstance(ds.attrs["mode"], str) or ds.attrs["mode"] not in MODES:
        raise InputError(f"expected attrs['mode'] in {MODES}, received {ds.attrs['mode']!r}.")
    _parse_config(ds.attrs["config"])
    has_step = "step" in ds.dims
    for name, var in ds.variables.items():
        if "long_name" not in var.attrs or "units" not in var.attrs:
            raise InputError(f"variable {name!r} lacks long_name/units; every guidegap variable must carry both.")
        for key, value in var.attrs.items():
            if not _netcdf_safe(value):
                raise InputError(
                    f"attr {key!r} of variable {name!r} is {type(value).__name__}, which netCDF cannot store; use str, int or float."
                )
        known = VARIABLES.get(name) or COORDINATES.get(name)
        if known is not None:
            expected = ("sample",) if name == "timestep" and not has_step else _dims_for(name, known, has_step)
            if var.dims != expected:
                raise InputError(f"variable {name!r}: expected dims {expected}, received {var.dims}.")


def _parse_config(text: object) -> dict:
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise InputError(
            f"expected attrs['config'] to be a JSON object (the run configuration), received {str(text)[:60]!r}; "
            "write results with guidegap."
        )
    return config


def is_probe(ds: xr.Dataset) -> bool:
    """A data-probe recording (:func:`guidegap.probe`): each sample at its own t, no ``step`` dim, no trajectory."""
    return "step" not in ds.dims


def config_of(ds: xr.Dataset) -> dict:
    """The run configuration stored as JSON in ``ds.attrs['config']``."""
    if "config" not in ds.attrs:
        raise InputError("expected a guidegap result with attrs['config'], received a Dataset without it; write results with guidegap.")
    return _parse_config(ds.attrs["config"])


def seed_of(ds: xr.Dataset) -> int:
    """The seed a result was recorded with (``attrs['config']``); 0 when it names none (e.g. a caller's generator)."""
    try:
        return int(json.loads(ds.attrs.get("config", "{}")).get("seed", 0))
    except (TypeError, ValueError):
        return 0
