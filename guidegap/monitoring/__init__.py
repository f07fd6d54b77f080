"""Guidance regression checks during training: :class:`GuidanceMonitor` and the zarr store of its training log."""

from guidegap.monitoring.log import load_log, log_summary, log_verdicts
from guidegap.monitoring.monitor import GuidanceCollapseError, GuidanceMonitor, is_main_process

__all__ = ["GuidanceCollapseError", "GuidanceMonitor", "is_main_process", "load_log", "log_summary", "log_verdicts"]
