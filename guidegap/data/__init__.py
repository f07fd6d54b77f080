"""Datasets: Fashion-MNIST (Debian package), CIFAR-10 / CIFAR-100 (local folder), samplers for training."""

from guidegap.data.cifar import load_cifar
from guidegap.data.fashion_mnist import load_fashion_mnist

__all__ = ["load_cifar", "load_fashion_mnist"]
