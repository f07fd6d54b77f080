"""Guidance-fidelity curves: how well samples drawn at guidance scale w match their requested class.

Expected variables (the convention :func:`plot_fidelity` and ``ds.guidegap.plot_fidelity()`` read):

====================  ====================  ===========================================================
variable              dims                  meaning
====================  ====================  ===========================================================
``w``                 w                     the guidance scales (coordinate; 1 = no guidance)
``fidelity_<metric>``  [model,] w            a fidelity metric of samples drawn at w, e.g.
                                            ``fidelity_accuracy``: fraction of samples a reference
                                            classifier assigns to the requested label (units "1")
``fidelity_<metric>_ci``  [model,] w, bound  optional confidence interval (``bound`` = low, high)
====================  ====================  ===========================================================

One panel per metric, one line per ``model`` (teacher, students, ...). A healthy student follows its
teacher's curve as w grows; a collapsed one stays flat at its w = 1 value, because guidance does nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from guidegap.errors import InputError

__all__ = ["plot_fidelity", "fidelity_variables"]

PREFIX = "fidelity_"


def fidelity_variables(ds: xr.Dataset) -> list[str]:
    """Names of the ``fidelity_<metric>`` variables over a ``w`` dim (CIs excluded)."""
    return [str(n) for n, v in ds.data_vars.items()
            if str(n).startswith(PREFIX) and not str(n).endswith("_ci") and "w" in v.dims]


def plot_fidelity(ds: xr.Dataset, title: str | None = None) -> Any:
    """Draw every ``fidelity_<metric>`` against w (see the module docstring); returns the matplotlib ``Figure``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = fidelity_variables(ds)
    if not names:
        present = sorted(str(n) for n in ds.data_vars)
        raise InputError(
            "plot_fidelity: expected guidance-fidelity variables named 'fidelity_<metric>' over a 'w' dim (e.g. "
            f"fidelity_accuracy: accuracy of a reference classifier on samples drawn at guidance scale w), found none "
            f"among {present[:12]}{' ...' if len(present) > 12 else ''}; see guidegap.plots.fidelity."
        )
    palette = sns.color_palette("colorblind")
    w = np.asarray(ds["w"].values, dtype=float)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig, axes = plt.subplots(1, len(names), figsize=(4.8 * len(names), 3.8), squeeze=False, layout="constrained")
        for ax, name in zip(axes[0], names):
            da = ds[name]
            ci = ds.get(f"{name}_ci")
            models = list(np.asarray(da["model"].values)) if "model" in da.dims else [None]
            for i, model in enumerate(models):
                one = da.sel(model=model) if model is not None else da
                color = palette[i % len(palette)]
                ax.plot(w, one.transpose("w").values, marker="o", markersize=3.5, color=color, label=str(model or name))
                if ci is not None:
                    band = (ci.sel(model=model) if model is not None else ci).transpose("w", "bound").values
                    ax.fill_between(w, band[:, 0], band[:, 1], color=color, alpha=0.2, linewidth=0)
            ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
            metric = name[len(PREFIX):]
            ax.set(xlabel="guidance scale w (1 = no guidance)", ylabel=da.attrs.get("long_name", metric),
                   title=f"{metric} vs w")
            ax.legend(loc="best", fontsize="small")
        fig.suptitle(title or "guidance fidelity")
    return fig
