"""GuidanceMonitor(data=...): data-probe checks in a training loop, logged over timestep bins, judged by the probe's bar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import guidegap
from guidegap.auditing.verdicts import Thresholds
from guidegap.errors import InputError
from guidegap.monitoring import GuidanceMonitor, load_log, log_verdicts
from guidegap.monitoring.monitor import DEFAULT_PROBE_SAMPLES
from guidegap.oracle import collapsed_student, oracle_mixture, shrunk_student
from guidegap.results.training_log import PROBE_BINS, probe_by_timestep_bin


@pytest.fixture
def teacher(scheduler):
    return oracle_mixture(0).denoiser(scheduler)


@pytest.fixture
def images(teacher):
    from guidegap.data.probe_sets import load_probe_set

    return load_probe_set("oracle:0", 400)


def test_a_probe_check_is_the_probe_audit_of_the_student_and_its_log_curves_are_over_timestep_bins(tmp_path, scheduler, teacher,
                                                                                                    images):
    monitor = GuidanceMonitor(teacher, data=images, num_samples=400, scheduler=scheduler, store=tmp_path / "g.zarr", raise_on=None)
    student = shrunk_student(teacher, 0.5)
    report = monitor.check(100, student)
    direct = guidegap.audit(student, teacher, data=images, num_samples=400, scheduler=scheduler, n_boot=200)
    assert report.is_probe and report.verdict == direct.verdict
    for name in ("rho", "cos_delta", "rel_guided_error"):
        assert report.summary[name].value == pytest.approx(direct.summary[name].value)
    monitor.check(200, collapsed_student(teacher, 4.0))
    log = load_log(tmp_path / "g.zarr")
    assert log.sizes["step"] == PROBE_BINS and log["timestep"].values.tolist() == list(range(950, -1, -100))
    np.testing.assert_allclose(log["rho_per_step"].sel(training_step=100).values, 0.5, rtol=1e-5)  # every bin's ratio of means
    assert float(log["rho"].sel(training_step=200)) == 0.0
    config = json.loads(log.attrs["config"])
    assert config["mode"] == "data-probe" and config["data"]["source"] == "in-memory data" and "labels" not in config
    assert log_verdicts(log).values.tolist() == log["verdict"].values.tolist() == [report.verdict, "collapsed"]


def test_a_probe_log_is_judged_by_the_probe_bar_when_recomputed(scheduler, teacher, images):
    student = shrunk_student(teacher, 0.9)
    error = guidegap.audit(student, teacher, data=images, num_samples=400, scheduler=scheduler).summary["rel_guided_error"].value
    thresholds = Thresholds(max_rel_guided_error=2 * error, max_rel_guided_error_probe=error / 2)  # passes one bar only
    monitor = GuidanceMonitor(teacher, data=images, num_samples=400, scheduler=scheduler, thresholds=thresholds, raise_on=None)
    assert monitor.check(1, student).verdict == "misguided"
    assert log_verdicts(monitor.log).values.tolist() == ["misguided"]
    assert log_verdicts(monitor.log, thresholds=Thresholds(max_rel_guided_error_probe=2 * error)).values.tolist() == ["healthy"]


def test_a_probe_log_continues_only_on_the_same_images_and_mode(tmp_path, scheduler, teacher, images):
    store = tmp_path / "g.zarr"
    GuidanceMonitor(teacher, data=images, num_samples=300, scheduler=scheduler, store=store).check(10, teacher)
    resumed = GuidanceMonitor(teacher, data=images, scheduler=scheduler, store=store)  # its size: the log's own
    assert resumed.options["num_samples"] == 300
    resumed.check(20, teacher)
    other = (images[0].flip(0), images[1].flip(0))
    with pytest.raises(InputError, match=r"other monitor settings \(data differ\)"):
        GuidanceMonitor(teacher, data=other, num_samples=300, scheduler=scheduler, store=store).check(30, teacher)
    with pytest.raises(InputError, match="other monitor settings .*mode"):
        GuidanceMonitor(teacher, scheduler=scheduler, store=store).check(30, teacher)
    assert load_log(store)["training_step"].values.tolist() == [10, 20]


def test_an_oracle_teacher_probes_its_own_mixture_by_name(teacher, scheduler):
    monitor = GuidanceMonitor("oracle", data="auto", num_samples=200, raise_on=None)
    assert monitor.probe_source["source"] == "oracle:0" and repr(monitor).count("data='oracle:0'") == 1
    assert monitor.check(1, collapsed_student(monitor.teacher, 4.0)).verdict == "collapsed"
    assert DEFAULT_PROBE_SAMPLES == GuidanceMonitor("oracle", data="auto").options["num_samples"] == 1000


def test_bad_probe_settings_are_refused_in_one_line(teacher, scheduler, images):
    for kwargs, match in ((dict(sampling_steps=10), "no sampling steps"), (dict(labels=[0]), "takes its labels from the data"),
                          (dict(num_samples=401), "at least num_samples = 401 probe images, received 400"),
                          (dict(num_samples=0), "positive integer")):
        with pytest.raises(InputError, match=match):
            GuidanceMonitor(teacher, data=images, scheduler=scheduler, **kwargs)
    with pytest.raises(InputError, match="neither model declares any"):
        GuidanceMonitor(teacher, data="auto", scheduler=scheduler)


def test_timestep_bins_put_high_noise_first_and_average_their_own_samples():
    t = np.array([999, 900, 899, 0, 55])
    ds = xr.Dataset({"gap_norm": (("model", "sample"), np.array([[1.0, 3.0, 5.0, 7.0, 9.0], [2.0, 2.0, 2.0, 2.0, 2.0]])),
                     "guidance_scale": ("sample", np.array([1.0, 2.0, 3.0, 4.0, 4.0]))},
                    coords={"model": ["teacher", "student"], "sample": np.arange(5), "timestep": ("sample", t)},
                    attrs={"config": json.dumps({"noise_schedule": {"num_train_timesteps": 1000}})})
    binned = probe_by_timestep_bin(ds)
    teacher_means = binned["gap_norm"].sel(model="teacher").mean("sample").values
    assert teacher_means[0] == 2.0 and teacher_means[1] == 5.0 and teacher_means[9] == 8.0
    assert np.isnan(teacher_means[2:9]).all()
    assert binned["guidance_scale"].values[[0, 1, 9]].tolist() == [1.5, 3.0, 4.0]
    assert binned["timestep"].values[[0, 9]].tolist() == [950, 50]


def test_the_train_command_refuses_audit_data_without_a_light_audit(tmp_path, capsys):
    from guidegap.cli.main import main

    args = ["distill", "--tier", "oracle", "--teacher", "oracle", "--train-steps", "1", "--out", str(tmp_path / "run"),
            "--no-progress", "--audit-data", "auto"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "add --audit-every N" in err
    assert main([*args, "--audit-every", "1", "--train-steps", "2"]) == 0
    log = load_log(tmp_path / "run" / "guidance.zarr")
    assert log["training_step"].values.tolist() == [1, 2] and json.loads(log.attrs["config"])["mode"] == "data-probe"


def test_a_probe_log_plots_its_curves_over_timestep_bins(scheduler, teacher, images):
    import matplotlib

    matplotlib.use("Agg")
    from guidegap.plots import plot_training_curves, plot_training_heatmap

    monitor = GuidanceMonitor(teacher, data=images, num_samples=200, scheduler=scheduler, raise_on=None)
    for step, student in ((1, collapsed_student(teacher, 4.0)), (2, shrunk_student(teacher, 0.5)), (3, teacher)):
        monitor.check(step, student)
    fig = plot_training_heatmap(monitor.log)
    assert any("timestep bin of the data probe" in ax.get_ylabel() for ax in fig.axes)
    plot_training_curves(monitor.log)


def test_a_dataset_of_pairs_and_the_same_images_as_tensors_log_alike(scheduler, teacher, images):
    pairs = [(images[0][i], int(images[1][i])) for i in range(len(images[0]))]
    from_pairs = GuidanceMonitor(teacher, data=pairs, num_samples=100, scheduler=scheduler, raise_on=None)
    from_tensors = GuidanceMonitor(teacher, data=images, num_samples=100, scheduler=scheduler, raise_on=None)
    assert from_pairs.probe_source == from_tensors.probe_source  # same images, same digest
    student = shrunk_student(teacher, 0.7)
    assert from_pairs.check(1, student).summary["rho"].value == from_tensors.check(1, student).summary["rho"].value

