"""Teacher-free quantities: the gap relative to eps_c, and how far guidance moves the samples.

The response to guidance is measured by running the model twice from the same noise, guided at ``w`` and
unguided (``w = 1``), and taking the RMS distance of the states: a model whose guidance does nothing keeps
the two trajectories identical. It reuses the free-running recorder with an unguided view of the model.
"""

from __future__ import annotations

import xarray as xr

from guidegap.denoisers.views import UnguidedView

__all__ = ["UnguidedView", "single_model_dataset"]


def single_model_dataset(paired: xr.Dataset) -> xr.Dataset:
    """Turn a (model guided, model unguided) free-running Dataset into the model's own intrinsic Dataset.

    Keeps the guided model's per-model variables under ``model = "student"`` and renames ``divergence`` to
    ``guidance_response``.
    """
    from guidegap.results.schema import VARIABLES

    per_model = [n for n in paired.data_vars if VARIABLES.get(n) and VARIABLES[n].dims[0] == "model"]
    ds = paired[per_model + ["guidance_scale"]].sel(model=["teacher"]).assign_coords(model=["student"])
    ds["model"].attrs.update(paired["model"].attrs)
    spec = VARIABLES["guidance_response"]
    ds["guidance_response"] = paired["divergence"].assign_attrs(long_name=spec.long_name, units=spec.units)
    ds.attrs.update(paired.attrs)
    return ds
