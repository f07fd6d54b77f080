"""Data-probe mode: both branches of both models on noised real data at uniform random timesteps.

This is DASH's own evaluation protocol (arXiv 2606.00798): ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``
with ``t ~ U{0, ..., T-1}`` per sample; no sampler is run, so there is no ``step`` dim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from guidegap._version import __version__
from guidegap.denoisers import DenoiserLike
from guidegap.errors import InputError
from guidegap.metrics.registry import model_values, pair_values
from guidegap.recording.buffers import MetricBuffers
from guidegap.recording.guidance import GuidanceLike, as_guidance, describe
from guidegap.recording.seeding import PROBE, PROBE_TIMESTEP, sample_generators, sample_noise, sample_seed
from guidegap.recording.trajectory import _evaluating, resolve_labels, resolve_models
from guidegap.results.schema import make_dataset

__all__ = ["probe", "probe_size", "probe_tensors"]


def _is_pair(item: Any) -> bool:
    """An ``(image, label)`` item of a dataset: a 2-sequence whose second entry is one integer label."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        return False
    label = item[1]
    if isinstance(label, (torch.Tensor, np.ndarray)):
        return label.ndim == 0
    return isinstance(label, (int, np.integer)) and not isinstance(label, bool)


def _tensor(name: str, value: Any) -> torch.Tensor:
    try:
        return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (ValueError, TypeError, RuntimeError):
        raise InputError(f"expected {name} as a tensor or array of equal-sized entries, received {type(value).__name__} "
                         "that cannot be stacked; pass a tensor, an array or a dataset of (image, label) pairs.") from None


def probe_tensors(data: Any, labels: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept ``(images, labels)`` tensors/arrays, or a map-style dataset of ``(image, label)`` pairs.

    Only the first ``limit`` items of a dataset are read.
    """
    if labels is None and isinstance(data, (tuple, list)) and len(data) == 2 and not _is_pair(data[0]):
        data, labels = data
    is_array = isinstance(data, (torch.Tensor, np.ndarray, str, bytes))
    if labels is None and not is_array and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        count = len(data) if limit is None else min(len(data), limit)
        pairs = [data[i] for i in range(count)]
        if not all(_is_pair(pair) for pair in pairs):
            raise InputError("expected a dataset of (image, label) pairs with one integer label each; "
                             "pass (images, labels) or such a dataset.")
        data = torch.stack([_tensor("images", x) for x, _ in pairs]) if pairs else torch.zeros(0)
        labels = torch.tensor([int(y) for _, y in pairs], dtype=torch.long)
    if labels is None:
        raise InputError("expected data with labels: (images, labels) or a dataset of (image, label) pairs; received images only.")
    images = _tensor("images", data)
    labels = _tensor("labels", labels)
    if images.ndim < 1 or images.is_complex():
        raise InputError(f"expected a batch of real-valued images, received a {images.dtype} tensor of shape {tuple(images.shape)}.")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise InputError("expected integer class labels, received fractional values; pass class ids 0..num_classes-1.")
    if labels.ndim > 1 and labels[0].numel() != 1:
        raise InputError(f"expected one label per image (shape (N,)), received labels of shape {tuple(labels.shape)}.")
    images, labels = images.float(), labels.long().flatten()
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"expected one label per image, received {images.shape[0]} images and {labels.shape[0]} labels.")
    return images, labels


def probe_size(data: Any) -> int:
    """How many images ``data`` (what :func:`probe` takes) holds, without reading them."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_pair(data[0]):
        data = data[0]
    try:
        return len(data)
    except TypeError:
        raise InputError(f"expected probe data as (images, labels) or a dataset of (image, label) pairs, received "
                         f"{type(data).__name__}.") from None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"expected {name} to be a positive integer, received {value!r}.")
    return int(value)


