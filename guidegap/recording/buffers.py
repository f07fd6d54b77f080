"""Preallocated per-sample metric buffers, filled chunk by chunk and step by step.

Only scalars per (model, sample, step) are kept, so memory does not grow with full tensors unless
``keep_predictions`` asks for them.
"""

from __future__ import annotations

import numpy as np
import torch

from guidegap.results.schema import VARIABLES

__all__ = ["MetricBuffers"]


class MetricBuffers:
    """Arrays named as in the schema; ``put`` writes a chunk's values for one step (or for a probe)."""

    def __init__(self, num_models: int, num_samples: int, num_steps: int | None) -> None:
        self.num_models, self.num_samples, self.num_steps = num_models, num_samples, num_steps
        self.arrays: dict[str, np.ndarray] = {}

    def _array(self, name: str, per_model: bool, tail: tuple[int, ...] = (), dtype: type = np.float64) -> np.ndarray:
        if name not in self.arrays:
            shape = ((self.num_models,) if per_model else ()) + (self.num_samples,)
            shape += (self.num_steps,) if self.num_steps is not None else ()
            fill = np.nan if np.issubdtype(dtype, np.floating) else 0
            self.arrays[name] = np.full(shape + tail, fill, dtype=dtype)
        return self.arrays[name]

    def put(self, values: dict[str, torch.Tensor], rows: slice, step: int | None, model: int | None = None) -> None:
        """Store per-sample values for samples ``rows`` at ``step``; ``model`` indexes per-model variables."""
        for name, tensor in values.items():
            per_model = VARIABLES[name].dims[0] == "model"
            host = tensor.detach().to("cpu")
            if name == "nonfinite":
                array = self._array(name, per_model, dtype=np.int8)
                host = host.to(torch.int8)
            elif host.ndim > 1:  # full predictions / states: float32 like the model
                array = self._array(name, per_model, tuple(host.shape[1:]), dtype=np.float32)
                host = host.to(torch.float32)
            else:
                array = self._array(name, per_model)
                host = host.to(torch.float64)
            index = ((model,) if per_model else ()) + (rows,) + ((step,) if step is not None else ())
            array[index] = host.numpy()
