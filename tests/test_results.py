"""Results: netCDF round-trips of every Dataset form, atomic writes, schema validation, clear load errors."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import guidegap
import guidegap.atomic
from guidegap.errors import GuidegapError, InputError
from guidegap.oracle import GaussianMixture, shrunk_student
from guidegap.recording.schedulers import default_scheduler, make_scheduler
from guidegap.results import COORDINATES, VARIABLES, config_of, load_dataset, save_dataset, validate


@pytest.fixture(scope="module")
def forms() -> dict[str, xr.Dataset]:
    """One Dataset of every recorded form, built once for the module (Datasets are not modified in place)."""
    scheduler = default_scheduler()
    oracle = GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(scheduler)
    student = shrunk_student(oracle, 0.5)
    kwargs = dict(num_samples=3, num_steps=4, scheduler=scheduler)
    x0, labels = oracle.mixture.sample(5, generator=torch.Generator().manual_seed(0))
    return {
        "teacher-forced": guidegap.trace(oracle, student, **kwargs),
        "free-running": guidegap.trace(oracle, student, mode="free-running", **kwargs),
        "single-model": guidegap.trace(oracle, None, **kwargs),
        "keep-predictions": guidegap.trace(oracle, student, keep_predictions=True, **kwargs),
        # Euler's timesteps at 5 steps are fractional (749.25, ...): stored as float64
        "euler": guidegap.trace(oracle, student, num_samples=3, num_steps=5, scheduler=make_scheduler("euler", base=scheduler)),
        "data-probe": guidegap.probe(oracle, student, (x0, labels), scheduler=scheduler),
    }


@pytest.fixture
def pair_trace(forms):
    return forms["teacher-forced"].copy(deep=True)


@pytest.mark.parametrize("kind", ["teacher-forced", "free-running", "single-model", "keep-predictions", "euler", "data-probe"])
def test_save_then_load_is_identical(forms, tmp_path, kind):
    ds = forms[kind]
    path = save_dataset(ds, tmp_path / "result.nc")
    assert path == tmp_path / "result.nc" and path.is_file()
    back = load_dataset(path)
    xr.testing.assert_identical(ds, back)
    # dtypes that matter downstream survive the file
    assert back.nonfinite.dtype == np.int8
    assert back.label.dtype == np.int64 and back.sample.dtype == np.int64
    assert back.model.values.tolist() == ds.model.values.tolist()
    assert all(type(m) is str for m in back.model.values.tolist())
    assert back.timestep.dtype == ds.timestep.dtype
    assert config_of(back) == config_of(ds)
    # and so do the features of each form
    if kind == "free-running":
        assert "divergence" in back and back.divergence.dims == ("sample", "step")
    else:
        assert "divergence" not in back
    if kind == "single-model":
        assert back.model.values.tolist() == ["teacher"] and "gap_cos" not in back
    if kind == "keep-predictions":
        assert back.pred_cond.dims == ("model", "sample", "step", "channel", "height", "width")
        assert back.pred_cond.dtype == np.float32 and back.state.shape == (2, 3, 4, 1, 4, 4)
    if kind == "euler":
        assert back.timestep.dtype == np.float64 and back.timestep.values[1] == pytest.approx(749.25)
    elif kind != "data-probe":
        assert back.timestep.dtype == np.int64
    if kind == "data-probe":
        assert "step" not in back.dims and back.attrs["mode"] == "data-probe"
        assert back.timestep.dims == ("sample",) and back.guidance_scale.dims == ("sample",)


def test_loaded_data_is_in_memory_and_the_file_is_closed(pair_trace, tmp_path):
    path = save_dataset(pair_trace, tmp_path / "result.nc")
    back = load_dataset(path)
    path.unlink()
    save_dataset(pair_trace.assign(gap_norm=pair_trace.gap_norm * 0), path)  # same name, new content
    assert float(back.gap_norm.sum()) == float(pair_trace.gap_norm.sum()) > 0


def test_every_variable_and_coordinate_has_metadata_and_config_parses(forms):
    for kind, ds in forms.items():
        for name, var in ds.variables.items():
            assert isinstance(var.attrs.get("long_name"), str) and var.attrs["long_name"], (kind, name)
            assert isinstance(var.attrs.get("units"), str) and var.attrs["units"], (kind, name)
            spec = VARIABLES.get(name) or COORDINATES.get(name)
            assert spec is not None, f"{name} is not in the schema"
            assert var.attrs["long_name"] == spec.long_name and var.attrs["units"] == spec.units
        for key, value in ds.attrs.items():
            assert isinstance(value, (str, int, float)) and not isinstance(value, bool), (kind, key)
    ds = forms["free-running"]
    config = config_of(ds)
    assert config["num_samples"] == 3 and config["num_steps"] == 4 and config["seed"] == 0
    assert config["scheduler"]["class"] == "DDIMScheduler" and config["scheduler"]["num_train_timesteps"] == 1000
    assert set(config["models"]) == {"teacher", "student"}
    assert config["models"]["teacher"]["num_classes"] == 4 and config["models"]["teacher"]["null_label"] == 4
    assert config["mode"] == "free-running" and ds.attrs["mode"] == "free-running"


# -- atomic writes ---------------------------------------------------------------------------------


def test_writing_over_an_existing_file_replaces_it(pair_trace, tmp_path):
    path = tmp_path / "result.nc"
    save_dataset(pair_trace, path)
    changed = pair_trace.assign(gap_norm=pair_trace.gap_norm * 2).assign_attrs(history="second write")
    save_dataset(changed, path)
    back = load_dataset(path)
    xr.testing.assert_identical(back, changed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(pair_trace, tmp_path, monkeypatch):
    path = tmp_path / "result.nc"
    save_dataset(pair_trace, path)
    before = path.read_bytes()
    real_write_all = guidegap.atomic._write_all
    written: list[str] = []

    def half_then_disk_full(fd, data):  # the disk fills up half-way through the file
        real_write_all(fd, bytes(data)[: len(data) // 2])
        written.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else "temp")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(guidegap.atomic, "_write_all", half_then_disk_full)
    with pytest.raises(InputError, match="No space left on device.*old file is unchanged"):
        save_dataset(pair_trace.assign(gap_norm=pair_trace.gap_norm + 1), path)
    assert written and written[0] != str(path)  # wrote a temp file beside it
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]
    # a failure writing a new file leaves nothing at all
    with pytest.raises(InputError):
        save_dataset(pair_trace, tmp_path / "new.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]
    monkeypatch.undo()
    xr.testing.assert_identical(load_dataset(path), pair_trace)


def test_an_os_error_while_writing_is_one_clear_line(pair_trace, tmp_path, monkeypatch):
    path = tmp_path / "result.nc"
    save_dataset(pair_trace, path)
    before = path.read_bytes()

    def read_only(path, suffix=".tmp"):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(guidegap.atomic, "temp_file_beside", read_only)
    with pytest.raises(InputError, match="Permission denied") as info:
        save_dataset(pair_trace, path)
    assert "\n" not in str(info.value) and "result.nc" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]


def test_save_needs_an_nc_name_in_an_existing_folder(pair_trace, tmp_path):
    with pytest.raises(InputError, match=r"\.nc"):
        save_dataset(pair_trace, tmp_path / "result.txt")
    with pytest.raises(InputError, match="does not exist"):
        save_dataset(pair_trace, tmp_path / "missing" / "result.nc")
    (tmp_path / "folder.nc").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        save_dataset(pair_trace, tmp_path / "folder.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.nc"]


# -- validation ------------------------------------------------------------------------------------


def _one_line_error(ds: xr.Dataset, match: str) -> str:
    with pytest.raises(GuidegapError, match=match) as info:
        validate(ds)
    message = str(info.value)
    assert "\n" not in message and message == " ".join(message.split())
    return message


@pytest.mark.parametrize("attr", ["long_name", "units"])
@pytest.mark.parametrize("name", ["gap_norm", "gap_cos", "timestep", "label", "model"])
def test_validate_requires_long_name_and_units(pair_trace, name, attr):
    ds = pair_trace.copy(deep=True)
    del ds[name].attrs[attr]
    assert name in _one_line_error(ds, "long_name/units")


@pytest.mark.parametrize("value", [{"a": 1}, None, True, np.bool_(False), [1, 2], object(), b"raw", 1j])
def test_validate_rejects_attrs_netcdf_cannot_store(pair_trace, tmp_path, value):
    ds = pair_trace.assign_attrs(extra=value)
    assert "extra" in _one_line_error(ds, "netCDF cannot store")
    with pytest.raises(InputError, match="netCDF cannot store"):
        save_dataset(ds, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []
    bad_variable = pair_trace.copy(deep=True)
    bad_variable.gap_norm.attrs["extra"] = value
    assert "gap_norm" in _one_line_error(bad_variable, "netCDF cannot store")


def test_validate_accepts_numeric_array_attrs_and_they_round_trip(pair_trace, tmp_path):
    ds = pair_trace.assign_attrs(widths=np.array([1, 2, 3]), scale=np.float64(0.5))
    xr.testing.assert_identical(load_dataset(save_dataset(ds, tmp_path / "ok.nc")), ds)


@pytest.mark.parametrize("name", ["guidegap_version", "mode", "config"])
def test_validate_requires_provenance_attrs(pair_trace, name):
    ds = pair_trace.copy()
    del ds.attrs[name]
    assert name in _one_line_error(ds, name)


def test_validate_rejects_a_bad_mode_or_config(pair_trace):
    _one_line_error(pair_trace.assign_attrs(mode="sideways"), "mode")
    _one_line_error(pair_trace.assign_attrs(config="not json {"), "JSON object")
    _one_line_error(pair_trace.assign_attrs(config=json.dumps([1, 2])), "JSON object")
    _one_line_error(pair_trace.assign_attrs(config=3), "JSON object")
    with pytest.raises(InputError, match="JSON object"):
        config_of(pair_trace.assign_attrs(config="{truncated"))


def test_validate_rejects_wrong_dims(pair_trace):
    _one_line_error(pair_trace.assign(gap_cos=pair_trace.gap_cos.transpose("step", "sample")), "'gap_cos': expected dims")
    _one_line_error(pair_trace.assign(gap_norm=pair_trace.gap_norm.isel(model=0, drop=True)), "'gap_norm': expected dims")
    _one_line_error(pair_trace.assign(guidance_scale=pair_trace.gap_cos), "'guidance_scale': expected dims")
    moved = pair_trace.drop_vars("timestep").assign_coords(
        timestep=xr.Variable("sample", [1, 2, 3], {"long_name": "t", "units": "training timestep"}))
    _one_line_error(moved, "'timestep': expected dims")
    _one_line_error(pair_trace.assign(divergence=pair_trace.gap_norm), "'divergence': expected dims")


def test_validate_rejects_what_is_not_a_dataset(pair_trace):
    with pytest.raises(InputError, match=r"xarray.Dataset\), received DataArray"):
        validate(pair_trace.gap_norm)


def test_validate_accepts_every_recorded_form(forms):
    for ds in forms.values():
        validate(ds)


# -- reading bad files -----------------------------------------------------------------------------


def _load_error(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


def test_load_missing_path_or_folder(tmp_path):
    _load_error(tmp_path / "nope.nc", "no such result file")
    _load_error(tmp_path, "no such result file")


@pytest.fixture(scope="module")
def file_bytes(forms, tmp_path_factory) -> bytes:
    return save_dataset(forms["teacher-forced"], tmp_path_factory.mktemp("full") / "full.nc").read_bytes()


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.5, 0.9, 0.99])
def test_load_truncated_file(file_bytes, tmp_path, fraction):
    cut = tmp_path / "cut.nc"
    cut.write_bytes(file_bytes[: int(len(file_bytes) * fraction)])
    _load_error(cut, "not a readable netCDF file")


def test_load_random_bytes_and_netcdf3(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    _load_error(junk, "not a readable netCDF file")
    header = tmp_path / "header.nc"
    header.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(1).bytes(4096))
    _load_error(header, "not a readable netCDF file")


def test_load_a_netcdf_that_guidegap_did_not_write(tmp_path):
    plain = tmp_path / "plain.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}, attrs={"title": "x"}).to_netcdf(plain, engine="h5netcdf")
    _load_error(plain, "guidegap_version")


def test_load_a_result_edited_into_an_invalid_one(pair_trace, tmp_path):
    edited = pair_trace.copy(deep=True)
    del edited.gap_norm.attrs["units"]
    path = tmp_path / "edited.nc"
    edited.to_netcdf(path, engine="h5netcdf")
    _load_error(path, "long_name/units")
    pair_trace.assign_attrs(config="{broken").to_netcdf(path, engine="h5netcdf")
    _load_error(path, "JSON object")
