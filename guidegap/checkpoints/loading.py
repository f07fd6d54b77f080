"""Load models from paths safely: checkpoints are data, never code (docs/design.md §3).

Accepted: a diffusers model folder (``save_pretrained`` of ``UNet2DModel`` / ``DiTTransformer2DModel``, or a
pipeline folder with ``unet/`` or ``transformer/``), a guidegap checkpoint file or training-run folder (its
``checkpoint.pt``), or a plain state dict
(``.pt`` / ``.pth`` / ``.bin`` / ``.safetensors``) with a user-named factory ``package.module:function``.
Weights load via safetensors or ``torch.load(weights_only=True)``; a file that needs arbitrary unpickling
is refused unless ``trust_pickle=True``. Before anything is allocated, sizes the files claim are bounded
(:mod:`guidegap.checkpoints.archive`, :mod:`guidegap.checkpoints.limits`), only regular files are read, and the
hub is offline (:mod:`guidegap.checkpoints.offline`).
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

from guidegap.checkpoints.archive import check_torch_archive
from guidegap.checkpoints.format import FORMAT, RUN_CHECKPOINT, Checkpoint, build_model
from guidegap.checkpoints.limits import check_implied_size, state_numel
from guidegap.checkpoints.offline import hub_offline
from guidegap.errors import InputError, first_line
from guidegap.files import require_regular_file
from guidegap.recording.schedulers import check_same_schedule  # re-exported: the audit's refusal of two schedules

__all__ = ["LoadedModel", "load_model", "read_checkpoint", "load_scheduler", "read_json", "check_same_schedule"]

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass
class LoadedModel:
    """A model read from disk, with the noise schedule stored beside it (``None`` when there was none)."""

    model: Any
    scheduler_config: dict[str, Any] | None
    source: str
    kind: str  # "diffusers-folder", "guidegap-checkpoint", "state-dict"
    checkpoint: Checkpoint | None = None


def _torch_load(path: Path, trust_pickle: bool, role: str | None = None) -> Any:
    require_regular_file(path, "a checkpoint file")
    if not trust_pickle:  # a trusted file may run code anyway; an untrusted one may not take all memory either
        check_torch_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "GLOBAL" in text or "nsupported global" in text or "not an allowed global" in text or "reduce for" in text:
            flag = f"--trust-pickle {role}" if role else "--trust-pickle"
            raise InputError(
                f"{path}: refusing to unpickle arbitrary objects (the file stores code, not just tensors); "
                f"re-save it as a state dict or safetensors, or pass {flag} (in Python: "
                "guidegap.load_model(path, trust_pickle=True)) only if you trust its author."
            ) from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated); re-save or re-download it.") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied; make it readable (chmod u+r) or copy it.") from None
    except Exception as error:  # a damaged file makes the unpickler raise almost anything (IndexError, KeyError, ...)
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}); re-save or re-download it.") from None


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    require_regular_file(path, "a safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied; make it readable (chmod u+r) or copy it.") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = first_line(error, empty=type(error).__name__)
        raise InputError(f"{path}: not a readable safetensors file ({reason}); it is truncated or not safetensors: "
                         "re-download it, or re-save the weights with safetensors.torch.save_file.") from None


def read_json(path: Path, what: str = "config") -> Any:
    """A JSON file's contents, or a one-line error naming the file and the fix."""
    require_regular_file(path, f"a JSON {what}")
    try:
        return json.loads(path.read_text())
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied; make it readable (chmod u+r) or copy it.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON; re-save the {what} with save_pretrained.") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be a {what}; re-save it with save_pretrained.") from None


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Read a guidegap checkpoint file (as written by the trainer)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such checkpoint: {str(path)!r}; pass a checkpoint.pt written by guidegap.")
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
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise InputError(f"{source}: the weights do not fit the {type(model).__name__} built for them ({problem}); pass the "
                         "config or --factory that built these weights, or the checkpoint that belongs to this config.")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"{source}: the weights do not fit the model ({first}); check the factory or the file.") from None


