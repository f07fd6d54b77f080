"""The oracle tier's specification (docs/design.md §4): its mixture and the ``"oracle[:SEED]"`` model spec.

``"oracle"`` / ``"oracle:SEED"`` names the exact teacher of the mixture drawn with that seed; it has no noise
schedule of its own (its eps is exact on any), so it is built on the schedule it is used with.
"""

from __future__ import annotations

from typing import Any

import torch

from guidegap.errors import InputError
from guidegap.oracle.gaussian_mixture import GaussianMixture, OracleDenoiser

__all__ = ["ORACLE_MIXTURE", "oracle_mixture", "parse_oracle", "oracle_teacher"]

# The oracle tier's data: 4 overlapping classes of 2 components in 4 dims, so that p(y | x_t) stays
# uncertain over much of the trajectory and the guidance gap is large enough for a small student to learn.
ORACLE_MIXTURE = {"num_classes": 4, "components_per_class": 2, "sample_shape": (1, 2, 2), "mean_scale": 0.25, "std_range": (0.5, 1.0)}


def oracle_mixture(seed: int = 0) -> GaussianMixture:
    """The oracle tier's class-conditional Gaussian mixture (exact teacher and data source)."""
    return GaussianMixture.random(seed=seed, **ORACLE_MIXTURE)


def parse_oracle(spec: Any) -> int | None:
    """The mixture seed of an ``"oracle"`` / ``"oracle:SEED"`` spec, else ``None``."""
    if not isinstance(spec, str) or not (spec == "oracle" or spec.startswith("oracle:")):
        return None
    try:
        return int(spec.partition(":")[2] or 0)
    except ValueError:
        raise InputError(f"expected 'oracle' or 'oracle:SEED', received {spec!r}.") from None


def oracle_teacher(spec: Any, alphas_cumprod: torch.Tensor) -> OracleDenoiser | None:
    """The exact teacher for an ``"oracle"`` / ``"oracle:SEED"`` spec on the given noise schedule, else ``None``."""
    seed = parse_oracle(spec)
    return None if seed is None else oracle_mixture(seed).denoiser(alphas_cumprod)
