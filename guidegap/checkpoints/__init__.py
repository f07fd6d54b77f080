"""Checkpoints as data: guidegap's own format and safe loading of models from paths."""

from guidegap.checkpoints.format import Checkpoint, atomic_torch_save, build_model, inference_copy, save_checkpoint
from guidegap.checkpoints.loading import LoadedModel, load_model, load_scheduler, read_checkpoint
from guidegap.checkpoints.resolve import ResolvedModel, resolve_model

__all__ = ["Checkpoint", "LoadedModel", "ResolvedModel", "atomic_torch_save", "build_model", "inference_copy", "load_model", "load_scheduler",
           "read_checkpoint", "resolve_model", "save_checkpoint"]