def probe(
    teacher: DenoiserLike | None,
    student: DenoiserLike | None,
    data: Any,
    labels: Sequence[int] | torch.Tensor | None = None,
    *,
    num_samples: int | None = None,
    guidance_scale: GuidanceLike = 4.0,
    scheduler: Any = None,
    seed: int = 0,
    chunk_size: int = 64,
) -> xr.Dataset:
    """Evaluate both branches on ``data`` noised at uniform random timesteps (DASH's evaluation protocol).

    ``data`` is ``(images, labels)`` (tensors or arrays scaled like the training data, usually [-1, 1]) or
    a dataset of pairs; the first ``num_samples`` images are used. ``teacher`` / ``student`` are what
    :func:`guidegap.trace` takes (:func:`guidegap.load_model` results too). The noise schedule comes from
    ``scheduler`` (its ``alphas_cumprod``; default: the one stored with the models, else DDPM-linear);
    ``guidance_scale`` may depend on t (e.g. ``"tag"``).
    """
    chunk_size = _positive_int("chunk_size", chunk_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"expected seed to be a non-negative integer, received {seed!r}.")
    seed = int(seed)  # a numpy integer would not serialise into the config
    if num_samples is not None:
        num_samples = _positive_int("num_samples", num_samples)
    images, data_labels = probe_tensors(data, labels, num_samples)
    n = images.shape[0] if num_samples is None else num_samples
    if not 1 <= n <= images.shape[0]:
        raise InputError(f"expected 1 <= num_samples <= {images.shape[0]} (the data size), received {n}.")
    roles, scheduler = resolve_models(teacher, student, scheduler)
    leader = roles[0][1]
    data_labels = resolve_labels(data_labels[:n], n, leader)
    for _, d in roles:
        if d.sample_shape is not None and tuple(images.shape[1:]) != d.sample_shape:
            raise InputError(f"expected images of shape {d.sample_shape} ({d.name}), received {tuple(images.shape[1:])}.")
    alphas_cumprod = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)
    train_steps = len(alphas_cumprod)
    timesteps = np.array([sample_seed(seed, i, PROBE_TIMESTEP) % train_steps for i in range(n)], dtype=np.int64)
    guidance = as_guidance(guidance_scale)
    if not hasattr(guidance, "values"):
        raise InputError("a per-step list of guidance scales has no meaning in a data probe; pass a number, 'tag' or fn(t, T).")
    scales = guidance.values(timesteps, train_steps)

    buffers = MetricBuffers(len(roles), n, None)
    with _evaluating([d for _, d in roles]), torch.inference_mode():
        for start in range(0, n, chunk_size):
            rows = range(start, min(start + chunk_size, n))
            span = slice(rows.start, rows.stop)
            t = torch.as_tensor(timesteps[span])
            abar = alphas_cumprod[t].float().view(-1, *([1] * (images.ndim - 1)))
            noise = sample_noise(sample_generators(seed, rows, PROBE), tuple(images.shape[1:]))
            x_t = abar.sqrt() * images[span] + (1 - abar).sqrt() * noise
            preds = []
            for m, (_, d) in enumerate(roles):
                cond, uncond = d.branches(x_t.to(d.device, d.dtype), t.to(d.device), data_labels[span].to(d.device))
                cond, uncond = cond.float().cpu(), uncond.float().cpu()
                preds.append((cond, uncond))
                buffers.put(model_values(cond, uncond), span, None, model=m)
            if len(roles) == 2:
                (tc, tu), (sc, su) = preds
                w = torch.as_tensor(scales[span], dtype=torch.float32)
                buffers.put(pair_values(sc, su, tc, tu, w), span, None)
    buffers.arrays["guidance_scale"] = scales
    config = {
        "num_samples": n,
        "guidance": json.loads(describe(guidance)),
        "seed": seed,
        "noise_schedule": {"class": type(scheduler).__name__, "num_train_timesteps": train_steps},
        "models": {name: d.describe() for name, d in roles},
    }
    attrs = {
        "guidegap_version": __version__,
        "mode": "data-probe",
        "config": json.dumps(config, sort_keys=True),
        "history": f"guidegap.probe (guidegap {__version__})",
    }
    return make_dataset(buffers.arrays, models=[name for name, _ in roles], labels=data_labels.numpy(),
                        timesteps=timesteps, attrs=attrs, has_step=False)
