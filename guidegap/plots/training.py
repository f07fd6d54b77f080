"""Figures of a GuidanceMonitor training log: where along the sampling trajectory guidance breaks, per check.

``plot_training_heatmap``: a per-step metric (rho by default) as sampling step x training step, with the
verdict of each check on a strip above. ``plot_training_curves``: the summary (rho, gap cosine, relative
branch errors) with CIs against the training step and the verdict thresholds.
matplotlib and seaborn are imported here only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from guidegap.auditing.verdicts import VERDICT_RECORDS

__all__ = ["plot_training_heatmap", "plot_training_curves", "VERDICT_COLORS", "verdict_colors"]


def verdict_colors() -> dict[str, int]:
    """Colorblind palette index (seaborn "colorblind") per verdict, from the verdicts' records."""
    return {name: record.colour for name, record in VERDICT_RECORDS.items()}


VERDICT_COLORS = verdict_colors()  # the built-in verdicts' (kept for readers of this name)


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly unevenly spaced) centres, for pcolormesh."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[1:] + values[:-1]) / 2
    return np.concatenate([[values[0] - (mid[0] - values[0])], mid, [values[-1] + (values[-1] - mid[-1])]])


def _verdict_strip(ax: Any, steps: np.ndarray, verdicts: np.ndarray, palette: Any) -> None:
    from matplotlib.patches import Patch

    edges = _edges(steps)
    colors = verdict_colors()
    present = []
    for i, verdict in enumerate(verdicts):
        color = palette[colors.get(str(verdict), 7)]
        ax.axvspan(edges[i], edges[i + 1], color=color, linewidth=0)
        if verdict not in present:
            present.append(str(verdict))
    handles = [Patch(color=palette[colors.get(v, 7)], label=v) for v in present]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.02), ncol=len(handles), fontsize="small",
              frameon=False, title=None, borderaxespad=0)
    ax.set_yticks([])
    ax.set_ylabel("verdict", rotation=0, ha="right", va="center")


