"""A small Fashion-MNIST CNN: the project's reference classifier for FD and guidance fidelity.

Trained by ``analyses/train_classifier.py`` (results in ``analyses/results/classifier.md``); its weights ship
with the package as safetensors (plain tensors, no pickle) in ``guidegap/evaluation/weights/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from guidegap.errors import InputError

__all__ = ["FashionMNISTClassifier", "WEIGHTS_PATH", "FEATURE_DIM", "load_classifier"]

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "fashion_mnist_classifier.safetensors"
FEATURE_DIM = 128
NUM_CLASSES = 10


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class FashionMNISTClassifier(nn.Module):
    """conv 32 -> pool -> conv 64 -> pool -> conv 128 -> avgpool 2x2 -> fc 128 (features) -> fc 10; input in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(1, 32), nn.MaxPool2d(2),  # 28 -> 14
            _conv_block(32, 64), nn.MaxPool2d(2),  # 14 -> 7
            _conv_block(64, 128), nn.AdaptiveAvgPool2d(2), nn.Flatten(),  # 128 x 2 x 2
        )
        self.penultimate = nn.Sequential(nn.Linear(128 * 4, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(N, 128)`` of images ``(N, 1, 28, 28)`` in [-1, 1]."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise InputError(f"FashionMNISTClassifier: expected images (N, 1, 28, 28) in [-1, 1], received {tuple(x.shape)}.")
        return self.penultimate(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, 10)``."""
        return self.head(self.dropout(self.features(x)))


def load_classifier(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> FashionMNISTClassifier:
    """The committed trained classifier (safetensors weights) in eval mode; :class:`InputError` if missing or corrupt."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else WEIGHTS_PATH
    fix = "rerun `python analyses/train_classifier.py` to recreate it"
    if not path.is_file():
        raise InputError(f"classifier weights not found: expected a safetensors file at {path}; {fix}.")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises several types for a damaged header/body
        raise InputError(f"classifier weights at {path} are not a readable safetensors file ({type(error).__name__}); {fix}.") from None
    model = FashionMNISTClassifier()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        expected = sorted(model.state_dict())
        raise InputError(f"classifier weights at {path} do not match FashionMNISTClassifier "
                         f"(expected {len(expected)} tensors, received {len(state)}); {fix}.") from None
    return model.to(device).eval()
