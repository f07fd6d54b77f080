"""The training log of a :class:`~guidegap.monitoring.GuidanceMonitor`: its schema and its readers.

One Dataset along ``training_step``; the zarr store it is appended to is written by :mod:`guidegap.monitoring.log`.

Each check appends one entry. Variables (every one with ``long_name`` and ``units``):

=========================  ==============================  ================================================
variable                   dims                            meaning
=========================  ==============================  ================================================
rho_per_step               training_step, step             student / teacher mean gap RMS at each sampling step
gap_norm_per_step          training_step, model, step      mean over samples of RMS(eps_c - eps_u)
<metric>_per_step          training_step, step             mean over samples of gap_cos, gap_mse, cond_error,
                                                           uncond_error, guided_error, amplification, divergence
                                                           (every metric of guidegap.metrics.registry with a curve)
<summary>                  training_step                   the audit summary: rho, cos_delta, gap_mse,
                                                           cond_error, uncond_error, rel_cond_error,
                                                           rel_uncond_error, guided_error, amplification,
                                                           divergence, nonfinite (as in ``guidegap audit --json``)
<summary>_ci               training_step, bound            its bootstrap confidence interval (``bound``: low, high)
verdict, verdict_reason    training_step                   the docs/design.md §2 verdict (a string) and its rule
check_seconds              training_step                   wall time of the check
=========================  ==============================  ================================================

Coordinates ``step`` / ``timestep`` / ``guidance_scale`` (sampling steps) and ``model`` are the same for every
check (same seed, same settings), so they are written once. A log of data-probe checks (``GuidanceMonitor(data=...)``,
``config["mode"] == "data-probe"``) has the same variables with ``step`` a tenth of the training timesteps, highest
noise first (:func:`probe_by_timestep_bin`; ``timestep`` its centre, ``guidance_scale`` its samples' mean w).
Attrs: ``config`` (JSON: the check's settings and the teacher), ``thresholds`` (JSON), ``guidegap_version``,
``history``.

Readers: :func:`load_log` (``xarray.open_zarr``, safe while training appends), :func:`is_log`, :func:`log_summary`,
:func:`per_step_variable`; the verdicts recomputed from a log are the judge's (:func:`guidegap.auditing.judge.judge_log`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import xarray as xr

from guidegap._version import __version__
from guidegap.errors import InputError, first_line
from guidegap.metrics.registry import METRICS, Metric, summaries
from guidegap.results.schema import config_of, is_probe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRAINING_STEP", "STEP_CURVES", "PROBE_BINS", "step_curves", "summary_long_names", "log_entry", "has_log", "load_log",
           "is_log", "is_probe_log", "require_log", "log_summary", "per_step_variable", "probe_by_timestep_bin"]

TRAINING_STEP = "training_step"


def step_curves() -> list[Metric]:
    """The per-sample variables logged as per-step curves (``<name>_per_step``): those with a curve long name."""
    return [m for m in METRICS.values() if m.curve_long_name is not None]


def summary_long_names() -> dict[str, str]:
    """The long names of a pair audit's summaries, the variables of one check."""
    return {entry.name: entry.long_name for entry in summaries("pair")}


# The per-step curves of the built-in metrics (kept for readers of this name; a registered metric is added to the log).
STEP_CURVES = tuple(m.name for m in step_curves())


PROBE_BINS = 10  # a data-probe check's curves: one per tenth of the training timesteps


