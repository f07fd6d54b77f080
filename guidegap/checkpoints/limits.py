"""Bounds on what a file may claim, checked before anything is allocated (docs/design.md §3: checkpoints are data).

A 1 KB edit of a ``config.json`` can ask for a model of billions of parameters or a million layers; the weights
beside it say how large the model really is. :func:`check_config` refuses structure that would hang the
constructor, and :func:`check_implied_size` builds the model on the ``meta`` device (no memory) and refuses a
config that implies more parameters than the weights hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guidegap.errors import InputError
from guidegap.files import human_bytes, require_regular_file  # named here before they moved
from guidegap.recording.schedulers import MAX_TRAIN_TIMESTEPS

__all__ = ["require_regular_file", "check_config", "check_implied_size", "state_numel", "human_bytes", "MAX_REPEATS",
           "MAX_POSITIONS"]

# Counts that multiply the number of sub-modules: the constructor's time grows with them, meta device or not.
MAX_REPEATS = {"layers_per_block": 64, "transformer_layers_per_block": 64, "num_layers": 512, "depth": 512}
MAX_LIST = 64  # block lists, channel lists
MAX_INT = 1 << 40
# A config may imply at most this many more weights than the file holds before the model is built at all.
SLACK_FACTOR, SLACK_NUMEL = 2, 1 << 22
# DiT computes its positional embedding (grid^2 x width, float64) in numpy while it is constructed.
MAX_POSITIONS = 1 << 24

def _ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v)]
    return []


def check_config(model_class: str, config: Mapping[str, Any], source: str) -> None:
    """Refuse configs whose counts would hang or overflow the constructor (before it runs)."""
    for key, value in config.items():
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
            raise InputError(f"{source}: config {key!r} lists {len(value)} entries (at most {MAX_LIST} are plausible); "
                             "the config does not describe a real model; re-save it.")
        if any(abs(i) > MAX_INT for i in _ints(value)):
            raise InputError(f"{source}: config {key!r} holds an integer above 2**40; re-save the model's config.")
        limit = MAX_REPEATS.get(key)
        if limit is not None and any(i > limit for i in _ints(value)):
            raise InputError(f"{source}: config {key!r} = {max(_ints(value))} exceeds {limit} (layers are built one by one); "
                             "the config does not describe a real model; re-save it.")
    steps = config.get("num_train_timesteps")
    if steps is not None and not isinstance(steps, bool) and isinstance(steps, (int, float)) and steps > MAX_TRAIN_TIMESTEPS:
        raise InputError(f"{source}: config 'num_train_timesteps' = {steps:g} exceeds {MAX_TRAIN_TIMESTEPS:,} (schedules are "
                         "built as arrays of that length); the config does not describe a real model; re-save it.")
    if model_class == "DiTTransformer2DModel":
        size, patch = config.get("sample_size") or 0, config.get("patch_size") or 1
        for key, value in (("sample_size", size), ("patch_size", patch)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{source}: a DiT's {key} must be an integer, received {value!r}; re-save the model's config.")
        width = int(config.get("num_attention_heads") or 0) * int(config.get("attention_head_dim") or 0)
        if patch > 0 and (size // patch) ** 2 * width > MAX_POSITIONS:  # both integers, checked above
            raise InputError(f"{source}: a DiT with sample_size {size}, patch_size {patch} and width {width} needs a positional "
                             f"table of {(size // patch) ** 2 * width:,} values; the config does not describe a real model.")


def state_numel(state: Mapping[str, Any], source: str = "the checkpoint") -> int:
    """Elements of all tensors in a state dict, refusing a tensor that claims more elements than its storage holds
    (``expand``-ed, stride 0: 2 KB can claim billions, which would then justify building a model that large)."""
    total = 0
    for key, value in state.items():
        if not hasattr(value, "numel"):
            continue
        storage = getattr(value, "untyped_storage", None)
        if storage is not None and value.numel() * value.element_size() > storage().nbytes():
            raise InputError(f"{source}: tensor {key!r} claims {value.numel():,} elements but its storage holds "
                             f"{storage().nbytes():,} bytes (an expanded view); save real tensors (tensor.contiguous()).")
        total += int(value.numel())
    return total


def check_implied_size(model_class: str, config: Mapping[str, Any], stored_numel: int, source: str) -> None:
    """Refuse a config that implies far more parameters than the weights hold (counted on the meta device).

    A small difference is left to the state-dict check, which names the keys that differ.
    """
    import torch

    from guidegap.checkpoints.format import build_model

    check_config(model_class, config, source)
    with torch.device("meta"):
        model = build_model(model_class, dict(config), source)
    implied = sum(int(t.numel()) for t in model.state_dict().values())
    if implied > SLACK_FACTOR * stored_numel + SLACK_NUMEL:
        raise InputError(f"{source}: the config implies a {model_class} of {implied:,} weights, but the file holds {stored_numel:,}; "
                         "the config does not belong to these weights; use the config saved with them.")
