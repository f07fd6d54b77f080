"""Moved to :mod:`guidegap.recording.pipeline` (recording inside pipelines is part of recording/); this old name is deprecated."""

import warnings

from guidegap.recording.pipeline import Recorder, assemble, check_recorded, record, resolve_targets

__all__ = ["Recorder", "assemble", "check_recorded", "record", "resolve_targets"]

warnings.warn("guidegap.pipelines.recorder moved to guidegap.recording.pipeline; import it from there.", DeprecationWarning, stacklevel=2)
