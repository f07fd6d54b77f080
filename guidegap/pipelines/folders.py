"""Load text-to-image pipeline folders offline and as data (docs/design.md §3: checkpoints are data, never code).

Accepted: a diffusers pipeline folder (``model_index.json``, as ``save_pretrained`` writes it), or a bare denoiser
folder (a ``UNet2DConditionModel`` / transformer ``save_pretrained``, or a folder holding only ``unet/`` or
``transformer/``) that replaces the denoiser of a base pipeline, the way BK-SDM ships
(``pipe.unet = UNet2DConditionModel.from_pretrained(".../bk-sdm-small", subfolder="unet")``).

Safety: every component of ``model_index.json`` must be a class of ``diffusers`` or ``transformers`` (no custom
code from the folder); nothing is fetched (``local_files_only=True`` and the hub offline while loading); weights
load through safetensors, or through ``torch.load(weights_only=True)``, which diffusers and transformers use for
``.bin`` files; folders with only fp16-variant weights load those, cast to float32. Safety checkers are not loaded
(the audit never decodes images).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guidegap.errors import InputError, first_line

__all__ = ["LoadedPipeline", "load_pipeline", "is_pipeline_folder", "is_text_pipeline", "denoiser_folder", "offline_hub", "DENOISER_ATTRS"]

SAFE_LIBRARIES = frozenset({"diffusers", "transformers"})
DENOISER_ATTRS = ("unet", "transformer")


@dataclass
class LoadedPipeline:
    """A pipeline read from disk; ``denoiser_source`` is the replacement denoiser folder, when one was swapped in."""

    pipe: Any
    source: str
    denoiser_source: str | None = None

    @property
    def denoiser(self) -> Any:
        return next(getattr(self.pipe, a) for a in DENOISER_ATTRS if getattr(self.pipe, a, None) is not None)

    def describe(self) -> str:
        return self.source if self.denoiser_source is None else f"{self.denoiser_source} in {self.source}"


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """The hub offline (:func:`guidegap.checkpoints.offline.hub_offline`) and loading progress bars off, for the block."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    from guidegap.checkpoints.offline import hub_offline

    bars = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in bars:
        module.disable_progress_bar()
    try:
        with hub_offline():
            yield
    finally:
        for module, enabled in bars:
            if enabled:
                module.enable_progress_bar()


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InputError(f"{path}: not a readable JSON file; re-save the folder with save_pretrained.") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, received {type(value).__name__}; re-save the folder with save_pretrained.")
    return value


def is_pipeline_folder(path: str | os.PathLike[str] | None) -> bool:
    """True for a folder with ``model_index.json`` (a diffusers pipeline)."""
    return path is not None and (Path(path) / "model_index.json").is_file()


def is_text_pipeline(path: str | os.PathLike[str] | None) -> bool:
    """True for a pipeline folder whose ``model_index.json`` names a tokenizer (a text-to-image pipeline)."""
    if not is_pipeline_folder(path):
        return False
    index = _json(Path(path) / "model_index.json")
    return any(key.startswith("tokenizer") and isinstance(v, list) and v[0] is not None for key, v in index.items())


def denoiser_folder(path: str | os.PathLike[str] | None) -> Path | None:
    """The ``save_pretrained`` folder of a bare UNet/transformer (``path`` itself, or its only ``unet/`` or
    ``transformer/``), or None when ``path`` is a pipeline folder or no denoiser folder."""
    if path is None or is_pipeline_folder(path):
        return None
    for candidate in (Path(path), *(Path(path) / a for a in DENOISER_ATTRS)):
        config = candidate / "config.json"
        if config.is_file():
            name = str(_json(config).get("_class_name", ""))
            if name.startswith("UNet2DCondition") or (name.endswith("Transformer2DModel") and not name.startswith("DiT")):
                return candidate
    return None


def _pipeline_class(path: Path) -> type:
    import diffusers

    index = _json(path / "model_index.json")
    name = index.get("_class_name")
    cls = getattr(diffusers, str(name), None) if isinstance(name, str) else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise InputError(f"{path}/model_index.json: expected a diffusers pipeline class, received {name!r}; guidegap loads "
                         "no pipeline code from the folder (custom pipelines are refused).")
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        if not _safe_library(str(value[0])):
            raise InputError(f"{path}/model_index.json: component {key!r} comes from {value[0]!r}; expected a diffusers or "
                             "transformers class (guidegap does not run code shipped with a model folder).")
    return cls


