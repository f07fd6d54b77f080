"""The audit's figure, its collapse curves: where along the sampling trajectory guidance breaks.

Pair audits: per-step rho with the healthy band, gap norms of teacher and student, amplification of the
student's error by guidance, and the free-running divergence. Teacher-free audits: gap norm, gap relative
to eps_c, the samples' response to guidance, and the parallel fraction.
The figure of a report, as :mod:`guidegap.auditing.render` is its text (``guidegap.plot_collapse``, ``report.plot``,
``ds.guidegap.plot_collapse``). matplotlib and seaborn are imported inside the function, so ``import guidegap`` stays light.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from guidegap.auditing.verdicts import Thresholds
from guidegap.errors import InputError
from guidegap.metrics.summary import rho_per_step
from guidegap.results.schema import is_probe

__all__ = ["plot_collapse"]


def _band(ax: Any, x: np.ndarray, da: xr.DataArray, label: str, color: Any) -> None:
    """Mean over samples with the 10-90% band across samples."""
    values = np.asarray(da.transpose("sample", "step").values, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (e.g. amplification of a zero error)
        mean = np.nanmean(values, axis=0)
        low, high = np.nanpercentile(values, [10, 90], axis=0)
    ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


_OPEN_BAND_TOP = 1.25  # where the rho band has no upper bar, the axis is scaled as for docs/design.md §2's band


def _rho_axis(ax: Any, steps: np.ndarray, rho: np.ndarray, rho_high: float, color: Any) -> None:
    """Linear axis up to twice the healthy band's top, marking the few steps above it (rho spikes where the
    teacher's gap vanishes, t -> 0); a log axis when most steps are far off (a miscalibrated student), so the
    values stay readable instead of all sitting on the cap. A band without a top (``rho_high`` inf) is scaled as
    the design band is."""
    top = 2.0 * (rho_high if np.isfinite(rho_high) else _OPEN_BAND_TOP)
    finite = rho[np.isfinite(rho) & (rho > 0)]
    if finite.size and (finite > top).mean() > 0.25:
        ax.set_yscale("log")
        ax.set_ylim(min(0.2, float(finite.min()) * 0.8), max(2.0, float(finite.max()) * 1.3))
        ax.set_ylabel("rho = E|Δ_S| / E|Δ_T| (log)")
        return
    ax.set_ylim(0, max(1.5, min(top, float(finite.max()) * 1.1)) if finite.size else 1.5)
    clipped = np.isfinite(rho) & (rho > ax.get_ylim()[1])
    if clipped.any():
        ax.plot(steps[clipped], np.full(clipped.sum(), ax.get_ylim()[1]), "^", color=color, clip_on=False,
                label=f"above {ax.get_ylim()[1]:.2g} (max {finite.max():.3g})")


def shade_rho_band(ax: Any, th: Thresholds, color: Any) -> None:
    """Shade the healthy rho band on an axis whose limits are set: from the higher of ``rho_low`` and
    ``collapsed_rho`` (the collapse rule decides below it) up to ``rho_high``, or to the axis's top where the band
    has none (``rho_high`` inf); the limits stay as they are."""
    bottom, top = ax.get_ylim()
    ax.axhspan(max(th.rho_low, th.collapsed_rho), min(th.rho_high, top), color=color, alpha=0.15, label="healthy band")
    ax.set_ylim(bottom, top)


def plot_collapse(ds: xr.Dataset, thresholds: Thresholds | None = None, title: str | None = None) -> Any:
    """Draw the collapse curves of an audit Dataset; returns the matplotlib ``Figure``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if is_probe(ds):
        raise InputError("a data-probe audit has no trajectory to draw collapse curves along; plot a trajectory audit "
                         "(without probe data), or read the probe's per-phase table in the report.")
    th = thresholds or Thresholds()
    steps = np.asarray(ds["step"].values)
    palette = sns.color_palette("colorblind")
    pair = ds.sizes.get("model", 1) > 1
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, layout="constrained")
        (a, b), (c, d) = axes
        if pair:
            rho = rho_per_step(ds)
            a.axhline(th.collapsed_rho, color=palette[3], linestyle="--", linewidth=1, label="collapse threshold")
            a.plot(steps, rho.values, color=palette[0], marker="o", markersize=2.5, label="rho")
            a.set(ylabel="rho = E|Δ_S| / E|Δ_T|", title="gap ratio per step")
            _rho_axis(a, steps, rho.values, th.rho_high, palette[0])
            shade_rho_band(a, th, palette[2])
            _band(b, steps, ds["gap_norm"].sel(model="teacher"), "teacher", palette[0])
            _band(b, steps, ds["gap_norm"].sel(model="student"), "student", palette[1])
            b.set(ylabel="RMS(eps_c - eps_u)", title="guidance gap")
            _band(c, steps, ds["amplification"], "student error at w / at w=1", palette[4])
            c.plot(steps, ds["guidance_scale"].values, color="grey", linestyle=":", label="w")
            c.set(ylabel="amplification", title="how guidance multiplies the error")
            if "divergence" in ds:
                _band(d, steps, ds["divergence"], "RMS(x_S - x_T)", palette[3])
                d.set(title="free-running divergence", ylabel="RMS state distance")
            else:
                _band(d, steps, ds["cond_error"], "cond", palette[0])
                _band(d, steps, ds["uncond_error"], "uncond", palette[1])
                d.set(title="branch errors", ylabel="RMS error")
        else:
            one = ds.isel(model=0)
            _band(a, steps, one["gap_norm"], "gap", palette[1])
            a.set(ylabel="RMS(eps_c - eps_u)", title="guidance gap")
            _band(b, steps, one["gap_norm"] / one["cond_norm"], "gap / eps_c", palette[1])
            b.axhline(th.min_rel_gap, color=palette[3], linestyle="--", linewidth=1, label="vanished")
            b.set(ylabel="RMS gap / RMS eps_c", title="relative gap", yscale="log")
            if "guidance_response" in ds:
                _band(c, steps, ds["guidance_response"], "RMS(x_w - x_1)", palette[4])
            c.set(ylabel="RMS state distance", title="response of the samples to w")
            _band(d, steps, one["parallel_fraction"], "parallel fraction", palette[2])
            d.set(ylabel="|Δ_par| / |Δ|", title="gap parallel to eps_c (APG)")
        for ax in axes.flat:
            ax.legend(loc="best", fontsize="small")
        for ax in axes[1]:
            ax.set_xlabel("sampling step (high noise → data)")
        verdict = ds.attrs.get("verdict")
        heading = title or "guidegap audit"
        fig.suptitle(f"{heading}: {verdict}" if verdict else heading)
    return fig
