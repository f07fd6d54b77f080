"""The training log of a :class:`~guidegap.monitoring.GuidanceMonitor`: one Dataset along ``training_step``.

Each check appends one entry. Variables (every one with ``long_name`` and ``units``):

=========================  ==============================  ================================================
variable                   dims                            meaning
=========================  ==============================  ================================================
rho_per_step               training_step, step             student / teacher mean gap RMS at each sampling step
gap_norm_per_step          training_step, model, step      mean over samples of RMS(eps_c - eps_u)
<metric>_per_step          training_step, step             mean over samples of gap_cos, gap_mse, cond_error,
                                                           uncond_error, guided_error, amplification, divergence
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

The store is zarr format 2 with consolidated metadata: readers (``xarray.open_zarr`` in another process) see
the snapshot of the last completed append, because the consolidated metadata is rewritten (atomically) only
after every array of an entry is written, and entries are chunked one per file so old chunks are never
rewritten. An append that fails is rolled back (arrays truncated to the previous length). Appends hold a lock
beside the store (:mod:`guidegap.monitoring.lock`: one writer at a time, a second live run refused), and each
first repairs the log from the arrays' own metadata (:func:`repair_log`), so a log left inconsistent by a
killed or competing writer opens again. zarr is imported only here.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from guidegap._version import __version__
from guidegap.auditing.judge import judge_log, thresholds_of
from guidegap.errors import InputError
from guidegap.metrics.registry import METRICS, Metric, summaries

if TYPE_CHECKING:
    import pandas as pd

    from guidegap.auditing.report import AuditReport
    from guidegap.auditing.verdicts import Thresholds

__all__ = ["TRAINING_STEP", "STEP_CURVES", "log_entry", "append_entry", "truncate_log", "repair_log", "load_log", "is_log",
           "log_verdicts", "log_summary", "per_step_variable", "thresholds_of"]

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


def log_entry(report: "AuditReport", training_step: int, seconds: float, attrs: dict[str, str]) -> xr.Dataset:
    """One check as a Dataset with a length-1 ``training_step`` dim (see the module docstring)."""
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


# -- the zarr store -------------------------------------------------------------------------------
def _exists(store: Path) -> bool:
    return (store / ".zmetadata").is_file()


def _encoding(entry: xr.Dataset) -> dict[str, dict[str, Any]]:
    """One chunk per check along ``training_step``: an append never rewrites an existing chunk."""
    return {name: {"chunks": tuple(1 if d == TRAINING_STEP else s for d, s in zip(var.dims, var.shape))}
            for name, var in entry.variables.items() if TRAINING_STEP in var.dims}


def append_entry(store: str | os.PathLike[str], entry: xr.Dataset) -> None:
    """Append a :func:`log_entry` to the zarr log at ``store`` (created on the first call).

    Entries at or after the entry's training step are dropped first (a run resumed from an earlier
    checkpoint replaces what it repeats), so ``training_step`` stays strictly increasing.
    """
    from guidegap.monitoring.lock import store_lock

    store = Path(store)
    step = int(entry[TRAINING_STEP].values[0])
    with store_lock(store):
        if not _exists(store):
            _create(store, entry)
            return
        repair_log(store)
        steps = _stored_steps(store)
        _check_compatible(store, entry)
        keep = int(np.searchsorted(steps, step, side="left"))
        truncate_log(store, keep)
        static = [name for name, var in entry.variables.items() if TRAINING_STEP not in var.dims]
        try:
            entry.drop_vars(static).to_zarr(store, append_dim=TRAINING_STEP, consolidated=True)
        except BaseException:
            truncate_log(store, keep)
            raise


def _create(store: Path, entry: xr.Dataset) -> None:
    """Write the first entry into a hidden sibling folder, then rename it into place (atomic)."""
    if store.exists() and any(store.iterdir()):
        raise InputError(f"{str(store)!r} exists but is not a guidegap training log; choose another store path or remove it.")
    store.parent.mkdir(parents=True, exist_ok=True)
    for leftover in store.parent.glob(f".{store.name}.*.tmp"):  # killed creators' (we hold the lock: none is live)
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = store.parent / f".{store.name}.{os.getpid()}.tmp"
    try:
        entry.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, encoding=_encoding(entry))
        if store.exists():
            store.rmdir()
        os.rename(tmp, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stored_steps(store: Path) -> np.ndarray:
    with xr.open_zarr(store, consolidated=True) as ds:
        return np.asarray(ds[TRAINING_STEP].values, dtype=np.int64)


def _check_compatible(store: Path, entry: xr.Dataset) -> None:
    with xr.open_zarr(store, consolidated=True) as ds:
        same = (ds.attrs.get("config") == entry.attrs.get("config") and ds.sizes.get("step") == entry.sizes["step"]
                and np.array_equal(ds["timestep"].values, entry["timestep"].values)
                and set(ds.data_vars) == set(entry.data_vars))
    if not same:
        raise InputError(f"the training log {str(store)!r} was written with other monitor settings (teacher, samples, "
                         "steps, w, seed or scheduler); use the same settings to continue it, or another store path.")


def _step_arrays(store: str | os.PathLike[str]) -> list[tuple[Any, int]]:
    """Every ``training_step`` array with its axis, from the arrays' own metadata (not the consolidated snapshot,
    which may predate a partial append or disagree with it)."""
    import zarr

    try:
        group = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    except TypeError:  # zarr 2 reads each array's own metadata anyway
        group = zarr.open_group(str(store), mode="r+")
    found = []
    for _, array in group.arrays():
        dims = list(array.attrs.get("_ARRAY_DIMENSIONS", []))
        if TRAINING_STEP in dims:
            found.append((array, dims.index(TRAINING_STEP)))
    return found


def truncate_log(store: str | os.PathLike[str], length: int, *, consolidate: bool = False) -> None:
    """Cut every ``training_step`` array of the log to ``length`` entries and rewrite the consolidated metadata.

    Also repairs a log whose arrays disagree in length (an append killed midway): readers of the consolidated
    metadata never saw the partial entry, and after this neither does the next append.
    """
    import zarr

    changed = consolidate
    for array, axis in _step_arrays(store):
        if array.shape[axis] != length:
            shape = list(array.shape)
            shape[axis] = length
            array.resize(tuple(shape))
            changed = True
    if changed:
        zarr.consolidate_metadata(str(store))


def repair_log(store: str | os.PathLike[str]) -> None:
    """Cut the log to the entries every array holds and make the consolidated metadata agree with the arrays.

    Runs first in every append: before it, a log whose consolidated metadata listed arrays of conflicting
    lengths (two writers, a killed one) could not even be opened to be repaired.
    """
    arrays = _step_arrays(store)
    length = min((array.shape[axis] for array, axis in arrays), default=0)
    try:  # the snapshot is written after whole entries only: trust it where it can be read
        with xr.open_zarr(store, consolidated=True) as ds:
            snapshot = int(ds.sizes.get(TRAINING_STEP, 0))
        unreadable = False
    except Exception:  # conflicting sizes, a missing array: rebuild the snapshot from the arrays
        snapshot, unreadable = length, True
    truncate_log(store, min(length, snapshot), consolidate=unreadable)


def load_log(store: str | os.PathLike[str]) -> xr.Dataset:
    """Read a monitor's zarr training log fully into memory (safe while training appends to it)."""
    path = Path(store)
    if not _exists(path):
        raise InputError(f"no guidegap training log at {str(path)!r}; pass the store= folder of a GuidanceMonitor.")
    with xr.open_zarr(path, consolidated=True) as ds:
        return ds.load()