def _safe_library(name: str) -> bool:
    """diffusers, transformers, or a diffusers pipeline module (SD folders name ``["stable_diffusion", ...]``)."""
    import importlib.util

    if name in SAFE_LIBRARIES:
        return True
    try:
        return name.isidentifier() and importlib.util.find_spec(f"diffusers.pipelines.{name}") is not None
    except ImportError:
        return False


def _refused_pickle(error: BaseException) -> bool:
    """Whether ``error`` comes from torch refusing to unpickle objects (diffusers wraps it, sometimes twice)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, pickle.UnpicklingError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _loading(path: Path, what: str, fix: str) -> Iterator[None]:
    """Offline; a missing or unreadable file becomes one line that names the folder and the fix."""
    with offline_hub():
        try:
            yield
        except (OSError, ValueError, pickle.UnpicklingError) as error:
            first = first_line(error)
            if _refused_pickle(error):
                fix = ("its .bin weights store Python objects, not just tensors, and are not unpickled; convert them to "
                       "safetensors (or load the pipeline yourself if you trust its author)")
            raise InputError(f"{path}: cannot load the {what} folder ({first}); {fix}.") from None


def _variant(weights: list[Path]) -> dict[str, str]:
    """``{"variant": "fp16"}`` when the only weights are fp16 variants (``*.fp16.safetensors``), as many hub
    snapshots ship; they are cast to float32 after loading (the guidance gap is a few % of eps)."""
    plain = [f for f in weights if f.suffixes[-2:-1] != [".fp16"]]
    return {"variant": "fp16"} if weights and not plain else {}


def _weights(folder: Path) -> list[Path]:
    return [f for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern)]


def _from_pretrained(path: Path) -> Any:
    cls = _pipeline_class(path)
    accepted = inspect.signature(cls.__init__).parameters
    skip: dict[str, Any] = {k: None for k in ("safety_checker", "feature_extractor") if k in accepted}
    if "requires_safety_checker" in accepted:
        skip["requires_safety_checker"] = False
    variant = _variant([f for sub in path.iterdir() if sub.is_dir() for f in _weights(sub)])
    with _loading(path, cls.__name__, "check that every component folder is present (nothing is downloaded)"):
        pipe = cls.from_pretrained(str(path), local_files_only=True, **skip, **variant)
    if variant:
        pipe.to(dtype=torch.float32)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def _denoiser(path: Path) -> Any:
    import diffusers

    name = str(_json(path / "config.json")["_class_name"])
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise InputError(f"{path}/config.json: expected a diffusers model class, received {name!r}.")
    variant = _variant(_weights(path))
    with _loading(path, name, "re-save it with save_pretrained"):
        return cls.from_pretrained(str(path), local_files_only=True, **variant).to(torch.float32).eval()


def load_pipeline(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None) -> LoadedPipeline:
    """A pipeline folder as it is, or a bare denoiser folder swapped into the pipeline folder ``base``."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"no such folder: {str(folder)!r}; pass a diffusers pipeline folder (with model_index.json).")
    if is_pipeline_folder(folder):
        return LoadedPipeline(_from_pretrained(folder), str(folder))
    replacement = denoiser_folder(folder)
    if replacement is None:
        raise InputError(f"{folder}: expected a diffusers pipeline folder (model_index.json) or a UNet2DConditionModel / "
                         "transformer folder (config.json); pass the folder save_pretrained wrote.")
    if base is None or not is_pipeline_folder(base):
        raise InputError(f"{folder} holds only a denoiser ({replacement.name}); expected a pipeline folder to put it in, "
                         f"received {str(base)!r}; pass --teacher PIPELINE (or --base PIPELINE) with model_index.json.")
    pipe = _from_pretrained(Path(base))
    model = _denoiser(replacement)
    attr = "unet" if "UNet" in type(model).__name__ else "transformer"
    if getattr(pipe, attr, None) is None:
        raise InputError(f"{base} has no {attr}; a {type(model).__name__} cannot replace its denoiser.")
    options = {"requires_safety_checker": False} if "requires_safety_checker" in inspect.signature(type(pipe).__init__).parameters else {}
    swapped = type(pipe)(**{**pipe.components, attr: model}, **options)
    if hasattr(swapped, "set_progress_bar_config"):
        swapped.set_progress_bar_config(disable=True)
    return LoadedPipeline(swapped, str(base), str(folder))
