"""Write and read results as netCDF (h5netcdf engine), atomically: a crash leaves the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from guidegap.atomic import write_bytes_atomic
from guidegap.errors import InputError
from guidegap.results.schema import validate

__all__ = ["save_dataset", "load_dataset", "declared_bytes", "MAX_UNBACKED_BYTES", "MAX_EXPANSION"]

# A result may declare more bytes than its file holds (compression, unwritten fill values) only within bounds: a
# small file must not make a reader allocate gigabytes. Above MAX_UNBACKED_BYTES, at most MAX_EXPANSION x the file.
MAX_UNBACKED_BYTES = 256 << 20
MAX_EXPANSION = 16


def save_dataset(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    if path.suffix != ".nc":
        raise InputError(f"expected a netCDF file name ending in .nc, received {str(path)!r}; add the .nc suffix.")
    if not path.parent.exists():
        raise InputError(f"the folder {str(path.parent)!r} does not exist; create it or choose another path.")
    if not path.parent.is_dir():
        raise InputError(f"{str(path.parent)!r} is a file, not a folder, so {path.name!r} cannot be written in it; "
                         "choose another path.")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; pass a file name such as {str(path / 'result.nc')!r}.")
    validate(ds)
    # Serialised in memory, then written with plain writes: HDF5 itself never meets a full disk (it can crash on one).
    data = ds.to_netcdf(engine="h5netcdf", invalid_netcdf=False)
    try:
        write_bytes_atomic(path, data)
    except OSError as error:  # permissions, a full disk: one line for the CLI, old file untouched
        raise InputError(f"could not write {str(path)!r}: {error.strerror or type(error).__name__}; the old file is "
                         "unchanged; free some space or choose a writable folder.") from None
    return path


def declared_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes the variables and attributes of an HDF5/netCDF file declare, read from its metadata only."""
    import h5py
    import numpy as np

    total = 0

    def add(obj: object) -> None:
        nonlocal total
        for name in getattr(obj, "attrs", {}):
            attr = obj.attrs.get_id(name)
            total += int(np.prod(attr.shape or (1,), dtype=object)) * attr.dtype.itemsize
        if isinstance(obj, h5py.Dataset):
            total += int(np.prod(obj.shape or (1,), dtype=object)) * obj.dtype.itemsize

    with h5py.File(path, "r") as handle:
        add(handle)
        handle.visititems(lambda _, obj: add(obj))
    return total


def load_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a result written by :func:`save_dataset` fully into memory (the file is closed on return)."""
    from guidegap.files import human_bytes, require_regular_file

    path = Path(path)
    if not path.exists() or path.is_dir():
        raise InputError(f"no such result file: {str(path)!r}; pass the .nc file written by guidegap (--out).")
    require_regular_file(path, "a result file")
    try:
        claimed = declared_bytes(path)
    except Exception as error:  # not HDF5 at all, truncated, unreadable, ...
        raise _unreadable(path, error) from None
    size = path.stat().st_size
    if claimed > MAX_UNBACKED_BYTES and claimed > MAX_EXPANSION * size:
        raise InputError(f"{str(path)!r} declares {human_bytes(claimed)} of variables in a {human_bytes(size)} file "
                         "(compressed or never-written data); refusing to load it; re-run the audit to rewrite it.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except Exception as error:  # h5py/h5netcdf raise many types for corrupt files
        raise _unreadable(path, error) from None
    validate(ds)
    return ds


def _unreadable(path: Path, error: Exception) -> InputError:
    if isinstance(error, PermissionError):
        return InputError(f"cannot read {str(path)!r}: permission denied; make it readable (chmod u+r) or copy it.")
    return InputError(f"{str(path)!r} is not a readable netCDF file ({type(error).__name__}); re-run the audit to rewrite it.")
