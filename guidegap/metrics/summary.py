"""Summaries of per-sample metrics with percentile-bootstrap confidence intervals (Efron & Tibshirani 1993).

Samples are the unit of resampling: per-step metrics are first averaged over ``step`` per sample, then the
sample index is resampled with replacement, jointly for every array a statistic needs. All statistics are
NaN-aware (``numpy.nanmean``), so an undefined per-sample value (e.g. a 0/0 ``amplification``) is skipped
rather than spreading. Every estimate in :func:`summarize` uses the same seed, hence the same resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from guidegap.errors import InputError
from guidegap.metrics.registry import summaries

__all__ = ["Estimate", "bootstrap", "mean", "ratio_of_means", "rho", "rho_per_step", "summarize"]

Statistic = Callable[..., "np.ndarray | float"]

_MAX_RESAMPLED_ELEMENTS = 1 << 23  # per array and chunk: bounds bootstrap memory to ~64 MB of float64


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval ``[low, high]`` at confidence ``level``."""

    value: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        """``{"value", "low", "high", "level"}`` as plain floats (JSON- and netCDF-attr-safe)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return f"{self.value:#.3g} [{self.low:#.3g}, {self.high:#.3g}]"


# -- statistics: f(*arrays, axis) reduces the sample axis ------------------------------------------
def mean(a: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """NaN-aware mean over the sample axis."""
    return np.nanmean(a, axis=axis)


def ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """``nanmean(a) / nanmean(b)`` over the sample axis (not the mean of per-sample ratios)."""
    return np.nanmean(a, axis=axis) / np.nanmean(b, axis=axis)


# -- bootstrap -------------------------------------------------------------------------------------
def bootstrap(
    statistic: Statistic,
    *per_sample_arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile-bootstrap CI of ``statistic`` over samples (axis 0 of every array, resampled jointly).

    ``statistic(*arrays, axis=k)`` must reduce the sample axis ``k``: it is called once on the full data
    (``axis=0``, giving ``value``) and on stacked resamples of shape ``(chunk, n, ...)`` (``axis=1``), so
    numpy reductions such as :func:`mean` and :func:`ratio_of_means` work as they are. The resample indices
    are one ``(n_boot, n)`` draw from ``numpy.random.default_rng(seed)``; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the finite-or-inf (non-NaN) resampled values.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in per_sample_arrays]
    _check_bootstrap_args(arrays, n_boot, level)
    n = arrays[0].shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices, 0/0: NaN is the answer
        value = float(statistic(*arrays, axis=0))
        index = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        per_row = max(int(np.prod(a.shape)) for a in arrays)
        chunk = max(1, _MAX_RESAMPLED_ELEMENTS // per_row)
        stats = np.concatenate(
            [
                np.asarray(statistic(*(a[index[i : i + chunk]] for a in arrays), axis=1), dtype=np.float64).reshape(-1)
                for i in range(0, n_boot, chunk)
            ]
        )
        low, high = np.nanquantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return Estimate(value=value, low=float(low), high=float(high), level=float(level))


def _check_bootstrap_args(arrays: list[np.ndarray], n_boot: int, level: float) -> None:
    if not arrays:
        raise InputError("bootstrap: expected at least one per-sample array, received none.")
    if any(a.ndim == 0 for a in arrays):
        raise InputError("bootstrap: expected per-sample arrays with the sample on axis 0, received a scalar.")
    lengths = sorted({a.shape[0] for a in arrays})
    if len(lengths) > 1 or lengths[0] < 1:
        raise InputError(f"bootstrap: expected arrays with one non-zero number of samples, received lengths {lengths}.")
    if int(n_boot) < 1:
        raise InputError(f"bootstrap: expected n_boot >= 1, received {n_boot}.")
    if not 0.0 < level < 1.0:
        raise InputError(f"bootstrap: expected 0 < level < 1, received {level}; e.g. level=0.95.")


def rho(
    student_gap_norm: np.ndarray,
    teacher_gap_norm: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``rho = E||Delta_S|| / E||Delta_T||``, a ratio of means over samples as in DASH's evaluate (docs/design.md §2).

    Inputs are per-sample gap norms (already averaged over steps); 1 = calibrated, ~0 = collapsed.
    """
    return bootstrap(ratio_of_means, student_gap_norm, teacher_gap_norm, n_boot=n_boot, level=level, seed=seed)