def _state_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """What differs between a model's state dict and the file's: counts and one example of each kind."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]!r}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape, e.g. {k!r}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}")
    return "; ".join(parts)


def _has_diffusers_weights(path: Path) -> bool:
    return any((folder / f"diffusion_pytorch_model.{suffix}").exists()
               for folder in (path, path / "unet", path / "transformer") for suffix in ("safetensors", "bin"))


def _diffusers_folder(path: Path) -> LoadedModel:
    model_dir = path
    for sub in ("unet", "transformer"):
        if (path / sub / "config.json").is_file():
            model_dir = path / sub
    config_file = model_dir / "config.json"
    if not config_file.exists():
        raise InputError(f"{path}: a folder without config.json is not a diffusers model folder; pass the save_pretrained folder.")
    config = read_json(config_file, "model config")
    if not isinstance(config, dict):
        raise InputError(f"{config_file}: expected a JSON object, received {type(config).__name__}; re-save the model with save_pretrained.")
    model_class = config.get("_class_name")
    weights = [model_dir / name for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin") if (model_dir / name).exists()]
    if not weights:
        raise InputError(f"{model_dir}: no diffusion_pytorch_model.safetensors or .bin; re-save the model with save_pretrained.")
    state = _load_safetensors(weights[0])[0] if weights[0].suffix == ".safetensors" else _torch_load(weights[0], False)
    if not isinstance(state, Mapping):
        raise InputError(f"{weights[0]}: expected a state dict (names -> tensors), received {type(state).__name__}.")
    model = _build_checked(model_class, config, state, str(config_file))
    _load_state_dict(model, state, str(weights[0]))
    return LoadedModel(model.eval(), _scheduler_beside(path, model_dir), str(path), "diffusers-folder")


def _build_checked(model_class: Any, config: dict[str, Any], state: Mapping[str, Any], source: str) -> torch.nn.Module:
    """The model of ``config``, after checking that the config implies no more weights than ``state`` holds."""
    check_implied_size(str(model_class), config, state_numel(state), source)
    return build_model(model_class, config, source)


def _scheduler_beside(path: Path, model_dir: Path) -> dict[str, Any] | None:
    for candidate in (path / "scheduler" / "scheduler_config.json", model_dir / "scheduler_config.json", path / "scheduler_config.json"):
        if candidate.exists():
            config = read_json(candidate, "scheduler config")
            if not isinstance(config, dict):
                raise InputError(f"{candidate}: expected a JSON object, received {type(config).__name__}; re-save the scheduler.")
            return config
    return None


def load_model(
    path: str | Path, *, factory: str | None = None, trust_pickle: bool = False, use_ema: bool = True,
    role: str | None = None,
) -> LoadedModel:
    """Load a model from ``path`` (see the module docstring); ``use_ema`` picks EMA weights when stored.

    ``role`` ("student" / "teacher") only names the ``--trust-pickle`` value in a refusal.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {str(path)!r}; pass a checkpoint file or a diffusers model folder.")
    with hub_offline():
        return _load(path, factory, trust_pickle, use_ema, role)


def _load(path: Path, factory: str | None, trust_pickle: bool, use_ema: bool, role: str | None) -> LoadedModel:
    if path.is_dir():
        if (path / RUN_CHECKPOINT).is_file() and not _has_diffusers_weights(path):  # a guidegap training run (--out)
            return _load(path / RUN_CHECKPOINT, factory, trust_pickle, use_ema, role)
        return _diffusers_folder(path)
    if path.suffix == ".safetensors":
        state, _ = _load_safetensors(path)
        return _with_factory(state, factory, path)
    if path.suffix not in _TORCH_SUFFIXES:
        raise InputError(f"{path}: unknown checkpoint type {path.suffix!r}; expected a folder, .safetensors, or one of {_TORCH_SUFFIXES}.")
    raw = _torch_load(path, trust_pickle, role)
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT:
        checkpoint = Checkpoint.from_dict(dict(raw), str(path))
        weights = checkpoint.ema_state_dict if use_ema and checkpoint.ema_state_dict else checkpoint.state_dict
        model = _build_checked(checkpoint.model_class, checkpoint.model_config, weights, str(path))
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
            f"{path}: a plain state dict holds no architecture; pass --factory package.module:function that builds "
            "the model (in Python: guidegap.load_model(path, factory='package.module:function'))."
        )
    model = _factory(factory)()
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"the factory {factory!r} returned {type(model).__name__}; it must return a torch.nn.Module.")
    _load_state_dict(model, state, str(path))
    return LoadedModel(model.eval(), None, str(path), "state-dict")


def load_scheduler(config: dict[str, Any] | None, name: str | None = None) -> Any:
    """The sampling scheduler: ``name`` (or DDIM) built on the stored noise schedule, else on guidegap's default
    (:func:`guidegap.recording.schedulers.on_stored_schedule`, with the hub kept offline)."""
    from guidegap.recording.schedulers import on_stored_schedule

    with hub_offline():
        return on_stored_schedule(config, name)