# -- reading a log -------------------------------------------------------------------------------
def is_log(ds: xr.Dataset) -> bool:
    """True for a monitor training log (a ``training_step`` dim), False for an audit / recording Dataset."""
    return TRAINING_STEP in ds.dims


def _require_log(ds: xr.Dataset, what: str) -> None:
    if not is_log(ds):
        raise InputError(f"{what}: expected a GuidanceMonitor training log (a 'training_step' dim), received dims "
                         f"{tuple(ds.dims)}; open one with guidegap.load_log(store).")


def log_verdicts(ds: xr.Dataset, thresholds: "Thresholds | None" = None) -> xr.DataArray:
    """The verdict of every check, recomputed from the stored summaries with ``thresholds`` (default: the log's)."""
    _require_log(ds, "log_verdicts")
    return judge_log(ds, thresholds)


def log_summary(ds: xr.Dataset) -> "pd.DataFrame":
    """One row per check (index ``training_step``): the summary values and the stored verdict."""
    _require_log(ds, "log_summary")
    names = [n for n in summary_long_names() if n in ds] + ["verdict", "check_seconds"]
    frame = ds[names].reset_coords(drop=True).to_dataframe()
    frame["verdict"] = frame["verdict"].astype(str)
    return frame


def per_step_variable(ds: xr.Dataset, variable: str, model: str = "student") -> xr.DataArray:
    """A ``(step, training_step)`` curve of the log: ``"rho"`` / ``"gap_norm"`` / ``"gap_cos"`` / ... or ``"<name>_per_step"``."""
    _require_log(ds, "per_step_variable")
    name = variable if variable.endswith("_per_step") else f"{variable}_per_step"
    if name not in ds:
        known = sorted(n.removesuffix("_per_step") for n in ds.data_vars if str(n).endswith("_per_step"))
        raise InputError(f"expected a per-step variable of the training log from {known}, received {variable!r}.")
    da = ds[name]
    if "model" in da.dims:
        da = da.sel(model=model, drop=True)
    return da.transpose("step", TRAINING_STEP)
