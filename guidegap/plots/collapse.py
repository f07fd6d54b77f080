"""Moved to :mod:`guidegap.auditing.figure` (the audit's figure, beside its text); this old name is deprecated."""

import warnings

from guidegap.auditing.figure import plot_collapse

__all__ = ["plot_collapse"]

warnings.warn("guidegap.plots.collapse moved to guidegap.auditing.figure; import plot_collapse from there (or from "
              "guidegap.plots).", DeprecationWarning, stacklevel=2)
