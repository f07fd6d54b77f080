"""Moved to :mod:`guidegap.denoisers.text_transformer` (every model adapter lives in denoisers/); this old name is deprecated."""

import warnings

from guidegap.denoisers.text_transformer import TextTransformerDenoiser

__all__ = ["TextTransformerDenoiser"]

warnings.warn("guidegap.pipelines.text_transformer moved to guidegap.denoisers.text_transformer; import it from there.",
              DeprecationWarning, stacklevel=2)
