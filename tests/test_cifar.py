"""CIFAR loading: binary versions and image folders round-trip bytes exactly; the pickled version is never opened."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from guidegap.data import load_cifar
from guidegap.errors import InputError
from guidegap.training.sources import make_source

RECORDS = 7


def _planes(count: int, seed: int) -> np.ndarray:
    """``(count, 3, 32, 32)`` uint8 pixels; image 0 has the planes R=10, G=20, B=30 with three marked pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    pixels[0] = np.array([10, 20, 30], dtype=np.uint8)[:, None, None]
    pixels[0, 0, 2, 5] = 255  # red, row 2, column 5
    pixels[0, 2, 31, 0] = 0  # blue, row 31, column 0
    pixels[0, 1, 31, 31] = seed % 256  # keeps image 0 unique per seed
    return pixels


def _write_bin(path: Path, label_columns: list[np.ndarray], pixels: np.ndarray) -> None:
    """Records of label bytes followed by 3072 pixel bytes (R plane, G plane, B plane, each row-major)."""
    labels = np.stack(label_columns, axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.concatenate([labels, pixels.reshape(len(pixels), -1)], axis=1).tofile(path)


def _cifar10_bin(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Five train batches and one test batch of ``RECORDS`` records each; returns the expected pixels and labels."""
    expected = {}
    for split, files in (("train", [f"data_batch_{i}.bin" for i in range(1, 6)]), ("test", ["test_batch.bin"])):
        pixels, labels = [], []
        for index, file in enumerate(files):
            seed = index + (100 if split == "test" else 0)
            batch_pixels = _planes(RECORDS, seed)
            batch_labels = (np.arange(RECORDS) + 3 * index + (5 if split == "test" else 0)) % 10
            _write_bin(folder / file, [batch_labels], batch_pixels)
            pixels.append(batch_pixels)
            labels.append(batch_labels)
        expected[split] = (np.concatenate(pixels), np.concatenate(labels))
    return expected


def _check(images: torch.Tensor, labels: torch.Tensor, pixels: np.ndarray, expected_labels: np.ndarray) -> None:
    assert images.shape == (len(pixels), 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (len(pixels),) and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert torch.equal(((images + 1.0) * 127.5).round().to(torch.uint8), torch.from_numpy(pixels))
    assert labels.tolist() == expected_labels.tolist()


def test_cifar10_binary_round_trip_and_channel_order(tmp_path: Path) -> None:
    expected = _cifar10_bin(tmp_path / "cifar-10-batches-bin")
    images, labels = load_cifar("cifar10", tmp_path)
    _check(images, labels, *expected["train"])
    assert len(labels) == 5 * RECORDS
    first = images[0]
    assert first[0, 2, 5].item() == 1.0 and first[2, 31, 0].item() == -1.0  # 255 -> 1, 0 -> -1 exactly
    assert first[:, 0, 0].tolist() == pytest.approx([10 / 127.5 - 1, 20 / 127.5 - 1, 30 / 127.5 - 1], abs=1e-6)
    assert first[1, 2, 5].item() == pytest.approx(20 / 127.5 - 1, abs=1e-6)  # the mark is only in the red plane

    test_images, test_labels = load_cifar("cifar10", tmp_path / "cifar-10-batches-bin", split="test")  # root itself
    _check(test_images, test_labels, *expected["test"])
    assert not torch.equal(test_images, images[:RECORDS])


def test_cifar100_binary_uses_fine_label(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    fine = np.array([0, 99, 42, 7, 63, 12, 81])
    coarse = fine // 5
    for split, seed in (("train", 1), ("test", 2)):
        _write_bin(folder / f"{split}.bin", [coarse, fine if split == "train" else fine[::-1]], _planes(RECORDS, seed))
    images, labels = load_cifar("cifar100", tmp_path, "train")
    _check(images, labels, _planes(RECORDS, 1), fine)
    images, labels = load_cifar("cifar100", tmp_path, "test")
    _check(images, labels, _planes(RECORDS, 2), fine[::-1])


def _write_png(path: Path, array: np.ndarray, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_sorted_classes_and_pixels(tmp_path: Path) -> None:
    classes = ["truck", "airplane", "ship", "bird", "horse", "cat", "frog", "deer", "dog", "automobile"]
    pixels = _planes(len(classes), seed=3)
    for index, name in enumerate(classes):
        _write_png(tmp_path / "train" / name / "0.png", pixels[index].transpose(1, 2, 0))
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    _write_png(tmp_path / "train" / "truck" / "1.png", gray, mode="L")
    _write_png(tmp_path / "test" / "cat" / "0.png", pixels[0].transpose(1, 2, 0))

    images, labels = load_cifar("cifar10", tmp_path)
    ids = {name: i for i, name in enumerate(sorted(classes))}
    order = sorted(range(len(classes)), key=lambda i: classes[i])
    expected_pixels = np.concatenate([pixels[order], np.repeat(gray[None], 3, axis=0)[None]])
    _check(images, labels, expected_pixels, np.array([ids[classes[i]] for i in order] + [ids["truck"]]))
    assert labels[-1].item() == 9 and labels[0].item() == 0  # truck sorts last, airplane first

    with pytest.raises(InputError, match="expected 10 class folders, received 1"):
        load_cifar("cifar10", tmp_path, "test")
    _write_png(tmp_path / "train" / "cat" / "big.png", np.zeros((32, 31, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="expected a 32x32 image, received 31x32"):
        load_cifar("cifar10", tmp_path)


def test_make_source_samples_train_split(tmp_path: Path) -> None:
    expected = _cifar10_bin(tmp_path / "cifar-10-batches-bin")
    source = make_source(f"cifar10:{tmp_path}")
    assert source.num_classes == 10 and source.sample_shape == (3, 32, 32)
    x0, labels = source.sample(16, torch.Generator().manual_seed(0))
    assert x0.shape == (16, 3, 32, 32) and labels.shape == (16,)
    pixels, all_labels = expected["train"]
    raw = ((x0 + 1.0) * 127.5).round().to(torch.uint8).numpy()
    for image, label in zip(raw, labels.tolist()):
        matches = np.flatnonzero((pixels == image).all(axis=(1, 2, 3)))
        assert len(matches) == 1 and all_labels[matches[0]] == label
    again, _ = source.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(x0, again)

    folder = tmp_path / "c100" / "cifar-100-binary"
    _write_bin(folder / "train.bin", [np.zeros(RECORDS), np.arange(RECORDS) * 14], _planes(RECORDS, 0))
    assert make_source(f"cifar100:{tmp_path / 'c100'}").num_classes == 100
    with pytest.raises(InputError, match="cifar10:/path/to/folder"):
        make_source("cifar10:")
    with pytest.raises(InputError, match="'cifar100:/path/to/folder'"):
        make_source("cifar-10")


def _live_payload(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when unpickled, standing in for code a pickled file could run."""

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")

    return pickle.dumps(Payload())


@pytest.mark.parametrize("name, folder, files", [
    ("cifar10", "cifar-10-batches-py", ["data_batch_1", "data_batch_2", "test_batch", "batches.meta"]),
    ("cifar100", "cifar-100-python", ["train", "test", "meta"]),
])
def test_pickled_version_is_refused_without_unpickling(tmp_path: Path, name: str, folder: str, files: list[str]) -> None:
    probe = tmp_path / "probe"
    pickle.loads(_live_payload(probe))
    assert probe.exists()  # the payload does run code when unpickled

    data, marker = tmp_path / "data", tmp_path / "unpickled"
    (data / folder).mkdir(parents=True)
    for file in files:
        (data / folder / file).write_bytes(_live_payload(marker))
    for root in (data, data / folder):
        with pytest.raises(InputError, match="unpickling") as error:
            load_cifar(name, root)
        assert "binary.tar.gz" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_bad_binary_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    _cifar10_bin(folder)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(InputError, match=f"whole number of 3073-byte records, received {RECORDS * 3073 - 1} bytes"):
        load_cifar("cifar10", tmp_path)
    _write_bin(path, [np.array([0, 1, 10])], _planes(3, 0))
    with pytest.raises(InputError, match=r"expected labels 0\.\.9, received 10 in record 2"):
        load_cifar("cifar10", tmp_path)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(InputError, match="missing data_batch_5.bin"):
        load_cifar("cifar10", tmp_path)
    assert load_cifar("cifar10", tmp_path, "test")[0].shape[0] == RECORDS

    bad100 = tmp_path / "c100" / "cifar-100-binary"
    _write_bin(bad100 / "train.bin", [np.zeros(2), np.array([5, 100])], _planes(2, 0))
    with pytest.raises(InputError, match=r"expected labels 0\.\.99, received 100 in record 1"):
        load_cifar("cifar100", tmp_path / "c100")


def test_bad_arguments_and_missing_data(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected dataset name 'cifar10' or 'cifar100', received 'cifar-10'"):
        load_cifar("cifar-10", tmp_path)
    with pytest.raises(InputError, match="expected split 'train' or 'test', received 'valid'"):
        load_cifar("cifar10", tmp_path, "valid")
    with pytest.raises(InputError, match="not a folder"):
        load_cifar("cifar10", tmp_path / "absent")
    with pytest.raises(InputError, match="received neither; download the binary version"):
        load_cifar("cifar100", tmp_path)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"")
    with pytest.raises(InputError, match="not extracted; run: tar -xzf"):
        load_cifar("cifar10", tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(InputError, match="received no such folder"):
        load_cifar("cifar10", tmp_path, "test")


def test_the_paper_tier_asks_for_a_cifar_folder_instead_of_defaulting_to_fashion_mnist():
    from guidegap.training.config import TrainConfig

    with pytest.raises(InputError, match="cifar10:"):
        TrainConfig(out="unused", role="teacher", tier="paper")


def test_a_probe_set_is_the_test_split(tmp_path: Path) -> None:
    from guidegap.data.probe_sets import load_probe_set

    expected = _cifar10_bin(tmp_path / "cifar-10-batches-bin")
    images, labels = load_probe_set(f"cifar10:{tmp_path}", 5)
    pixels, test_labels = expected["test"]
    _check(images, labels, pixels[:5], test_labels[:5])
    with pytest.raises(InputError, match="cifar10:/path/to/folder"):
        load_probe_set("cifar10:")
