"""Moved to :mod:`guidegap.recording.layouts` (recording inside pipelines is part of recording/); this old name is deprecated."""

import warnings

from guidegap.recording.layouts import BATCHED_CONTEXTS, CONTEXT_BRANCHES, ORDERS, PIPELINE_LAYOUTS, Layout, default_layout, eps_channels

__all__ = ["BATCHED_CONTEXTS", "CONTEXT_BRANCHES", "ORDERS", "PIPELINE_LAYOUTS", "Layout", "default_layout", "eps_channels"]

warnings.warn("guidegap.pipelines.layouts moved to guidegap.recording.layouts; import it from there.", DeprecationWarning, stacklevel=2)
