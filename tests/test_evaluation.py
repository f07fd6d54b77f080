"""Evaluation: Fréchet distance against closed forms, the committed classifier, guidance fidelity and its curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from guidegap.errors import InputError
from guidegap.evaluation import (FashionMNISTClassifier, fd, fidelity_curve, frechet_distance, guidance_fidelity,
                                 load_classifier)
from guidegap.evaluation.classifier import WEIGHTS_PATH


def _exact_gaussian_samples(mu: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Samples whose empirical mean and (n-1)-normalised covariance are exactly ``mu`` and ``cov``."""
    z = np.random.default_rng(seed).standard_normal((n, len(mu)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # empirical cov = I
    return z @ np.linalg.cholesky(cov).T + mu


# --- Fréchet distance ----------------------------------------------------------------------------------------------

def test_fd_of_a_feature_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 16)) * 3 + 1
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    a = _exact_gaussian_samples(mu1, np.diag(s1), 400, 2)
    b = _exact_gaussian_samples(mu2, np.diag(s2), 300, 3)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fd_matches_the_eigenvalue_form_for_full_covariances_and_is_symmetric():
    rng = np.random.default_rng(4)
    d = 6
    m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    c1, c2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a = _exact_gaussian_samples(mu1, c1, 300, 5)
    b = _exact_gaussian_samples(mu2, c2, 200, 6)
    # tr((C1 C2)^(1/2)) = sum of square roots of the (real, positive) eigenvalues of C1 C2
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2 * np.sum(np.sqrt(np.linalg.eigvals(c1 @ c2).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_fd_handles_rank_deficient_features():
    x = np.random.default_rng(7).standard_normal((50, 3))
    a = np.concatenate([x, np.zeros((50, 5))], axis=1)  # dead units, as ReLU features have
    b = a + np.array([1.0, 0, 0, 0, 0, 0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(1.0, rel=1e-5)


def test_fd_rejects_mismatched_widths_in_one_line():
    with pytest.raises(InputError, match="same width") as info:
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    assert "\n" not in str(info.value)


# --- the committed classifier ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def test_images():
    from guidegap.data import load_fashion_mnist

    x, y = load_fashion_mnist("test")
    return x[:2000], y[:2000]


def test_committed_weights_are_small_safetensors():
    assert WEIGHTS_PATH.is_file() and WEIGHTS_PATH.stat().st_size < 1_000_000


def test_committed_classifier_reaches_90_percent(classifier, test_images):
    x, y = test_images
    assert not classifier.training
    with torch.no_grad():
        accuracy = float((classifier(x).argmax(1) == y).float().mean())
    assert accuracy >= 0.90
    assert classifier.features(x[:4]).shape == (4, 128)


def test_guidance_fidelity_of_real_images(classifier, test_images):
    x, y = test_images
    assert guidance_fidelity(x, y, classifier) >= 0.90
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert guidance_fidelity(x, shuffled, classifier) == pytest.approx(0.1, abs=0.03)


def test_fd_on_classifier_features_separates_classes(classifier, test_images):
    x, y = test_images
    same = fd(x[:1000], x[1000:2000], classifier)
    trousers_vs_all = fd(x[y == 1], x[1000:2000], classifier)
    assert same >= 0 and trousers_vs_all > 5 * same


def test_missing_weights_raise_one_line_input_error(tmp_path):
    with pytest.raises(InputError, match="train_classifier.py") as info:
        load_classifier(tmp_path / "absent.safetensors")
    assert "\n" not in str(info.value)


def test_corrupt_or_foreign_weights_raise_input_error(tmp_path):
    from safetensors.torch import save_file

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(InputError, match="not a readable safetensors") as info:
        load_classifier(junk)
    assert "\n" not in str(info.value)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(InputError, match="do not match"):
        load_classifier(foreign)


# --- fidelity curve ------------------------------------------------------------------------------------------------

class _MeanClassifier(nn.Module):
    """Predicts class round(mean pixel value): a transparent stand-in for the trained classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x.mean(dim=(1, 2, 3)).round().long(), 10).float()


def test_fidelity_curve_with_a_fake_sampler():
    labels = torch.arange(10).repeat_interleave(6)  # 60 samples

    def sample_fn(w: float, requested: torch.Tensor) -> torch.Tensor:
        # the first round(60 * w / 6) samples get the requested class, the rest the next class
        correct = round(len(requested) * w / 6)
        drawn = requested.clone()
        drawn[correct:] = (drawn[correct:] + 1) % 10
        return drawn.float()[:, None, None, None].expand(-1, 1, 28, 28).clone()

    scales = (1, 1.5, 2, 3, 4, 6)
    ds = fidelity_curve(sample_fn, scales=scales, labels=labels, classifier=_MeanClassifier())
    assert ds["fidelity_accuracy"].dims == ("w",)
    np.testing.assert_array_equal(ds["w"].values, np.asarray(scales, dtype=float))
    np.testing.assert_allclose(ds["fidelity_accuracy"].values, [round(60 * w / 6) / 60 for w in scales])
    assert ds["fidelity_accuracy"].attrs["units"] == "1" and ds["fidelity_accuracy"].attrs["long_name"]
    assert int(ds["n_samples"]) == 60


def test_fidelity_curve_default_labels_and_bad_scales():
    seen = []

    def sample_fn(w, requested):
        seen.append(requested)
        return requested.float()[:, None, None, None].expand(-1, 1, 28, 28).clone()

    ds = fidelity_curve(sample_fn, scales=(1, 4), classifier=_MeanClassifier(), samples_per_class=3)
    np.testing.assert_array_equal(ds["fidelity_accuracy"].values, [1.0, 1.0])
    assert torch.equal(seen[0], torch.arange(10).repeat_interleave(3))
    with pytest.raises(InputError, match="guidance scales"):
        fidelity_curve(sample_fn, scales=(), classifier=_MeanClassifier())


def test_guidance_fidelity_rejects_mismatched_lengths():
    with pytest.raises(InputError, match="N labels"):
        guidance_fidelity(torch.zeros(4, 1, 28, 28), torch.zeros(3), _MeanClassifier())


def test_classifier_rejects_wrong_image_shape():
    with pytest.raises(InputError, match=r"\(N, 1, 28, 28\)"):
        FashionMNISTClassifier().features(torch.zeros(2, 3, 32, 32))
