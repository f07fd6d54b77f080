"""Moved to :mod:`guidegap.recording.hooks` (recording inside pipelines is part of recording/); this old name is deprecated."""

import warnings

from guidegap.recording.hooks import HOOK_NAME, Call, HookError, RecordingHook, attach, forward_signature, remove_hooks

__all__ = ["HOOK_NAME", "Call", "HookError", "RecordingHook", "attach", "forward_signature", "remove_hooks"]

warnings.warn("guidegap.pipelines.hooks moved to guidegap.recording.hooks; import it from there.", DeprecationWarning, stacklevel=2)
