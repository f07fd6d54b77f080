"""Held-out images for a data-probe audit (DASH's protocol, :func:`guidegap.probe`), named as the CLI names them.

``fashion-mnist`` and ``cifar10:FOLDER`` / ``cifar100:FOLDER`` give the test split (the images a student was not
trained on); ``oracle[:SEED]`` exact samples of the oracle tier's mixture; ``FILE.npz`` two arrays, ``images``
(N, C, H, W, scaled like the training data, usually [-1, 1]) and integer ``labels`` (N,). An ``.npz`` is read
without unpickling, and its arrays' sizes are checked from their headers before anything is read.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from guidegap.errors import InputError

__all__ = ["load_probe_set", "MAX_PROBE_ELEMENTS"]

MAX_PROBE_ELEMENTS = 1 << 28  # image elements (at most 8 bytes each in the file, 1 GiB as float32): refused beyond, unread
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
            headers = {name: _header(archive, f"{name}.npy", path) for name in ("images", "labels")}
    except zipfile.BadZipFile:
        raise InputError(f"{str(path)!r} is not an .npz archive; write one with numpy.savez(path, images=..., labels=...).") from None
    (shape, dtype), (label_shape, label_dtype) = headers["images"], headers["labels"]
    if dtype.kind not in "biuf" or label_dtype.kind not in "iu":  # decided from the headers, before reading
        raise InputError(f"{str(path)!r}: expected real numeric images and integer labels, received {dtype} and {label_dtype}; "
                         "save plain numeric arrays with numpy.savez.")
    count = math.prod(shape)
    if count > MAX_PROBE_ELEMENTS or len(shape) < 2 or label_shape != shape[:1]:
        raise InputError(f"{str(path)!r}: expected images (N, ...) of at most {MAX_PROBE_ELEMENTS} elements and labels of "
                         f"shape (N,), received {shape} and {label_shape}.")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # truncated or corrupt members
        raise InputError(f"{str(path)!r}: its arrays cannot be read ({type(error).__name__}: {error}); write the file again "
                         "with numpy.savez.") from None
    return torch.from_numpy(np.asarray(images, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64))


def _header(archive: zipfile.ZipFile, member: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` member declares, read from its header alone."""
    if member not in archive.namelist():
        raise InputError(f"{str(path)!r} has no {member[:-4]!r} array; write it with numpy.savez(path, images=..., labels=...).")
    with archive.open(member) as stream:
        try:
            major, _ = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(stream)  # the header only: no data is read
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise InputError(f"{str(path)!r}: {member} is not a valid .npy array ({error}).") from None
    return tuple(int(n) for n in shape), dtype
