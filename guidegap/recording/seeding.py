"""Per-sample random streams: sample ``i`` gets the same noise whatever the chunking (seeded determinism)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_seed", "sample_generators", "sample_noise"]

INITIAL_NOISE, SCHEDULER_NOISE, PROBE, PROBE_TIMESTEP = 0, 1, 2, 3


def sample_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed derived from (seed, sample index, stream) with numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def sample_generators(seed: int, indices: range, stream: int) -> list[torch.Generator]:
    """One CPU generator per sample (diffusers' ``randn_tensor`` accepts a list: one per batch row)."""
    return [torch.Generator().manual_seed(sample_seed(seed, i, stream)) for i in indices]


def sample_noise(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise ``(len(generators), *shape)``, row ``i`` drawn from generator ``i``."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])
