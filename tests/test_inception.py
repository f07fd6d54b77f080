"""Inception FID: one-line errors for missing packages, weights and bad images; the network from a local file only."""

from __future__ import annotations

import importlib.abc
import socket
import sys
from pathlib import Path

import pytest
import torch

from guidegap.errors import InputError
from guidegap.evaluation import inception_features, inception_fid
from guidegap.evaluation.inception import WEIGHTS_FILENAME, WEIGHTS_URL

_CODE_RAN: list[str] = []


def _record_call(tag: str) -> None:
    _CODE_RAN.append(tag)


class _PickledCode:
    """Unpickling this would call ``_record_call``: what ``weights_only=True`` must refuse."""

    def __reduce__(self):
        return (_record_call, ("unpickled",))


class _FailingImport(importlib.abc.MetaPathFinder):
    """Makes ``import pytorch_fid`` raise ``error``, as a missing or mismatched torchvision does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "pytorch_fid" or name.startswith("pytorch_fid."):
            raise self.error
        return None


def _images(n: int, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=generator) * 2 - 1


def _assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture
def tensor_weights(tmp_path: Path) -> Path:
    """A readable state dict that is not the Inception one: passes the file checks, fails only at the network."""
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, path)
    return path


# --- missing optional packages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [ModuleNotFoundError("No module named 'torchvision'", name="torchvision"),
                                   RuntimeError("operator torchvision::nms does not exist")],
                         ids=["torchvision-absent", "torchvision-for-another-torch"])
def test_missing_packages_raise_one_line_with_install_and_weights_fix(monkeypatch, tensor_weights, error):
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(error), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "pytorch_fid", raising=False)
    monkeypatch.delitem(sys.modules, "pytorch_fid.inception", raising=False)
    with pytest.raises(InputError) as info:
        inception_fid(_images(4), _images(4, seed=1), tensor_weights)
    message = _assert_one_line(info)
    for needed in ("pip install pytorch-fid torchvision", torch.__version__, WEIGHTS_FILENAME, WEIGHTS_URL,
                   "guidegap.evaluation.fd", "needs nothing extra", type(error).__name__):
        assert needed in message


def test_importing_guidegap_evaluation_does_not_import_pytorch_fid_or_torchvision():
    import subprocess

    code = ("import sys, guidegap.evaluation as e; assert callable(e.inception_fid); "
            "print(sorted(m for m in ('pytorch_fid', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- weights file ----------------------------------------------------------------------------------------------------

def test_missing_weights_file_names_the_official_file_and_url(tmp_path):
    with pytest.raises(InputError, match="not found") as info:
        inception_features(_images(2), tmp_path / WEIGHTS_FILENAME)
    message = _assert_one_line(info)
    assert WEIGHTS_FILENAME in message and WEIGHTS_URL in message and str(tmp_path) in message


def test_weights_that_are_not_a_torch_file_are_refused(tmp_path):
    path = tmp_path / WEIGHTS_FILENAME
    path.write_bytes(b"<html>404: Not Found</html>")  # what a failed download often leaves behind
    with pytest.raises(InputError, match="not a readable tensor-only state dict") as info:
        inception_features(_images(2), path)
    assert WEIGHTS_URL in _assert_one_line(info)


def test_weights_are_read_without_unpickling_code(tmp_path):
    path = tmp_path / "malicious.pth"
    torch.save({"w": torch.zeros(1), "payload": _PickledCode()}, path)
    _CODE_RAN.clear()
    with pytest.raises(InputError, match="not a readable tensor-only state dict"):
        inception_features(_images(2), path)
    assert _CODE_RAN == []


def test_weights_holding_a_bare_tensor_are_refused(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(InputError, match="hold a Tensor, not a state dict"):
        inception_features(_images(2), path)


# --- image validation (before any weights or packages are touched) ---------------------------------------------------

@pytest.mark.parametrize(("images", "match"), [
    (_images(2).numpy(), "received ndarray"),
    (_images(2)[:, 0], r"received shape \(2, 28, 28\)"),
    (_images(2, channels=2), r"received shape \(2, 2, 28, 28\)"),
    (_images(2).permute(0, 2, 3, 1).repeat(1, 1, 1, 3), r"received shape \(2, 28, 28, 3\)"),
    (((_images(2) + 1) * 127.5).to(torch.uint8), "received dtype torch.uint8"),
    ((_images(2) + 1) * 127.5, "received values in .*images.clamp"),
    (torch.full((2, 1, 28, 28), float("nan")), "NaN or inf"),
    (_images(0), r"received shape \(0, 1, 28, 28\)"),
], ids=["numpy", "no-channel-axis", "two-channels", "channels-last", "uint8", "0-255-floats", "nan", "empty"])
def test_bad_images_raise_one_line_before_the_weights_are_needed(tmp_path, images, match):
    with pytest.raises(InputError, match=match) as info:
        inception_features(images, tmp_path / "absent.pth")
    _assert_one_line(info)


def test_fid_needs_two_images_per_set(tmp_path):
    with pytest.raises(InputError, match=r"images_b .* N >= 2, received shape \(1, 3, 28, 28\)"):
        inception_fid(_images(4, channels=3), _images(1, channels=3), tmp_path / "absent.pth")


@pytest.mark.parametrize("batch_size", [0, -5, 2.5, True])
def test_batch_size_must_be_a_positive_int(tmp_path, batch_size):
    with pytest.raises(InputError, match="batch_size"):
        inception_features(_images(2), tmp_path / "absent.pth", batch_size=batch_size)


# --- the network (only where pytorch-fid and a working torchvision are installed) -------------------------------------

@pytest.fixture
def random_inception_weights(tmp_path: Path) -> Path:
    """A randomly initialised FID-Inception state dict (same tensors as torchvision's InceptionV3 with 1008 classes)."""
    pytest.importorskip("pytorch_fid.inception")  # also imports torchvision; skips where either is absent or broken
    import torchvision

    generator = torch.Generator().manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    with torch.no_grad():  # He init keeps ReLU activations O(1) through the 40-odd layers (BN is identity here)
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
    path = tmp_path / "random_inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Every way the weights could be fetched raises instead (skips where pytorch-fid is absent)."""
    def refuse(*args, **kwargs):
        raise AssertionError("inception FID tried to reach the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(pytest.importorskip("pytorch_fid.inception"), "load_state_dict_from_url", refuse)


def test_features_are_2048_d_pool3_from_local_weights_without_network(random_inception_weights, no_network):
    images = _images(3)
    features = inception_features(images, random_inception_weights, batch_size=2)
    assert features.shape == (3, 2048) and features.dtype == torch.float32
    assert bool(torch.isfinite(features).all()) and float(features.min()) >= 0  # average pool of ReLU outputs
    assert float((features[0] - features[1]).abs().max()) > 0  # different images, different features
    rgb = inception_features(images.repeat(1, 3, 1, 1), random_inception_weights, batch_size=50)
    torch.testing.assert_close(rgb, features, rtol=1e-4, atol=1e-5)  # gray = repeated to 3 channels; batch-independent


def test_features_match_pytorch_fids_default_pipeline_on_0_1_images(random_inception_weights, no_network,
                                                                     monkeypatch):
    import pytorch_fid.inception as pfi

    state = torch.load(random_inception_weights, weights_only=True)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda url, *args, **kwargs: state)
    reference = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()  # resizes, maps [0, 1] to [-1, 1]
    images = _images(2, channels=3, size=40, seed=3)
    with torch.no_grad():
        expected = reference((images + 1) / 2)[0].flatten(1)
    torch.testing.assert_close(inception_features(images, random_inception_weights), expected, rtol=1e-4, atol=1e-5)


def test_weights_for_another_network_are_refused(tensor_weights, no_network):
    with pytest.raises(InputError, match="do not match the FID InceptionV3") as info:
        inception_features(_images(2), tensor_weights)
    assert WEIGHTS_URL in _assert_one_line(info)


@pytest.mark.slow  # two 2048x2048 matrix square roots: tens of seconds on one core
def test_fid_of_a_set_with_itself_is_zero(random_inception_weights, no_network):
    images = _images(4, channels=3, size=32)
    assert inception_fid(images, images.clone(), random_inception_weights) == pytest.approx(0.0, abs=1e-3)
