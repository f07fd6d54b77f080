"""Held-out images for a data-probe audit (DASH's protocol, :func:`guidegap.probe`), named as the CLI names them.

``fashion-mnist`` and ``cifar10:FOLDER`` / ``cifar100:FOLDER`` give the test split (the images a student was not
trained on); ``oracle[:SEED]`` exact samples of the oracle tier's mixture; ``FILE.npz`` two arrays, ``images``
(N, C, H, W, scaled like the training data, usually [-1, 1]) and integer ``labels`` (N,). An ``.npz`` is read
without unpickling, and its arrays' sizes are checked from their headers before anything is read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from guidegap.errors import InputError

__all__ = ["load_probe_set", "MAX_PROBE_ELEMENTS"]

MAX_PROBE_ELEMENTS = 1 << 30  # 4 GiB of float32 images: beyond any probe set, refused before reading
_ORACLE_PROBE_SEED = 2_000_003  # the oracle's held-out draw: not the stream its training samples come from


def load_probe_set(spec: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of the probe set ``spec``, the first ``limit`` of them (an oracle draws ``limit``, default 1000)."""
    if spec == "fashion-mnist":
        from guidegap.data import load_fashion_mnist

        images, labels = load_fashion_mnist("test")
    elif spec.partition(":")[0] in ("cifar10", "cifar100"):
        from guidegap.data import load_cifar

        name, _, folder = spec.partition(":")
        if not folder:
            raise InputError(f"expected '{name}:/path/to/folder' (a local CIFAR folder), received {spec!r}.")
        images, labels = load_cifar(name, folder, "test")
    elif spec.endswith(".npz"):
        images, labels = _read_npz(Path(spec))
    else:
        from guidegap.oracle.tier import oracle_mixture, parse_oracle

        seed = parse_oracle(spec)
        if seed is None:
            raise InputError(f"expected probe data 'fashion-mnist', 'cifar10:FOLDER', 'cifar100:FOLDER', 'oracle[:SEED]' "
                             f"or a FILE.npz with 'images' and 'labels', received {spec!r}.")
        generator = torch.Generator().manual_seed(_ORACLE_PROBE_SEED + seed)
        return oracle_mixture(seed).sample(limit or 1000, generator=generator)
    return (images[:limit], labels[:limit]) if limit is not None else (images, labels)


def _read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"probe data {str(path)!r} does not exist; pass an existing .npz with 'images' and 'labels'.")
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {name: _header_shape(archive, f"{name}.npy", path) for name in ("images", "labels")}
    except zipfile.BadZipFile:
        raise InputError(f"{str(path)!r} is not an .npz archive; write one with numpy.savez(path, images=..., labels=...).") from None
    count = int(np.prod(shapes["images"], dtype=np.int64))
    if count > MAX_PROBE_ELEMENTS or len(shapes["labels"]) != 1:
        raise InputError(f"{str(path)!r}: expected images of at most {MAX_PROBE_ELEMENTS} elements and labels of shape (N,), "
                         f"received {shapes['images']} and {shapes['labels']}.")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except ValueError as error:  # object arrays (they would need unpickling), a truncated member
        raise InputError(f"{str(path)!r}: cannot read its arrays without unpickling or intact data ({error}); save plain "
                         "numeric arrays with numpy.savez.") from None
    if not np.issubdtype(images.dtype, np.number) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{str(path)!r}: expected numeric images and integer labels, received {images.dtype} and {labels.dtype}.")
    return torch.from_numpy(np.asarray(images, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64))


def _header_shape(archive: zipfile.ZipFile, member: str, path: Path) -> tuple[int, ...]:
    """The shape an ``.npy`` member declares, read from its header alone."""
    if member not in archive.namelist():
        raise InputError(f"{str(path)!r} has no {member[:-4]!r} array; write it with numpy.savez(path, images=..., labels=...).")
    with archive.open(member) as stream:
        try:
            major, _ = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(stream)  # the header only: no data is read
        except ValueError as error:
            raise InputError(f"{str(path)!r}: {member} is not a valid .npy array ({error}).") from None
    return tuple(int(n) for n in shape)
