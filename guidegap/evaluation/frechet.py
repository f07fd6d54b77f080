"""Fréchet distance between Gaussians fitted to two feature sets, and ``fd`` on the project classifier's features.

``fd`` is **not** Inception FID: it uses the 128-d penultimate features of the project's Fashion-MNIST classifier
(:mod:`guidegap.evaluation.classifier`), so its values are comparable only with other ``fd`` values from the same
weights and the same sample counts (report the counts next to the number; FD is biased upwards for small N).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from guidegap.errors import InputError

__all__ = ["frechet_distance", "fd", "classifier_features"]


def _as_features(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or array.shape[0] < 2:
        raise InputError(f"frechet_distance: expected {name} as a 2-d array (samples, features) with at least 2 rows, "
                         f"received shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"frechet_distance: {name} contains NaN or inf values; check the images fed to the classifier.")
    return array.astype(np.float64)


def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = features.mean(axis=0)
    sigma = np.atleast_2d(np.cov(features, rowvar=False))
    return mu, (sigma + sigma.T) / 2


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for Gaussians fitted to two ``(N, D)`` feature sets."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"frechet_distance: feature sets must have the same width, received {a.shape[1]} and {b.shape[1]}.")
    mu_a, sigma_a = _gaussian(a)
    mu_b, sigma_b = _gaussian(b)
    # tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the inner matrix is symmetric PSD, so its root is
    # well conditioned; fall back to an eps-shifted product root only if the symmetric route fails.
    root_a = _psd_sqrt(sigma_a)
    inner = root_a @ sigma_b @ root_a
    trace_covmean = float(np.trace(_psd_sqrt((inner + inner.T) / 2)))
    if not np.isfinite(trace_covmean):
        eps = 1e-6 * np.eye(len(sigma_a))
        covmean = scipy.linalg.sqrtm((sigma_a + eps) @ (sigma_b + eps))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise InputError("frechet_distance: the covariance product has a large imaginary square root; "
                                 "use more samples than feature dimensions.")
            covmean = covmean.real
        trace_covmean = float(np.trace(covmean))
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_covmean)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via ``scipy.linalg.sqrtm``; tiny imaginary parts discarded."""
    with warnings.catch_warnings():  # singular (rank-deficient) covariances are expected: dead ReLU units
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(matrix)
    if np.iscomplexobj(root):
        scale = max(float(np.abs(root).max()), 1e-300)
        if float(np.abs(root.imag).max()) > 1e-6 * scale:
            return np.full_like(matrix, np.nan)  # caller falls back
        root = root.real
    return (root + root.T) / 2


@torch.no_grad()
def classifier_features(images: torch.Tensor, classifier: torch.nn.Module | None = None, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features ``(N, 128)`` of images ``(N, 1, 28, 28)`` in [-1, 1], computed in batches."""
    from guidegap.evaluation.classifier import load_classifier

    model = classifier if classifier is not None else load_classifier()
    model.eval()
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError(f"expected images as a tensor (N, 1, 28, 28) in [-1, 1], received "
                         f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}.")
    device = next(model.parameters()).device
    return torch.cat([model.features(images[i:i + batch_size].to(device, torch.float32)).cpu()
                      for i in range(0, len(images), batch_size)])


def fd(images_a: torch.Tensor, images_b: torch.Tensor, classifier: torch.nn.Module | None = None, batch_size: int = 500) -> float:
    """Fréchet distance on the project Fashion-MNIST classifier's 128-d penultimate features (not Inception FID)."""
    return frechet_distance(classifier_features(images_a, classifier, batch_size),
                            classifier_features(images_b, classifier, batch_size))
