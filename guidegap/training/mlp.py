"""Moved to :mod:`guidegap.oracle.mlp` (the oracle tier's student); this name stays so old imports and pickles load."""

from guidegap.oracle.mlp import MLPDenoiser, timestep_embedding

__all__ = ["MLPDenoiser", "timestep_embedding"]
