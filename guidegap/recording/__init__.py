"""Recording along sampling trajectories (teacher-forced / free-running), on noised data (probe) and inside pipelines.

Names are imported lazily, so importing one module of this package (say, the noise schedules) stays light.
"""

from __future__ import annotations

from guidegap._lazy import lazy_names

_MODULES = {"guidance": ("GuidanceSchedule", "as_guidance", "constant", "tag"), "trajectory": ("trace", "trace_teacher_free")}
_LAZY = {name: f"guidegap.recording.{module}" for module, names in _MODULES.items() for name in names}
__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
