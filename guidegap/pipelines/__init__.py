"""Record guidance inside unmodified diffusers pipelines, compare teacher and student pipelines, audit text UNets.

* :func:`record` (``guidegap.record``): a context manager that hooks a pipeline's denoiser and records both
  CFG branches at every call into a Dataset (:mod:`guidegap.recording.pipeline`).
* :class:`Layout` and :data:`PIPELINE_LAYOUTS`: the declared CFG batch layouts (:mod:`guidegap.recording.layouts`).
* :func:`record_pair`: teacher and student pipelines from the same seed -> pair metrics and a verdict.
* :func:`audit_text`: teacher/student ``UNet2DConditionModel`` with prompt and null embeddings -> a verdict.
* :func:`audit_pipelines`: text-to-image pipeline folders (SD, SDXL, LCM, PixArt-Alpha/Sigma, SD3; prompts encoded
  by each pipeline) -> a verdict, incl. ``guidance-distilled`` students (:mod:`guidegap.pipelines.text_audit`, :mod:`guidegap.pipelines.distilled`).

Names are imported lazily, so importing this package does not import diffusers.
"""

from __future__ import annotations

from guidegap._lazy import lazy_names

_LAZY = {
    "Layout": "guidegap.recording.layouts",
    "PIPELINE_LAYOUTS": "guidegap.recording.layouts",
    "default_layout": "guidegap.recording.layouts",
    "Recorder": "guidegap.recording.pipeline",
    "record": "guidegap.recording.pipeline",
    "record_pair": "guidegap.pipelines.pair",
    "TextEmbeddingDenoiser": "guidegap.denoisers.text_unet",
    "audit_text": "guidegap.pipelines.text",
    "TextTransformerDenoiser": "guidegap.denoisers.text_transformer",
    "audit_pipelines": "guidegap.pipelines.text_audit",
    "audit_generators": "guidegap.pipelines.text_audit",
    "read_prompts": "guidegap.pipelines.prompts",
    "HookError": "guidegap.recording.hooks",
    "remove_hooks": "guidegap.recording.hooks",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
