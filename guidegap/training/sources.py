"""Training data sources: ``sample(batch_size, generator) -> (x0, labels)``, deterministic for a generator.

Sampling with replacement from a per-step generator makes every step's batch a pure function of
(seed, step, rank): a killed run resumes bit for bit without saving a data-loader position.
"""

from __future__ import annotations

from typing import Protocol

import torch

from guidegap.errors import InputError

__all__ = ["DataSource", "TensorSource", "MixtureSource", "make_source"]


class DataSource(Protocol):
    num_classes: int
    sample_shape: tuple[int, ...]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


class TensorSource:
    """Images and labels held in memory (Fashion-MNIST, CIFAR), drawn uniformly with replacement."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise InputError(f"expected as many labels as images (> 0), received {images.shape[0]} and {labels.shape[0]}.")
        self.images, self.labels = images.float(), labels.long()
        self.num_classes = int(num_classes or int(labels.max()) + 1)
        self.sample_shape = tuple(images.shape[1:])

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, self.images.shape[0], (batch_size,), generator=generator)
        return self.images[index], self.labels[index]


class MixtureSource:
    """Exact samples from the oracle tier's class-conditional Gaussian mixture."""

    def __init__(self, mixture: object) -> None:
        self.mixture = mixture
        self.num_classes = int(mixture.num_classes)
        self.sample_shape = tuple(mixture.sample_shape)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mixture.sample(batch_size, generator=generator)


def make_source(name: str) -> DataSource:
    """``"fashion-mnist"`` (Debian package), ``"cifar10:FOLDER"`` / ``"cifar100:FOLDER"`` (train split of a local
    CIFAR folder, see :func:`guidegap.data.load_cifar`) or ``"oracle"`` / ``"oracle:SEED"`` (the oracle tier's mixture)."""
    from guidegap.oracle.tier import oracle_mixture, parse_oracle

    if name == "fashion-mnist":
        from guidegap.data import load_fashion_mnist

        images, labels = load_fashion_mnist("train")
        return TensorSource(images, labels, 10)
    dataset, _, folder = name.partition(":")
    if dataset in ("cifar10", "cifar100"):
        from guidegap.data import load_cifar

        if not folder:
            raise InputError(f"expected '{dataset}:/path/to/folder' (a local CIFAR folder), received {name!r}.")
        images, labels = load_cifar(dataset, folder, "train")
        return TensorSource(images, labels, 10 if dataset == "cifar10" else 100)
    seed = parse_oracle(name)
    if seed is not None:
        return MixtureSource(oracle_mixture(seed))
    raise InputError(
        f"expected data 'fashion-mnist', 'cifar10:/path/to/folder', 'cifar100:/path/to/folder' or 'oracle[:SEED]', "
        f"received {name!r}."
    )