def probe_by_timestep_bin(ds: xr.Dataset, bins: int = PROBE_BINS) -> xr.Dataset:
    """A data-probe recording (each sample at its own t) in a trajectory's shape for the log's curves: samples grouped
    into ``bins`` equal bins of the training timesteps, ``step`` 0 the highest-noise bin (as a sampling run begins),
    ``timestep`` each bin's centre and ``guidance_scale`` the mean w of its samples. Each sample keeps its own index
    within its bin (``sample``), so a mean over ``sample`` is the bin's mean; bins hold unequal counts (NaN padded)."""
    train_steps = int(config_of(ds)["noise_schedule"]["num_train_timesteps"])
    t = np.asarray(ds["timestep"].values, dtype=np.int64)
    index = np.clip((train_steps - 1 - t) * bins // train_steps, 0, bins - 1)
    width = train_steps / bins
    names = [n for n in ds.data_vars if "sample" in ds[n].dims and n != "guidance_scale"]
    parts = []
    for k in range(bins):
        part = ds[names].isel(sample=np.flatnonzero(index == k))
        parts.append(part.assign_coords(sample=np.arange(part.sizes["sample"])).drop_vars(
            [c for c in ("label", "timestep") if c in part.coords]))
    binned = xr.concat(parts, dim="step", join="outer", data_vars="all", coords="minimal", compat="override",
                       fill_value=np.nan)
    w = np.asarray(ds["guidance_scale"].values, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty bin's mean w is NaN
        mean_w = np.array([np.mean(w[index == k]) if np.any(index == k) else np.nan for k in range(bins)])
    centres = np.round(train_steps - (np.arange(bins) + 0.5) * width).astype(np.int64)
    return binned.assign_coords(step=np.arange(bins), timestep=("step", centres), guidance_scale=("step", mean_w)).assign_attrs(ds.attrs)


def is_probe_log(ds: xr.Dataset) -> bool:
    """A log of data-probe checks (``GuidanceMonitor(data=...)``): its curves are over timestep bins, and its verdicts
    take the probe's bar (:meth:`guidegap.Thresholds.for_probe`)."""
    return json.loads(ds.attrs.get("config", "{}")).get("mode") == "data-probe"


def _var(dims: tuple[str, ...], values: Any, long_name: str, units: str = "1") -> xr.Variable:
    return xr.Variable(dims, values, {"long_name": long_name, "units": units})


class CheckedAudit(Protocol):
    """What a log entry reads of an audit (a :class:`~guidegap.AuditReport`; results/ does not import auditing/)."""

    @property
    def dataset(self) -> xr.Dataset: ...

    @property
    def summary(self) -> dict[str, Any]: ...

    @property
    def verdict(self) -> str: ...

    @property
    def finding(self) -> Any: ...  # a Finding: its ``reason`` is logged


def log_entry(report: CheckedAudit, training_step: int, seconds: float, attrs: dict[str, str]) -> xr.Dataset:
    """One check (``report``: its :class:`~guidegap.AuditReport`) as a Dataset with a length-1 ``training_step`` dim."""
    probe = is_probe(report.dataset)
    ds = probe_by_timestep_bin(report.dataset) if probe else report.dataset
    ts = (TRAINING_STEP,)
    data: dict[str, xr.Variable] = {}
    where = "in the timestep bin" if probe else "at the sampling step"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (e.g. amplification of a zero error)
        gap = ds["gap_norm"].mean("sample", skipna=True).transpose("model", "step")
        rho = gap.sel(model="student") / gap.sel(model="teacher")  # a ratio of means, as rho_per_step / summarize
        data["rho_per_step"] = _var(ts + ("step",), rho.values[None], f"student / teacher mean guidance-gap RMS {where}")
        data["gap_norm_per_step"] = _var(ts + ("model", "step"), gap.values[None], "mean over samples of RMS(eps_c - eps_u)")
        for curve in step_curves():
            if curve.name in ds:
                values = ds[curve.name].mean("sample", skipna=True).transpose("step").values
                data[f"{curve.name}_per_step"] = _var(ts + ("step",), values[None], curve.curve_long_name)
    long_names = summary_long_names()
    for name, estimate in report.summary.items():
        long_name = long_names.get(name, name)
        data[name] = _var(ts, np.array([estimate.value]), long_name)
        data[name].attrs["ci_level"] = float(estimate.level)
        data[f"{name}_ci"] = _var(ts + ("bound",), np.array([[estimate.low, estimate.high]]),
                                  f"{estimate.level:.0%} bootstrap confidence interval of {name}")
    data["verdict"] = _var(ts, np.array([report.verdict], dtype=object), "guidegap verdict (docs/design.md section 2)")
    data["verdict_reason"] = _var(ts, np.array([report.finding.reason], dtype=object), "rule that decided the verdict")
    data["check_seconds"] = _var(ts, np.array([float(seconds)]), "wall time of the check", "s")
    coords = {
        TRAINING_STEP: _var(ts, np.array([int(training_step)], dtype=np.int64), "training step of the check"),
        "step": _var(("step",), ds["step"].values, "timestep bin of the data probe, high noise first" if probe
                     else "sampling step index"),
        "timestep": _var(("step",), ds["timestep"].values, "centre of the timestep bin" if probe
                         else "training timestep of the sampling step", "training timestep"),
        "guidance_scale": _var(("step",), ds["guidance_scale"].values, "classifier-free guidance scale w (1 = no guidance)"
                               + (", mean over the bin's samples" if probe else "")),
        "model": _var(("model",), np.asarray(ds["model"].values, dtype=object), "model role"),
        "bound": _var(("bound",), np.array(["low", "high"], dtype=object), "confidence-interval bound"),
    }
    attrs = {"guidegap_version": __version__, "history": f"guidegap.GuidanceMonitor (guidegap {__version__})", **attrs}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def has_log(store: str | os.PathLike[str]) -> bool:
    """Whether ``store`` holds a training log (its consolidated metadata)."""
    return (Path(store) / ".zmetadata").is_file()


def load_log(store: str | os.PathLike[str]) -> xr.Dataset:
    """Read a monitor's zarr training log fully into memory (safe while training appends to it).

    A store whose metadata or chunks do not decode, or whose ``training_step`` coordinate is not strictly
    increasing (a lost chunk after the first reads as 0), is refused in one line. zarr skips writing chunks that
    equal the fill value, so a missing chunk is not damage in itself: a lost data chunk reads as its fill value
    (NaN for the float summaries) and cannot be told from a NaN that a check recorded.
    """
    path = Path(store)
    if not has_log(path):
        raise InputError(f"no guidegap training log at {str(path)!r}; pass the store= folder of a GuidanceMonitor.")
    try:
        with xr.open_zarr(path, consolidated=True) as ds:
            loaded = ds.load()
    except (ValueError, KeyError, OSError, RuntimeError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise InputError(f"{str(path)!r} is a damaged training log "
                         f"({type(error).__name__}: {first_line(error, empty=type(error).__name__)}); "
                         "restore it from a copy or start a new store= folder.") from error
    steps = loaded[TRAINING_STEP].values if TRAINING_STEP in loaded.coords else np.array([])
    if steps.size > 1 and not bool(np.all(np.diff(steps) > 0)):
        raise InputError(f"{str(path)!r} is a damaged training log: its training_step coordinate is not strictly "
                         f"increasing ({steps.tolist()[:8]}...); restore it from a copy or start a new store= folder.")
    return loaded


def is_log(ds: xr.Dataset) -> bool:
    """True for a monitor training log (a ``training_step`` dim), False for an audit / recording Dataset."""
    return TRAINING_STEP in ds.dims


def require_log(ds: xr.Dataset, what: str) -> None:
    if not is_log(ds):
        raise InputError(f"{what}: expected a GuidanceMonitor training log (a 'training_step' dim), received dims "
                         f"{tuple(ds.dims)}; open one with guidegap.load_log(store).")


def log_summary(ds: xr.Dataset) -> "pd.DataFrame":
    """One row per check (index ``training_step``): the summary values and the stored verdict."""
    require_log(ds, "log_summary")
    names = [n for n in summary_long_names() if n in ds] + ["verdict", "check_seconds"]
    frame = ds[names].reset_coords(drop=True).to_dataframe()
    frame["verdict"] = frame["verdict"].astype(str)
    return frame


def per_step_variable(ds: xr.Dataset, variable: str, model: str = "student") -> xr.DataArray:
    """A ``(step, training_step)`` curve of the log: ``"rho"`` / ``"gap_norm"`` / ``"gap_cos"`` / ... or ``"<name>_per_step"``."""
    require_log(ds, "per_step_variable")
    name = variable if variable.endswith("_per_step") else f"{variable}_per_step"
    if name not in ds:
        known = sorted(n.removesuffix("_per_step") for n in ds.data_vars if str(n).endswith("_per_step"))
        raise InputError(f"expected a per-step variable of the training log from {known}, received {variable!r}.")
    da = ds[name]
    if "model" in da.dims:
        da = da.sel(model=model, drop=True)
    return da.transpose("step", TRAINING_STEP)
