"""Inception FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium") in the pytorch-fid / TTUR convention, computed from an Inception weights file the user already has.

Features are the 2048-d pool3 activations of the FID InceptionV3 (``pytorch_fid``'s port of the TensorFlow graph),
with images in [-1, 1] resized to 299x299 bilinearly and grayscale repeated to 3 channels. Nothing is ever
downloaded: the network is built from the local state dict given as ``weights`` (read with ``weights_only=True``).
Numbers are comparable to published FIDs only with the exact official weights ``pt_inception-2015-12-05-6726825d.pth``
and 50K generated samples (FID is biased upwards for fewer samples; report the counts next to the number).
Needs the optional extra ``pip install "guidegap[fid]"`` (pytorch-fid and a torchvision built for the installed
torch); :func:`guidegap.evaluation.fd` (classifier features) needs nothing extra.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
from torch import nn

from guidegap.errors import InputError
from guidegap.evaluation.frechet import frechet_distance

__all__ = ["inception_features", "inception_fid", "WEIGHTS_FILENAME", "WEIGHTS_URL"]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
POOL3_DIM = 2048

_GET_WEIGHTS = f"download {WEIGHTS_FILENAME} once from {WEIGHTS_URL} and pass its local path as `weights`"
_BUILD_LOCK = threading.Lock()  # the network is built while pytorch_fid's URL loader is swapped out


def _check_images(images: torch.Tensor, name: str, min_count: int = 1) -> None:
    """One-line :class:`InputError` unless ``images`` is a finite float tensor (N, 1 or 3, H, W) in [-1, 1]."""
    expected = f"expected {name} as a float tensor (N, 1 or 3, H, W) in [-1, 1] with N >= {min_count}"
    if not isinstance(images, torch.Tensor):
        raise InputError(f"inception FID: {expected}, received {type(images).__name__}; convert with torch.as_tensor.")
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < min_count:
        raise InputError(f"inception FID: {expected}, received shape {tuple(images.shape)}; "
                         "add a channel axis with images[:, None] or move channels first with images.permute(0, 3, 1, 2).")
    if not images.is_floating_point():
        raise InputError(f"inception FID: {expected}, received dtype {images.dtype}; "
                         "rescale 8-bit images with images.float() / 127.5 - 1.")
    if not bool(torch.isfinite(images).all()):
        raise InputError(f"inception FID: {name} contains NaN or inf values; check the sampler that produced them.")
    low, high = (float(v) for v in torch.aminmax(images))
    if low < -1.001 or high > 1.001:
        raise InputError(f"inception FID: {expected}, received values in [{low:.3g}, {high:.3g}]; "
                         "rescale [0, 1] images with 2 * images - 1, or clamp sampler output with images.clamp(-1, 1).")


def _read_weights(weights: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in ``weights``, read with ``weights_only=True`` (plain tensors only, never pickled code)."""
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"Inception weights not found: expected the FID Inception state dict at {path}; {_GET_WEIGHTS}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file or a pickle of anything but tensors raises one of several types
        raise InputError(f"Inception weights at {path} are not a readable tensor-only state dict "
                         f"({type(error).__name__}); {_GET_WEIGHTS}.") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(f"Inception weights at {path} hold a {type(state).__name__}, not a state dict of tensors; "
                         f"{_GET_WEIGHTS}.")
    return state


def _pytorch_fid_inception():  # -> the pytorch_fid.inception module
    """``pytorch_fid.inception``, or a one-line :class:`InputError` naming what to install."""
    try:
        from pytorch_fid import inception
    except (ImportError, OSError, RuntimeError) as error:  # absent, or a torchvision built for another torch
        raise InputError(f"Inception FID needs `pip install pytorch-fid torchvision` (a torchvision built for your torch "
                         f"{torch.__version__}) and a local copy of {WEIGHTS_FILENAME} ({WEIGHTS_URL}); importing "
                         f"pytorch_fid failed ({type(error).__name__}: {error}). guidegap.evaluation.fd "
                         "(classifier features) needs nothing extra.") from None
    return inception


def _load_fid_inception(weights: str | os.PathLike[str], device: str | torch.device) -> nn.Module:
    """pytorch_fid's ``InceptionV3`` (pool3 block only, inputs in [-1, 1]) built from the local ``weights``, in eval mode."""
    from unittest import mock

    state = _read_weights(weights)
    inception = _pytorch_fid_inception()
    if not hasattr(inception, "load_state_dict_from_url"):  # the hook that would download; refuse rather than guess
        raise InputError("this pytorch_fid version is not supported (pytorch_fid.inception has no "
                         "load_state_dict_from_url to redirect to the local weights); install pytorch-fid 0.3.x.")

    def local_weights(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        return state  # pytorch_fid asks for FID_WEIGHTS_URL; hand it the user's file instead of downloading

    with _BUILD_LOCK, mock.patch.object(inception, "load_state_dict_from_url", local_weights):
        try:
            model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[POOL3_DIM]],
                                          resize_input=True, normalize_input=False, use_fid_inception=True)
        except RuntimeError as error:  # load_state_dict(strict=True): missing, unexpected or mis-shaped tensors
            summary = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"Inception weights at {weights} do not match the FID InceptionV3 ({summary}); "
                             f"{_GET_WEIGHTS}.") from None
    return model.to(device).eval()


@torch.no_grad()
def _features(model: nn.Module, images: torch.Tensor, batch_size: int, device: str | torch.device) -> torch.Tensor:
    """Pool3 features ``(N, 2048)`` of checked images, computed in batches and returned on the CPU."""
    features = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, torch.float32)
        batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
        features.append(model(batch)[0].flatten(1).cpu())  # InceptionV3 resizes to 299x299 (bilinear) itself
    return torch.cat(features)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"inception FID: expected batch_size as a positive int, received {batch_size!r}.")


def inception_features(images: torch.Tensor, weights: str | os.PathLike[str], batch_size: int = 50,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """InceptionV3 pool3 features ``(N, 2048)`` of images ``(N, C, H, W)`` in [-1, 1] (Heusel et al. 2017, pytorch-fid)."""
    _check_images(images, "images")
    _check_batch_size(batch_size)
    return _features(_load_fid_inception(weights, device), images, batch_size, device)


def inception_fid(images_a: torch.Tensor, images_b: torch.Tensor, weights: str | os.PathLike[str], batch_size: int = 50,
                  device: str | torch.device = "cpu") -> float:
    """Inception FID (Heusel et al. 2017) between two image sets in [-1, 1]; comparable to papers only with 50K samples."""
    _check_images(images_a, "images_a", min_count=2)
    _check_images(images_b, "images_b", min_count=2)
    _check_batch_size(batch_size)
    model = _load_fid_inception(weights, device)
    return frechet_distance(_features(model, images_a, batch_size, device), _features(model, images_b, batch_size, device))
