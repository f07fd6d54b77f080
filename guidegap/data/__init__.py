"""Datasets: Fashion-MNIST (Debian package), samplers for training."""

from guidegap.data.fashion_mnist import load_fashion_mnist

__all__ = ["load_fashion_mnist"]
