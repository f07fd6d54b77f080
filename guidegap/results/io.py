"""Write and read results as netCDF (h5netcdf engine), atomically: a crash leaves the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from guidegap.atomic import atomic_path
from guidegap.errors import InputError
from guidegap.results.schema import validate

__all__ = ["save_dataset", "load_dataset"]


def save_dataset(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    if path.suffix != ".nc":
        raise InputError(f"expected a netCDF file name ending in .nc, received {str(path)!r}; add the .nc suffix.")
    if not path.parent.exists():
        raise InputError(f"the folder {str(path.parent)!r} does not exist; create it or choose another --out path.")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; pass a file name such as {str(path / 'result.nc')!r}.")
    validate(ds)
    try:
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    except OSError as error:  # permissions, a full disk: one line for the CLI, old file untouched
        raise InputError(f"could not write {str(path)!r}: {error.strerror or type(error).__name__}; check the folder is writable.") from None
    return path


def load_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a result written by :func:`save_dataset` fully into memory (the file is closed on return)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such result file: {str(path)!r}; pass the .nc file written by guidegap (--out).")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except Exception as error:  # h5py/h5netcdf raise many types for corrupt files
        raise InputError(f"{str(path)!r} is not a readable netCDF file ({type(error).__name__}); re-run the audit to rewrite it.") from None
    validate(ds)
    return ds
