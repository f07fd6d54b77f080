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
from guidegap.metrics import model_metrics, pair_metrics
from guidegap.recording import schedulers as sched
from guidegap.recording.buffers import MetricBuffers
from guidegap.recording.guidance import GuidanceLike, as_guidance, describe
from guidegap.recording.seeding import PROBE, sample_generators, sample_noise, sample_seed
from guidegap.recording.trajectory import _evaluating, resolve_pair, resolve_labels
from guidegap.results.schema import make_dataset

__all__ = ["probe"]


def _as_tensors(data: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept ``(images, labels)`` tensors/arrays, or a map-style dataset of ``(image, label)`` pairs."""
    if labels is None and isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (int, float)):
        data, labels = data
    if labels is None and hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (torch.Tensor, np.ndarray)):
        pairs = [data[i] for i in range(len(data))]
        data = torch.stack([torch.as_tensor(np.asarray(x)) for x, _ in pairs])
        labels = torch.tensor([int(y) for _, y in pairs])
    if labels is None:
        raise InputError("expected data with labels: (images, labels) or a dataset of (image, label) pairs; received images only.")
    images = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data).float()
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().flatten()
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"expected one label per image, received {images.shape[0]} images and {labels.shape[0]} labels.")
    return images, labels


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
    a dataset of pairs; the first ``num_samples`` images are used. The noise schedule comes from
    ``scheduler`` (its ``alphas_cumprod``); ``guidance_scale`` may depend on t (e.g. ``"tag"``).
    """
    images, data_labels = _as_tensors(data, labels)
    n = images.shape[0] if num_samples is None else int(num_samples)
    if not 1 <= n <= images.shape[0]:
        raise InputError(f"expected 1 <= num_samples <= {images.shape[0]} (the data size), received {num_samples}.")
    roles = resolve_pair(teacher, student)
    leader = roles[0][1]
    data_labels = resolve_labels(data_labels[:n], n, leader)
    if leader.sample_shape is not None and tuple(images.shape[1:]) != leader.sample_shape:
        raise InputError(f"expected images of shape {leader.sample_shape}, received {tuple(images.shape[1:])}.")
    scheduler = sched.make_scheduler(scheduler)
    alphas_cumprod = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)
    train_steps = len(alphas_cumprod)
    timesteps = np.array([sample_seed(seed, i, PROBE) % train_steps for i in range(n)], dtype=np.int64)
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
                buffers.put(model_metrics(cond, uncond), span, None, model=m)
            if len(roles) == 2:
                (tc, tu), (sc, su) = preds
                w = torch.as_tensor(scales[span], dtype=torch.float32)
                buffers.put(pair_metrics(sc, su, tc, tu, w), span, None)
    buffers.arrays["guidance_scale"] = scales
    config = {
        "num_samples": n,
        "guidance": json.loads(describe(guidance)),
        "seed": seed,
        "chunk_size": chunk_size,
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