# -- recorder Datasets -----------------------------------------------------------------------------
def rho_per_step(ds: xr.Dataset) -> xr.DataArray:
    """``rho`` at each sampling step: mean over samples of student ``gap_norm`` / that of the teacher."""
    if "step" not in ds.dims:
        raise InputError(
            "rho_per_step: expected a Dataset with a 'step' dim (a sampling run), received dims "
            f"{tuple(ds.dims)}; a data-probe Dataset has no steps, use summarize(ds)['rho']."
        )
    _require(ds, ("gap_norm",), pair=True)
    gap_norm = ds["gap_norm"]
    out = gap_norm.sel(model="student", drop=True).mean("sample") / gap_norm.sel(model="teacher", drop=True).mean("sample")
    return out.rename("rho").assign_attrs(long_name="student / teacher mean guidance-gap RMS", units="1")


def summarize(ds: xr.Dataset, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Estimate]:
    """Bootstrap estimates of the docs/design.md §2 diagnostics from a recorder Dataset.

    With a teacher and a student (``model`` holds both): ``rho, cos_delta, gap_mse, cond_error,
    uncond_error, rel_cond_error, rel_uncond_error, guided_error, amplification`` and, when recorded,
    ``divergence`` and ``nonfinite`` (fraction of samples with any NaN/Inf). ``rel_*_error`` is the mean
    branch error over the teacher's mean branch RMS. With one model: ``gap_norm``, ``rel_gap`` (mean
    gap_norm / mean cond_norm), ``parallel_fraction`` and ``nonfinite`` when recorded. Summaries of metrics added to
    :mod:`guidegap.metrics.registry` follow, where the Dataset holds them.
    """
    if "sample" not in ds.dims:
        raise InputError(f"summarize: expected a Dataset with a 'sample' dim, received dims {tuple(ds.dims)}.")
    boot = {"n_boot": n_boot, "level": level, "seed": seed}
    return _summarize(ds, "pair" if _is_pair(ds) else "teacher-free", boot)


def _summarize(ds: xr.Dataset, audit: str, boot: dict[str, Any]) -> dict[str, Estimate]:
    """The registered summaries of one kind of audit (:mod:`guidegap.metrics.registry`) that ``summarize`` estimates."""
    entries = [e for e in summaries(audit) if e.statistic is not None]
    pair = audit == "pair"
    required = [v.partition("@")[0] for e in entries if e.required for v in e.statistic.variables]
    _require(ds, tuple(dict.fromkeys(required)), pair=pair)
    one = ds if pair or "model" not in ds.dims else ds.isel(model=0, drop=True)
    out = {}
    for entry in entries:
        names = entry.statistic.variables
        if not all(name.partition("@")[0] in one for name in names):
            continue
        values = [_values(one, name, entry.statistic.kind) for name in names]
        statistic = ratio_of_means if entry.statistic.kind == "ratio" else mean
        out[entry.name] = bootstrap(statistic, *values, **boot)
    return out


def _values(ds: xr.Dataset, name: str, kind: str) -> np.ndarray:
    """Per-sample values of ``name`` (``"var@model"``: that model's), averaged over steps (``"any"``: 1 if any is set)."""
    variable, _, model = name.partition("@")
    da = ds[variable].sel(model=model, drop=True) if model else ds[variable]
    return _any_per_sample(da) if kind == "any" else _per_sample(da)


def _is_pair(ds: xr.Dataset) -> bool:
    return "model" in ds.dims and ds.sizes["model"] > 1


def _require(ds: xr.Dataset, names: tuple[str, ...], *, pair: bool) -> None:
    missing = [n for n in names if n not in ds]
    if missing:
        raise InputError(f"expected Dataset variables {list(names)}, missing {missing}; pass a Dataset from guidegap's recorder.")
    if pair:
        models = list(ds["model"].values) if "model" in ds.coords else []
        if "teacher" not in models or "student" not in models:
            raise InputError(f"expected a 'model' coordinate holding 'teacher' and 'student', received {models}.")


def _per_sample(da: xr.DataArray) -> np.ndarray:
    """NaN-aware mean over ``step`` (if present) -> float64 array over ``sample``."""
    if "step" in da.dims:
        da = da.mean("step", skipna=True)
    if da.dims != ("sample",):
        raise InputError(f"{da.name}: expected dims ('sample',) after averaging over 'step', received {da.dims}.")
    return np.asarray(da.values, dtype=np.float64)


def _any_per_sample(da: xr.DataArray) -> np.ndarray:
    """1.0 for a sample with any True over every other dim, else 0.0."""
    others = [d for d in da.dims if d != "sample"]
    return np.asarray(da.astype(bool).any(others).transpose("sample").values, dtype=np.float64)
