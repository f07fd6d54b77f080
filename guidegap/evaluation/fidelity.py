"""Guidance fidelity: how often the project classifier assigns guided samples to the label they were drawn for.

A healthy distilled student's fidelity rises with the guidance scale w like its teacher's; a collapsed student's
curve is flat, because its guidance direction is (nearly) zero. The curve follows the ``fidelity_<metric>``
convention of :mod:`guidegap.plots.fidelity`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from guidegap.errors import InputError

__all__ = ["guidance_fidelity", "fidelity_curve", "DEFAULT_SCALES"]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
SampleFn = Callable[[float, torch.Tensor], torch.Tensor]


@torch.no_grad()
def guidance_fidelity(images: torch.Tensor, requested_labels: torch.Tensor, classifier: torch.nn.Module | None = None,
                      batch_size: int = 500) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) in [-1, 1] that the classifier assigns to ``requested_labels`` (N,)."""
    from guidegap.evaluation.classifier import load_classifier

    labels = torch.as_tensor(requested_labels).long().reshape(-1).cpu()  # compared with predictions on the CPU
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) != len(labels) or len(labels) == 0:
        raise InputError(f"guidance_fidelity: expected images (N, 1, 28, 28) and N labels with N > 0, received images "
                         f"{tuple(getattr(images, 'shape', ()))} and {len(labels)} labels.")
    model = classifier if classifier is not None else load_classifier()
    model.eval()
    device = next(model.parameters()).device
    predicted = torch.cat([model(images[i:i + batch_size].to(device, torch.float32)).argmax(1).cpu()
                           for i in range(0, len(images), batch_size)])
    return float((predicted == labels).float().mean())


def fidelity_curve(sample_fn: SampleFn, scales: Sequence[float] = DEFAULT_SCALES, labels: torch.Tensor | None = None,
                   classifier: torch.nn.Module | None = None, samples_per_class: int = 50) -> xr.Dataset:
    """Guidance fidelity at each scale: ``sample_fn(w, labels) -> images``; returns a Dataset over a ``w`` dim.

    ``labels`` defaults to ``samples_per_class`` of each of the 10 classes. The caller's ``sample_fn`` owns the
    sampler and its seeding (use the same generator seed at every w so curves differ only through w).
    """
    from guidegap.evaluation.classifier import load_classifier

    w = np.asarray([float(s) for s in scales], dtype=float)
    if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)):
        raise InputError(f"fidelity_curve: expected a non-empty sequence of finite guidance scales, received {scales!r}.")
    if labels is None:
        labels = torch.arange(10).repeat_interleave(samples_per_class)
    labels = torch.as_tensor(labels).long().reshape(-1)
    model = classifier if classifier is not None else load_classifier()
    accuracy = np.empty(len(w))
    for i, scale in enumerate(w):
        images = sample_fn(float(scale), labels)
        accuracy[i] = guidance_fidelity(images, labels, model)
    ds = xr.Dataset(
        {"fidelity_accuracy": ("w", accuracy, {
            "long_name": "guidance fidelity: classifier accuracy on the requested labels", "units": "1",
            "classifier": "guidegap.evaluation.FashionMNISTClassifier (project weights)"})},
        coords={"w": ("w", w, {"long_name": "guidance scale", "units": "1"})},
        attrs={"history": f"guidegap.evaluation.fidelity_curve: {len(labels)} samples per scale"},
    )
    ds["n_samples"] = xr.DataArray(len(labels), attrs={"long_name": "samples per guidance scale", "units": "1"})
    return ds
