"""Guidance regression checks during training: :class:`GuidanceMonitor` and its zarr training log.

Importing this package registers the ``ds.guidegap`` xarray accessor (:mod:`guidegap.accessor`).
"""

import guidegap.accessor  # noqa: F401  (registers ds.guidegap on the logs this package writes)
from guidegap.monitoring.log import load_log, log_summary, log_verdicts
from guidegap.monitoring.monitor import GuidanceCollapseError, GuidanceMonitor, is_main_process

__all__ = ["GuidanceCollapseError", "GuidanceMonitor", "is_main_process", "load_log", "log_summary", "log_verdicts"]