def plot_training_heatmap(ds: xr.Dataset, variable: str = "rho", *, model: str = "student", cmap: Any = None,
                          title: str | None = None) -> Any:
    """Heatmap of a per-step log variable (``"rho"``, ``"gap_norm"``, ``"gap_cos"``, ``"cond_error"``, ...).

    x: training step of each check; y: sampling step, high noise at the top, its timestep on the right.
    ``rho`` uses a diverging map centred on 1 (calibrated), from 0 (collapsed, red) to 2 and above (blue, the colour
    saturates: near t = 0 both gaps vanish and their ratio is noisy); the verdict thresholds are marked on the
    colour bar. Returns the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import TwoSlopeNorm

    from guidegap.auditing.judge import thresholds_of
    from guidegap.results.training_log import TRAINING_STEP, is_probe_log, per_step_variable

    da = per_step_variable(ds, variable, model=model)
    values = np.asarray(da.values, dtype=float)
    steps = np.asarray(ds[TRAINING_STEP].values)
    sampling = np.asarray(ds["step"].values)
    is_rho = str(da.name).startswith("rho")
    palette = sns.color_palette("colorblind")
    with sns.axes_style("white"), sns.plotting_context("notebook", font_scale=0.85):
        fig, (strip, ax) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True, height_ratios=[1, 9], layout="constrained")
        if is_rho:  # 0 (collapsed) red, 1 (calibrated) white, >= 2 (twice the teacher's gap) saturated blue
            top = 2.0
            norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top)
            cmap = cmap or sns.color_palette("vlag_r", as_cmap=True)
        else:
            norm = None
            cmap = cmap or sns.color_palette("rocket", as_cmap=True)
        mesh = ax.pcolormesh(_edges(steps), _edges(sampling), np.ma.masked_invalid(values), cmap=cmap, norm=norm,
                             shading="flat")
        ax.set_ylim(_edges(sampling)[-1], _edges(sampling)[0])  # step 0 (pure noise) at the top
        label = "rho = E|Δ_S| / E|Δ_T| (1 = calibrated, 0 = collapsed)" if is_rho else \
            f"{da.attrs.get('long_name', da.name)}" + (f" ({model})" if "gap_norm" in str(da.name) else "")
        bar = fig.colorbar(mesh, ax=[strip, ax], label=label, pad=0.02, extend="max" if is_rho else "neither")
        if is_rho:
            th = thresholds_of(ds)
            for level in (th.collapsed_rho, th.rho_low, th.rho_high):
                if level <= top:  # an open band's top (inf) is not drawn
                    bar.ax.axhline(level, color="black", linewidth=0.8, linestyle="--")
        ax.set(xlabel="training step", ylabel="timestep bin of the data probe (high noise → data)" if is_probe_log(ds)
               else "sampling step (high noise → data)")
        timesteps = np.asarray(ds["timestep"].values)
        twin = ax.twinx()
        twin.set_ylim(ax.get_ylim())
        ticks = sampling[:: max(1, len(sampling) // 5)]
        twin.set_yticks(ticks, [f"{int(timesteps[i])}" if float(timesteps[i]).is_integer() else f"{timesteps[i]:.3g}"
                                for i in np.searchsorted(sampling, ticks)])
        twin.set_ylabel("timestep t")
        if "verdict" in ds:
            _verdict_strip(strip, steps, np.asarray(ds["verdict"].values), palette)
        else:
            strip.set_axis_off()
        w = np.unique(np.asarray(ds["guidance_scale"].values)) if "guidance_scale" in ds.coords else []
        w_text = f", w = {w[0]:g}" if len(w) == 1 else ""
        fig.suptitle(title or f"{'rho' if is_rho else variable} per sampling step across training{w_text}")
    return fig


def plot_training_curves(ds: xr.Dataset, title: str | None = None) -> Any:
    """rho, the gap cosine and the relative branch errors (with CIs) against the training step; returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from guidegap.auditing.figure import shade_rho_band
    from guidegap.auditing.judge import thresholds_of
    from guidegap.results.training_log import TRAINING_STEP, require_log

    require_log(ds, "plot_training_curves")
    th = thresholds_of(ds)
    x = np.asarray(ds[TRAINING_STEP].values)
    palette = sns.color_palette("colorblind")

    def line(ax: Any, name: str, label: str, color: Any) -> None:
        if name not in ds:
            return
        ax.plot(x, ds[name].values, marker="o", markersize=3, color=color, label=label)
        if f"{name}_ci" in ds:
            ci = ds[f"{name}_ci"].transpose(TRAINING_STEP, "bound").values
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=color, alpha=0.2, linewidth=0)

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True, layout="constrained")
        a.axhline(th.collapsed_rho, color=palette[3], linestyle="--", linewidth=1, label="collapse threshold")
        line(a, "rho", "rho", palette[0])
        a.set(title="gap ratio rho", ylabel="E|Δ_S| / E|Δ_T|")
        a.set_ylim(bottom=0)
        shade_rho_band(a, th, palette[2])
        if th.min_cos > -1:  # -1: the cosine rule is off
            b.axhline(th.min_cos, color=palette[3], linestyle="--", linewidth=1, label="min cosine")
        line(b, "cos_delta", "gap cosine", palette[0])
        b.set(title="gap direction", ylabel="cos(Δ_S, Δ_T)")
        if np.isfinite(th.max_rel_branch_error):  # inf: the branch-error rule is off
            c.axhline(th.max_rel_branch_error, color=palette[3], linestyle="--", linewidth=1, label="max branch error")
        line(c, "rel_cond_error", "cond", palette[0])
        line(c, "rel_uncond_error", "uncond", palette[1])
        c.set(title="branch errors / teacher", ylabel="relative RMS error", yscale="log")
        for ax in (a, b, c):
            ax.set_xlabel("training step")
            ax.legend(loc="best", fontsize="small")
        fig.suptitle(title or "guidance checks during training")
    return fig
