"""guidegap's checkpoint file: data only (tensors, numbers, strings), loadable with ``weights_only=True``.

A checkpoint is a ``torch.save``'d dict::

    {"format": "guidegap-checkpoint", "format_version": 1,
     "model_class": "UNet2DModel", "model_config": "<json>", "scheduler_config": "<json>" or "",
     "state_dict": {...}, "ema_state_dict": {...} or None, "tirt_lambda": Tensor or None,
     "optimizer": {...} or None, "rng_state": {...} or None, "step": int, "metadata": "<json>",
     "extras": {...}}

Configs are JSON strings, so nothing in the file needs arbitrary unpickling. Files are written to a
temporary file in the same folder and renamed, so a crash leaves the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from guidegap.atomic import atomic_path
from guidegap.denoisers.families import FAMILIES, buildable
from guidegap.errors import InputError

__all__ = ["FORMAT", "RUN_CHECKPOINT", "Checkpoint", "save_checkpoint", "inference_copy", "atomic_torch_save", "SUPPORTED_MODEL_CLASSES", "supported_model_classes",
           "build_model"]

RUN_CHECKPOINT = "checkpoint.pt"  # the file a training run keeps in its folder (--out), resumable, EMA weights inside

FORMAT, FORMAT_VERSION = "guidegap-checkpoint", 1
SUPPORTED_MODEL_CLASSES = ("UNet2DModel", "DiTTransformer2DModel", "MLPDenoiser")  # the built-in ones (supported_model_classes())


@dataclass
class Checkpoint:
    """The parsed contents of a guidegap checkpoint."""

    model_class: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    ema_state_dict: dict[str, torch.Tensor] | None = None
    scheduler_config: dict[str, Any] | None = None
    tirt_lambda: torch.Tensor | None = None
    optimizer: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # more training state: tensors, numbers, strings only

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_class": self.model_class,
            "model_config": json.dumps(_plain(self.model_config), sort_keys=True),
            "scheduler_config": json.dumps(_plain(self.scheduler_config), sort_keys=True) if self.scheduler_config else "",
            "state_dict": self.state_dict,
            "ema_state_dict": self.ema_state_dict,
            "tirt_lambda": self.tirt_lambda,
            "optimizer": self.optimizer,
            "rng_state": self.rng_state,
            "step": int(self.step),
            "metadata": json.dumps(_plain(self.metadata), sort_keys=True),
            "extras": self.extras,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> "Checkpoint":
        if raw.get("format") != FORMAT:
            raise InputError(f"{source}: expected a guidegap checkpoint (format={FORMAT!r}), received format={raw.get('format')!r}.")
        if raw.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{source}: checkpoint format version {raw.get('format_version')!r} is not supported (expected {FORMAT_VERSION}); "
                "upgrade guidegap."
            )
        try:
            configs = {name: json.loads(raw[name]) if raw.get(name) else None
                       for name in ("model_config", "scheduler_config", "metadata")}
            for name, value in configs.items():
                if not isinstance(value, (dict, type(None))) or (name == "model_config" and value is None):
                    raise InputError(f"{source}: the checkpoint's {name} must be a JSON object, received "
                                     f"{type(value).__name__}; re-save it with guidegap.")
            return cls(
                model_class=str(raw["model_class"]),
                model_config=configs["model_config"],
                state_dict=dict(raw["state_dict"]),
                ema_state_dict=dict(raw["ema_state_dict"]) if raw.get("ema_state_dict") else None,
                scheduler_config=configs["scheduler_config"],
                tirt_lambda=raw.get("tirt_lambda"),
                optimizer=raw.get("optimizer"),
                rng_state=raw.get("rng_state"),
                step=int(raw.get("step", 0)),
                metadata=configs["metadata"] or {},
                extras=dict(raw.get("extras") or {}),
            )
        except (KeyError, TypeError, ValueError, RecursionError) as error:
            raise InputError(f"{source}: the guidegap checkpoint is incomplete or damaged ({type(error).__name__}: "
                             f"{str(error)[:200]}).") from None


# diffusers lists a set of key names here, in hash order (which changes with PYTHONHASHSEED)
_SET_VALUED_KEYS = ("_use_default_values",)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a (diffusers) config: FrozenDict -> dict, tuples -> lists, private keys kept.

    Sets (and lists diffusers builds from sets) are sorted, so the same checkpoint always has the same bytes.
    """
    if value is None:
        return None
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): sorted(_plain(v), key=str) if k in _SET_VALUED_KEYS and isinstance(v, (list, tuple, set, frozenset))
                else _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the destination folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # Through a handle, torch names the archive "archive" instead of after the (random) temporary file, so the
        # same checkpoint always has the same bytes (and the same SHA-256, which keys teacher caches).
        torch.save(obj, handle)
    return path


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` atomically."""
    return atomic_torch_save(checkpoint.to_dict(), path)


def inference_copy(checkpoint: Checkpoint, dtype: torch.dtype = torch.float16, **metadata: Any) -> Checkpoint:
    """What an audit or a sampler needs of a training checkpoint: its EMA weights (its weights when it has no EMA)
    cast to ``dtype``, the noise schedule, TIRT and config; no optimizer, RNG or EMA copy. ``metadata`` is added."""
    weights = checkpoint.ema_state_dict or checkpoint.state_dict
    return Checkpoint(model_class=checkpoint.model_class, model_config=checkpoint.model_config,
                      state_dict={k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()},
                      scheduler_config=checkpoint.scheduler_config, tirt_lambda=checkpoint.tirt_lambda, step=checkpoint.step,
                      metadata={**checkpoint.metadata, "exported": f"{'EMA ' if checkpoint.ema_state_dict else ''}weights in "
                                f"{str(dtype).removeprefix('torch.')} (training state dropped)", **metadata})


def supported_model_classes() -> tuple[str, ...]:
    """Model classes a checkpoint may name: the buildable registered families and the oracle tier's MLP."""
    return (*buildable(), "MLPDenoiser")


def build_model(model_class: str, config: dict[str, Any], source: str) -> torch.nn.Module:
    """Instantiate a supported model from its config (no weights): a registered family's build, or the MLP."""
    supported = supported_model_classes()
    if model_class not in supported:
        raise InputError(f"{source}: model class {model_class!r} is not supported; expected one of {supported}.")
    if model_class == "MLPDenoiser":  # guidegap's own oracle-tier student
        from guidegap.oracle.mlp import MLPDenoiser

        try:
            return MLPDenoiser.from_config(config)
        except (TypeError, ValueError) as error:
            raise InputError(f"{source}: cannot build MLPDenoiser from the stored config ({error}).") from None
    try:
        return FAMILIES[model_class].build(dict(config))
    except Exception as error:  # diffusers raises many types for a bad config
        raise InputError(f"{source}: cannot build {model_class} from the stored config ({type(error).__name__}: {error}).") from None
