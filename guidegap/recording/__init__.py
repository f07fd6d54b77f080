"""Recording along sampling trajectories (teacher-forced / free-running) and on noised data (probe)."""

from guidegap.recording.guidance import GuidanceSchedule, as_guidance, constant, tag
from guidegap.recording.trajectory import trace

__all__ = ["GuidanceSchedule", "as_guidance", "constant", "tag", "trace"]
