"""Figures drawn from result Datasets (matplotlib/seaborn imported lazily)."""

from guidegap.plots.collapse import plot_collapse

__all__ = ["plot_collapse"]
