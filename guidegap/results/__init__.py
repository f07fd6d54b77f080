"""Results as xarray Datasets: the schema, atomic netCDF I/O, and the training log's schema and readers.

Importing this package does not register ``ds.guidegap``; ``import guidegap.accessor`` does (:mod:`guidegap.accessor`).
"""

from guidegap.results.io import load_dataset, save_dataset
from guidegap.results.schema import COORDINATES, VARIABLES, config_of, make_dataset, validate

__all__ = ["COORDINATES", "VARIABLES", "config_of", "load_dataset", "make_dataset", "save_dataset", "validate"]
