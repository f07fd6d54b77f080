"""Figures drawn from result Datasets (matplotlib/seaborn imported lazily); the audit's own figure is handed on."""

from guidegap.auditing.figure import plot_collapse
from guidegap.plots.fidelity import plot_fidelity
from guidegap.plots.training import plot_training_curves, plot_training_heatmap

__all__ = ["plot_collapse", "plot_fidelity", "plot_training_curves", "plot_training_heatmap"]
