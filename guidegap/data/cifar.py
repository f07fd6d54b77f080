"""CIFAR-10 / CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images") from a local folder.

Nothing is ever downloaded. Two layouts are read, detected under ``root`` (``root`` itself or the official
subfolder):

- the official binary version (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): CIFAR-10
  ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``, records of 1 label byte + 3072 pixel
  bytes; CIFAR-100 ``cifar-100-binary/train.bin`` and ``test.bin``, records of 1 coarse label byte + 1 fine
  label byte + 3072 pixel bytes (the fine label is used). Pixels are 1024 red, 1024 green, 1024 blue bytes,
  each a row-major 32x32 plane;
- an image folder ``root/<split>/<class_name>/*.png``, class ids given by the sorted class names.

The official *python* version is pickled and is refused: unpickling a file can run arbitrary code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from guidegap.errors import InputError

__all__ = ["CIFAR_NAMES", "load_cifar"]

_PIXELS = 3 * 32 * 32
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Format:
    num_classes: int
    binary_folder: str
    python_folder: str
    python_files: tuple[str, ...]  # files that identify the pickled version when found directly in root
    files: dict[str, tuple[str, ...]]
    label_bytes: int  # bytes before the pixels; the label used is the last of them
    archive: str


_FORMATS = {
    "cifar10": _Format(10, "cifar-10-batches-bin", "cifar-10-batches-py", ("batches.meta", "data_batch_1"),
                       {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
                       1, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
    "cifar100": _Format(100, "cifar-100-binary", "cifar-100-python", ("meta", "train"),
                        {"train": ("train.bin",), "test": ("test.bin",)},
                        2, "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"),
}
CIFAR_NAMES = tuple(_FORMATS)


def load_cifar(name: str, root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, 32, 32)`` float32 scaled to [-1, 1] and labels ``(N,)`` int64 from a local CIFAR folder."""
    if name not in _FORMATS:
        raise InputError(f"expected dataset name 'cifar10' or 'cifar100', received {name!r}.")
    if split not in _SPLITS:
        raise InputError(f"expected split 'train' or 'test', received {split!r}.")
    fmt, root = _FORMATS[name], Path(root).expanduser()
    if not root.is_dir():
        raise InputError(
            f"expected a folder holding {name}, received {str(root)!r}, which is not a folder; "
            f"pass the folder that holds {fmt.binary_folder}/ (extracted from {fmt.archive}) or <split>/<class>/*.png."
        )
    binary = _find_binary(fmt, root)
    if binary is not None:
        pixels, labels = _read_binary(fmt, binary, split)
    elif (root / "train").is_dir() or (root / "test").is_dir():
        pixels, labels = _read_image_folder(fmt, root, split)
    else:
        raise InputError(_not_found(name, fmt, root))
    images = torch.from_numpy(pixels).float().div_(127.5).sub_(1.0)
    return images, torch.from_numpy(labels.astype(np.int64))


def _find_binary(fmt: _Format, root: Path) -> Path | None:
    """The folder holding the binary version's files: ``root`` itself or ``root/<binary_folder>``."""
    known = {file for files in fmt.files.values() for file in files}
    for folder in (root, root / fmt.binary_folder):
        if folder.is_dir() and any((folder / file).is_file() for file in known):
            return folder
    return None


def _read_binary(fmt: _Format, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [file for file in fmt.files[split] if not (folder / file).is_file()]
    if missing:
        raise InputError(
            f"expected the {split} files {', '.join(fmt.files[split])} in {folder}, missing {', '.join(missing)}; "
            f"extract the complete archive {fmt.archive} there."
        )
    record = fmt.label_bytes + _PIXELS
    pixels, labels = [], []
    for file in fmt.files[split]:
        path = folder / file
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise InputError(
                f"{path}: expected a whole number of {record}-byte records, received {raw.size} bytes "
                f"(truncated or not a CIFAR binary file); extract {fmt.archive} again."
            )
        raw = raw.reshape(-1, record)
        label = raw[:, fmt.label_bytes - 1]
        if int(label.max()) >= fmt.num_classes:
            bad = int(np.argmax(label >= fmt.num_classes))
            raise InputError(
                f"{path}: expected labels 0..{fmt.num_classes - 1}, received {int(label[bad])} in record {bad}; "
                f"the file is corrupt or belongs to another dataset; extract {fmt.archive} again."
            )
        pixels.append(raw[:, fmt.label_bytes:].reshape(-1, 3, 32, 32))
        labels.append(label)
    return np.concatenate(pixels), np.concatenate(labels)


def _read_image_folder(fmt: _Format, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    folder = root / split
    if not folder.is_dir():
        raise InputError(
            f"expected an image folder {folder}/<class_name>/*.png for split {split!r}, received no such folder; "
            f"create it or choose the other split."
        )
    classes = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if len(classes) != fmt.num_classes:
        raise InputError(
            f"{folder}: expected {fmt.num_classes} class folders, received {len(classes)}; "
            f"put each class's .png images in {folder}/<class_name>/."
        )
    pixels, labels = [], []
    for label, class_name in enumerate(classes):
        files = sorted((folder / class_name).glob("*.png"))
        if not files:
            raise InputError(f"{folder / class_name}: expected .png images, received none; add the class's 32x32 .png images.")
        for path in files:
            try:
                with Image.open(path) as image:
                    array = np.asarray(image.convert("RGB"))
            except OSError as error:
                raise InputError(
                    f"{path}: expected a readable .png image, received {type(error).__name__}: {error}; re-save it as PNG."
                ) from None
            if array.shape != (32, 32, 3):
                raise InputError(
                    f"{path}: expected a 32x32 image, received {array.shape[1]}x{array.shape[0]}; resize it to 32x32."
                )
            pixels.append(array.transpose(2, 0, 1))
            labels.append(label)
    return np.stack(pixels), np.asarray(labels, dtype=np.int64)


def _not_found(name: str, fmt: _Format, root: Path) -> str:
    """The message for a folder without a readable layout; the pickled version is named, never opened."""
    pickled = [folder for folder in (root, root / fmt.python_folder)
               if folder.is_dir() and all((folder / file).is_file() for file in fmt.python_files)]
    fix = (f"download the binary version {fmt.archive} and extract it in {root}, "
           f"or use an image folder {root}/<split>/<class_name>/*.png.")
    if pickled:
        return (f"{pickled[0]} holds the python (pickled) version of {name}, which guidegap does not read "
                f"because unpickling a file can run arbitrary code; {fix}")
    archive = root / fmt.archive.rsplit("/", 1)[1]
    if archive.is_file():
        return f"{archive} is not extracted; run: tar -xzf {archive} -C {root}"
    return f"expected {name} in {root} ({fmt.binary_folder}/ or <split>/<class_name>/*.png), received neither; {fix}"
