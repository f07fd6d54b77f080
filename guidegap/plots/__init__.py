"""Figures drawn from result Datasets (matplotlib/seaborn imported lazily). Also registers ``ds.guidegap``."""

import guidegap.accessor  # noqa: F401  (ds.guidegap forwards to these functions)
from guidegap.plots.collapse import plot_collapse
from guidegap.plots.fidelity import plot_fidelity
from guidegap.plots.training import plot_training_curves, plot_training_heatmap

__all__ = ["plot_collapse", "plot_fidelity", "plot_training_curves", "plot_training_heatmap"]
