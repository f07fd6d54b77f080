"""``ds.guidegap``: a short xarray accessor over guidegap's results, forwarding to the real functions.

Works on audit / recording Datasets (dims ``sample``, ``step``, ``model``; e.g. ``guidegap.load_dataset``)
and on GuidanceMonitor training logs (a ``training_step`` dim; ``guidegap.load_log``)::

    import guidegap
    ds = guidegap.load_dataset("audit.nc")   # any guidegap.<name> that makes or reads Datasets registers ds.guidegap
    ds.guidegap.verdict()               # 'collapsed'   (thresholds from ds.attrs, else the defaults)
    ds.guidegap.summary()["rho"]        # Estimate(value, low, high, level)
    ds.guidegap.plot_collapse()
    log = guidegap.load_log("runs/x/guidance.zarr")
    log.guidegap.plot_training_heatmap()   # rho per sampling step x training step

Registration happens on import of this module, which imports only xarray; it is imported from one place, the
``guidegap`` face, the first time a name that makes or reads Datasets is used (``guidegap.audit``, ``.trace``,
``.load_dataset``, ``.load_log``, ...): ``import guidegap`` itself never imports xarray (CLI start-up). Code that
imports the submodules directly (``from guidegap.results import load_dataset``) does not register it: it adds
``import guidegap.accessor`` for ``ds.guidegap``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

from guidegap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from guidegap.auditing.verdicts import Thresholds
    from guidegap.metrics.summary import Estimate

__all__ = ["GuidegapAccessor"]


@xr.register_dataset_accessor("guidegap")
class GuidegapAccessor:
    """Verdict, summaries and plots of a guidegap Dataset (an audit or a training log)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    # -- what it is ---------------------------------------------------------------------------------
    @property
    def is_log(self) -> bool:
        """True for a GuidanceMonitor training log (``training_step`` dim)."""
        from guidegap.results.training_log import is_log

        return is_log(self._ds)

    @property
    def thresholds(self) -> "Thresholds":
        """The verdict thresholds stored in ``attrs['thresholds']``, else the docs/design.md §2 defaults."""
        from guidegap.auditing.judge import thresholds_of

        return thresholds_of(self._ds)

    # -- verdict and numbers ------------------------------------------------------------------------
    def verdict(self, thresholds: "Thresholds | None" = None, n_boot: int = 1000) -> "str | xr.DataArray":
        """The verdict recomputed from the data (a string; per check, a DataArray over ``training_step``, for a log)."""
        from guidegap.auditing.judge import judge, judge_log

        th = thresholds if thresholds is not None else self.thresholds
        if self.is_log:
            return judge_log(self._ds, th)
        return judge(self._ds, th, n_boot=n_boot, phases=False).verdict

    def summary(self, n_boot: int = 1000, seed: int | None = None) -> "dict[str, Estimate] | pd.DataFrame":
        """``guidegap.summarize(ds)`` (Estimates with CIs); for a log, one DataFrame row per check."""
        from guidegap.metrics.summary import summarize
        from guidegap.results.schema import seed_of
        from guidegap.results.training_log import log_summary

        if self.is_log:
            return log_summary(self._ds)
        return summarize(self._ds, n_boot=n_boot, seed=seed_of(self._ds) if seed is None else seed)

    def rho_per_step(self) -> xr.DataArray:
        """rho at each sampling step (``guidegap.metrics.rho_per_step``); for a log, ``(training_step, step)``."""
        from guidegap.metrics.summary import rho_per_step

        if self.is_log:
            return self._ds["rho_per_step"]
        return rho_per_step(self._ds)

    def verdicts(self, thresholds: "Thresholds | None" = None) -> xr.DataArray:
        """Alias of :meth:`verdict` for a log (one per check)."""
        from guidegap.auditing.judge import judge_log

        return judge_log(self._ds, thresholds, caller="verdicts")

    # -- plots (each returns a matplotlib Figure) -----------------------------------------------------
    def plot_collapse(self, title: str | None = None) -> Any:
        """Collapse curves of an audit (:func:`guidegap.plot_collapse`)."""
        from guidegap.auditing.figure import plot_collapse

        if self.is_log:
            raise InputError("plot_collapse: this is a training log (means over samples per check), not an audit; use "
                             "plot_training_heatmap() or plot_training_curves(), or plot_collapse() on a stored audit.")
        return plot_collapse(self._ds, self.thresholds, title=title)

    def plot_training_heatmap(self, variable: str = "rho", **kwargs: Any) -> Any:
        """A per-step variable as sampling step x training step (:func:`guidegap.plots.plot_training_heatmap`)."""
        from guidegap.plots.training import plot_training_heatmap

        return plot_training_heatmap(self._ds, variable, **kwargs)

    def plot_training_curves(self, **kwargs: Any) -> Any:
        """rho, gap cosine and branch errors against the training step (:func:`guidegap.plots.plot_training_curves`)."""
        from guidegap.plots.training import plot_training_curves

        return plot_training_curves(self._ds, **kwargs)

    def plot_fidelity(self, **kwargs: Any) -> Any:
        """Guidance-fidelity curves, ``fidelity_<metric>`` over ``w`` (:func:`guidegap.plots.plot_fidelity`)."""
        from guidegap.plots.fidelity import plot_fidelity

        return plot_fidelity(self._ds, **kwargs)
