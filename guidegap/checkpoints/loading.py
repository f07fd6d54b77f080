"""Load models from paths safely: checkpoints are data, never code (DESIGN.md §3).

Accepted: a diffusers model folder (``save_pretrained`` of ``UNet2DModel`` / ``DiTTransformer2DModel``, or a
pipeline folder with ``unet/`` or ``transformer/``), a guidegap checkpoint file, or a plain state dict
(``.pt`` / ``.pth`` / ``.bin`` / ``.safetensors``) with a user-named factory ``package.module:function``.
Weights load via safetensors or ``torch.load(weights_only=True)``; a file that needs arbitrary unpickling
is refused unless ``trust_pickle=True``.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guidegap.checkpoints.format import FORMAT, Checkpoint, build_model
from guidegap.errors import InputError

__all__ = ["LoadedModel", "load_model", "read_checkpoint", "load_scheduler"]

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass
class LoadedModel:
    """A model read from disk, with the noise schedule stored beside it (``None`` when there was none)."""

    model: Any
    scheduler_config: dict[str, Any] | None
    source: str
    kind: str  # "diffusers-folder", "guidegap-checkpoint", "state-dict"
    checkpoint: Checkpoint | None = None


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "GLOBAL" in text or "nsupported global" in text or "not an allowed global" in text:
            raise InputError(
                f"{path}: refusing to unpickle arbitrary objects (the file stores code, not just tensors); "
                "re-save it as a state dict or safetensors, or pass --trust-pickle (trust_pickle=True) only if you trust its author."
            ) from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated); re-save or re-download it.") from None
    except Exception as error:  # a damaged file makes the unpickler raise almost anything (IndexError, KeyError, ...)
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}); re-save or re-download it.") from None


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({type(error).__name__}); re-save it.") from None


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Read a guidegap checkpoint file (as written by the trainer)."""
    path = Path(path)
    raw = _torch_load(path, trust_pickle)
    if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
        raise InputError(f"{path}: expected a guidegap checkpoint, received {type(raw).__name__} without format={FORMAT!r}.")
    return Checkpoint.from_dict(dict(raw), str(path))


def _factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"expected a factory as package.module:function, received {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"cannot import the factory module {module_name!r} ({error}); check --factory and PYTHONPATH.") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"{module_name!r} has no callable {attr!r}; check --factory.")
    return fn


def _load_state_dict(model: torch.nn.Module, state: Mapping[str, Any], source: str) -> None:
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"{source}: expected a state dict (names -> tensors), received other objects.")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"{source}: the weights do not fit the model ({first}); check the factory or the file.") from None


def _diffusers_folder(path: Path) -> LoadedModel:
    model_dir = path
    for sub in ("unet", "transformer"):
        if (path / sub / "config.json").is_file():
            model_dir = path / sub
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path}: a folder without config.json is not a diffusers model folder; pass the save_pretrained folder.")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{config_file}: not valid JSON; re-save the model with save_pretrained.") from None
    model_class = config.get("_class_name")
    model = build_model(model_class, config, str(path))
    weights = [model_dir / name for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin") if (model_dir / name).is_file()]
    if not weights:
        raise InputError(f"{model_dir}: no diffusion_pytorch_model.safetensors or .bin; re-save the model with save_pretrained.")
    state = _load_safetensors(weights[0])[0] if weights[0].suffix == ".safetensors" else _torch_load(weights[0], False)
    _load_state_dict(model, state, str(weights[0]))
    return LoadedModel(model.eval(), _scheduler_beside(path, model_dir), str(path), "diffusers-folder")


def _scheduler_beside(path: Path, model_dir: Path) -> dict[str, Any] | None:
    for candidate in (path / "scheduler" / "scheduler_config.json", model_dir / "scheduler_config.json", path / "scheduler_config.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError:
                raise InputError(f"{candidate}: not valid JSON; re-save the scheduler with save_pretrained.") from None
    return None


def load_model(
    path: str | Path, *, factory: str | None = None, trust_pickle: bool = False, use_ema: bool = True
) -> LoadedModel:
    """Load a model from ``path`` (see the module docstring); ``use_ema`` picks EMA weights when stored."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {str(path)!r}; pass a checkpoint file or a diffusers model folder.")
    if path.is_dir():
        return _diffusers_folder(path)
    if path.suffix == ".safetensors":
        state, _ = _load_safetensors(path)
        return _with_factory(state, factory, path)
    if path.suffix not in _TORCH_SUFFIXES:
        raise InputError(f"{path}: unknown checkpoint type {path.suffix!r}; expected a folder, .safetensors, or one of {_TORCH_SUFFIXES}.")
    raw = _torch_load(path, trust_pickle)
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT:
        checkpoint = Checkpoint.from_dict(dict(raw), str(path))
        model = build_model(checkpoint.model_class, checkpoint.model_config, str(path))
        weights = checkpoint.ema_state_dict if use_ema and checkpoint.ema_state_dict else checkpoint.state_dict
        _load_state_dict(model, weights, str(path))
        return LoadedModel(model.eval(), checkpoint.scheduler_config, str(path), "guidegap-checkpoint", checkpoint)
    if isinstance(raw, torch.nn.Module):  # only reachable with trust_pickle=True
        return LoadedModel(raw.eval(), None, str(path), "pickled-module")
    if isinstance(raw, Mapping):
        state = raw.get("state_dict", raw) if isinstance(raw.get("state_dict"), Mapping) else raw
        return _with_factory(state, factory, path)
    raise InputError(f"{path}: expected a guidegap checkpoint or a state dict, received {type(raw).__name__}.")


def _with_factory(state: Mapping[str, Any], factory: str | None, path: Path) -> LoadedModel:
    if factory is None:
        raise InputError(
            f"{path}: a plain state dict holds no architecture; pass --factory package.module:function "
            "(factory=...) that builds the model."
        )
    model = _factory(factory)()
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"the factory {factory!r} returned {type(model).__name__}; it must return a torch.nn.Module.")
    _load_state_dict(model, state, str(path))
    return LoadedModel(model.eval(), None, str(path), "state-dict")


def load_scheduler(config: dict[str, Any] | None, name: str | None = None) -> Any:
    """The sampling scheduler: ``name`` (or DDIM) built on the stored noise schedule, else on guidegap's default."""
    from guidegap.recording.schedulers import default_scheduler, make_scheduler, scheduler_from_config

    base = default_scheduler()
    if config:
        import diffusers

        cls = getattr(diffusers, str(config.get("_class_name", "DDIMScheduler")), None) or diffusers.DDIMScheduler
        try:
            stored = scheduler_from_config(cls, config)
        except Exception as error:
            raise InputError(f"the stored scheduler config cannot be used ({type(error).__name__}: {error}).") from None
        base = scheduler_from_config(diffusers.DDIMScheduler, stored.config, clip_sample=False)
    return make_scheduler(name or "ddim", base=base)
