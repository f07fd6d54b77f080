"""Results as xarray Datasets: the schema and atomic netCDF I/O."""

import guidegap.accessor  # noqa: F401  (registers ds.guidegap wherever results are produced or read)
from guidegap.results.io import load_dataset, save_dataset
from guidegap.results.schema import COORDINATES, VARIABLES, config_of, make_dataset, validate

__all__ = ["COORDINATES", "VARIABLES", "config_of", "load_dataset", "make_dataset", "save_dataset", "validate"]
