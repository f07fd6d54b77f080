"""Recording along sampling trajectories (teacher-forced / free-running), on noised data (probe) and inside pipelines.

Names are imported lazily, so importing one module of this package (say, the noise schedules) stays light.
"""

from __future__ import annotations

from guidegap._lazy import lazy_names

_LAZY = {
    "GuidanceSchedule": "guidegap.recording.guidance",
    "as_guidance": "guidegap.recording.guidance",
    "constant": "guidegap.recording.guidance",
    "tag": "guidegap.recording.guidance",
    "trace": "guidegap.recording.trajectory",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
