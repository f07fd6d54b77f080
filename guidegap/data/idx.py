"""Reader for the IDX format (MNIST / Fashion-MNIST), gzipped or not, with magic numbers and shapes checked."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from guidegap.errors import InputError

__all__ = ["read_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file: magic ``0x00 0x00 <dtype> <ndim>``, big-endian dims, then the data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: cannot read the IDX file ({type(error).__name__}: {error}); reinstall the dataset.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()}); reinstall the dataset.")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise InputError(f"{path}: expected an IDX array of {expected_ndim} dims, received {ndim}.")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) != header + count * dtype.itemsize:
        raise InputError(f"{path}: truncated or padded IDX file ({len(raw)} bytes for shape {dims}); reinstall the dataset.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
