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
check (same seed, same settings), so they are written once. Attrs: ``config`` (JSON: the check's settings and
the teacher), ``thresholds`` (JSON), ``guidegap_version``, ``history``.

Readers: :func:`load_log` (``xarray.open_zarr``, safe while training appends), :func:`is_log`, :func:`log_summary`,
:func:`per_step_variable`; the verdicts recomputed from a log are the judge's (:func:`guidegap.auditing.judge.judge_log`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import xarray as xr

from guidegap._version import __version__
from guidegap.errors import InputError, first_line
from guidegap.metrics.registry import METRICS, Metric, summaries

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRAINING_STEP", "STEP_CURVES", "step_curves", "summary_long_names", "log_entry", "has_log", "load_log", "is_log",
           "require_log", "log_summary", "per_step_variable"]

TRAINING_STEP = "training_step"


def step_curves() -> list[Metric]:
    """The per-sample variables logged as per-step curves (``<name>_per_step``): those with a curve long name."""
    return [m for m in METRICS.values() if m.curve_long_name is not None]


def summary_long_names() -> dict[str, str]:
    """The long names of a pair audit's summaries, the variables of one check."""
    return {entry.name: entry.long_name for entry in summaries("pair")}


# The per-step curves of the built-in metrics (kept for readers of this name; a registered metric is added to the log).
STEP_CURVES = tuple(m.name for m in step_curves())


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
    from guidegap.metrics.summary import rho_per_step

    ds = report.dataset
    ts = (TRAINING_STEP,)
    data: dict[str, xr.Variable] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (e.g. amplification of a zero error)
        data["rho_per_step"] = _var(ts + ("step",), rho_per_step(ds).values[None],
                                    "student / teacher mean guidance-gap RMS at the sampling step")
        gap = ds["gap_norm"].mean("sample").transpose("model", "step").values
        data["gap_norm_per_step"] = _var(ts + ("model", "step"), gap[None], "mean over samples of RMS(eps_c - eps_u)")
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
        "step": _var(("step",), ds["step"].values, "sampling step index"),
        "timestep": _var(("step",), ds["timestep"].values, "training timestep of the sampling step", "training timestep"),
        "guidance_scale": _var(("step",), ds["guidance_scale"].values, "classifier-free guidance scale w (1 = no guidance)"),
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
