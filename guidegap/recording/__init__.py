"""Recording along sampling trajectories (teacher-forced / free-running), on noised data (probe) and inside pipelines.

Names are imported lazily, so importing one module of this package (say, the noise schedules) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GuidanceSchedule": "guidegap.recording.guidance",
    "as_guidance": "guidegap.recording.guidance",
    "constant": "guidegap.recording.guidance",
    "tag": "guidegap.recording.guidance",
    "trace": "guidegap.recording.trajectory",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'guidegap.recording' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
