"""Deprecated: teacher-free recording is :func:`guidegap.recording.trajectory.trace_teacher_free`, its view of the model
:class:`guidegap.denoisers.views.UnguidedView`. Teacher-free audits no longer record the model in the teacher's seat.
"""

from __future__ import annotations

import warnings

import xarray as xr

from guidegap._deprecation import moved_names

__all__ = ["single_model_dataset"]
__getattr__ = moved_names(__name__, {"UnguidedView": "guidegap.denoisers.views:UnguidedView"})


def single_model_dataset(paired: xr.Dataset) -> xr.Dataset:
    """Deprecated: :func:`guidegap.recording.trajectory.trace_teacher_free` records the teacher-free Dataset directly.

    Turned a (model guided, model unguided) free-running Dataset into the model's teacher-free Dataset.

    Keeps the guided model's per-model variables under ``model = "student"`` and renames ``divergence`` to
    ``guidance_response``.
    """
    from guidegap.results.schema import VARIABLES

    warnings.warn("single_model_dataset is deprecated; record teacher-free Datasets with "
                  "guidegap.recording.trajectory.trace_teacher_free.", DeprecationWarning, stacklevel=2)

    per_model = [n for n in paired.data_vars if VARIABLES.get(n) and VARIABLES[n].dims[0] == "model"]
    ds = paired[per_model + ["guidance_scale"]].sel(model=["teacher"]).assign_coords(model=["student"])
    ds["model"].attrs.update(paired["model"].attrs)
    spec = VARIABLES["guidance_response"]
    ds["guidance_response"] = paired["divergence"].assign_attrs(long_name=spec.long_name, units=spec.units)
    ds.attrs.update(paired.attrs)
    return ds
