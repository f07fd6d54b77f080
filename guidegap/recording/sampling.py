"""Moved to :mod:`guidegap.recording.sampler` (the one sampler loop; this module recorded nothing); deprecated."""

import warnings

from guidegap.recording.sampler import sample

__all__ = ["sample"]

warnings.warn("guidegap.recording.sampling moved to guidegap.recording.sampler; import sample from there.", DeprecationWarning,
              stacklevel=2)
