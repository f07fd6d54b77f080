"""Guidance regression checks during training: :class:`GuidanceMonitor` and the zarr store of its training log.

Importing this package does not register ``ds.guidegap`` on the logs it reads; ``import guidegap.accessor`` does.
"""

from guidegap.monitoring.log import load_log, log_summary, log_verdicts
from guidegap.monitoring.monitor import GuidanceCollapseError, GuidanceMonitor, is_main_process

__all__ = ["GuidanceCollapseError", "GuidanceMonitor", "is_main_process", "load_log", "log_summary", "log_verdicts"]
