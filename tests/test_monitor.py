"""GuidanceMonitor: a zarr log with one entry per check, raising on collapse, main process only; the pytest helper."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import guidegap
from guidegap.auditing.verdicts import VERDICTS
from guidegap.errors import GuidegapError, InputError
from guidegap.metrics.summary import rho_per_step
from guidegap.monitoring import GuidanceCollapseError, GuidanceMonitor, load_log
from guidegap.monitoring.monitor import DEFAULT_NUM_SAMPLES, DEFAULT_SAMPLING_STEPS
from guidegap.oracle import collapsed_student, oracle_mixture, shifted_student, shrunk_student
from guidegap.testing import assert_guidance_healthy
from guidegap.training.architectures import build, model_spec
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train
from guidegap.training.noise import add_noise

from conftest import DESIGN


@pytest.fixture
def mixture_teacher(scheduler):
    return oracle_mixture(0).denoiser(scheduler)


def test_monitor_in_the_trainer_logs_one_entry_per_check_equal_to_an_audit_of_the_student(tmp_path):
    store = tmp_path / "run" / "guidance.zarr"
    monitor = GuidanceMonitor("oracle", store=store)
    config = TrainConfig(out=str(tmp_path / "run"), tier="oracle", teacher="oracle", objective="dash", train_steps=30,
                         batch_size=128, audit_every=10, checkpoint_every=30, log_every=10, progress=False)
    result = train(config, callbacks=[monitor])

    log = load_log(store)
    assert log["training_step"].values.tolist() == [10, 20, 30]
    assert log["rho_per_step"].dims == ("training_step", "step") and log.sizes["step"] == DEFAULT_SAMPLING_STEPS
    assert log["gap_norm_per_step"].dims == ("training_step", "model", "step")
    assert set(log["verdict"].values) <= set(VERDICTS)
    for name, var in log.variables.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name
    # the trainer logged the same numbers with the step
    jsonl = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "audit_rho" in line]
    assert [e["step"] for e in jsonl] == [10, 20, 30]
    assert [e["audit_rho"] for e in jsonl] == log["rho"].values.tolist()
    assert [e["audit_verdict"] for e in jsonl] == log["verdict"].values.tolist()
    assert [e["audit_rel_guided_error"] for e in jsonl] == log["rel_guided_error"].values.tolist()  # the default rule's
    # same seed and settings: the last entry is exactly the audit of the stored EMA student
    report = guidegap.audit(str(result.checkpoint), "oracle", num_samples=DEFAULT_NUM_SAMPLES, num_steps=DEFAULT_SAMPLING_STEPS, n_boot=200)
    last = log.isel(training_step=-1)
    assert float(last["rho"]) == report.summary["rho"].value
    assert float(last["cos_delta"]) == report.summary["cos_delta"].value
    assert str(last["verdict"].values) == report.verdict
    np.testing.assert_array_equal(last["rho_per_step"].values, rho_per_step(report.dataset).values)


def test_monitor_raises_when_the_student_collapses_during_a_plain_pytorch_loop(tmp_path, scheduler, mixture_teacher):
    """A label-plumbing bug: both branches are distilled to the teacher's unconditional prediction, so the
    student learns to ignore its label and its guidance gap shrinks check after check until rho < 0.3."""
    mixture = oracle_mixture(0)
    torch.manual_seed(0)
    model = build(*model_spec("oracle", "student"))
    student = guidegap.as_denoiser(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, every=20, store=tmp_path / "guidance.zarr", scheduler=scheduler)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(GuidanceCollapseError) as caught:
        for step in range(1, 301):
            x0, labels = mixture.sample(256, generator=generator)
            t = torch.randint(0, 1000, (256,), generator=generator)
            x_t = add_noise(x0, torch.randn(x0.shape, generator=generator), t, scheduler.alphas_cumprod)
            with torch.no_grad():
                _, target = mixture_teacher.branches(x_t, t, labels)  # the bug: eps_u is the target of both
            cond, uncond = student.branches(x_t, t, labels)
            loss = (cond - target).pow(2).mean() + (uncond - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.maybe_check(step, model)
    error = caught.value
    assert isinstance(error, GuidegapError) and error.verdict == "collapsed" and error.report.verdict == "collapsed"
    assert "at training step" in str(error) and "COLLAPSED" in str(error) and "\n" not in str(error)
    assert model.training, "the check restores train mode"
    log = load_log(tmp_path / "guidance.zarr")
    assert log["training_step"].values.tolist() == list(range(20, error.step + 1, 20))  # one entry per check
    verdicts = log["verdict"].values.tolist()
    assert verdicts[-1] == "collapsed" and "collapsed" not in verdicts[:-1]
    assert float(log["rho"][0]) > 0.3 > float(log["rho"][-1])  # it collapsed during training, not from the start
    assert float(log["rho"][-1]) == error.report.summary["rho"].value
    assert pickle.loads(pickle.dumps(error)).report.verdict == "collapsed"


def test_checks_are_seeded_comparable_and_known_students_get_known_verdicts(tmp_path, scheduler, mixture_teacher):
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, every=10, scheduler=scheduler, raise_on=None)
    assert monitor.maybe_check(5, mixture_teacher) is None  # not a multiple of every: nothing runs
    rng = torch.get_rng_state()
    first = monitor(10, mixture_teacher)
    assert torch.equal(rng, torch.get_rng_state()), "a check must not move the training loop's global RNG"
    assert first["audit_verdict"] == "healthy" and first["audit_rho"] == 1.0 and first["audit_cos"] == pytest.approx(1.0)
    assert monitor(20, mixture_teacher) == first  # same seed every check
    assert monitor(30, shrunk_student(mixture_teacher, 0.5))["audit_rho"] == pytest.approx(0.5)
    assert monitor(40, collapsed_student(mixture_teacher, 4.0))["audit_verdict"] == "collapsed"  # raise_on=None
    log = monitor.log
    assert log["training_step"].values.tolist() == [10, 20, 30, 40]
    assert log["verdict"].values.tolist() == ["healthy", "healthy", "miscalibrated", "collapsed"]
    np.testing.assert_allclose(log["rho_per_step"].sel(training_step=30).values, 0.5, rtol=1e-5)
    assert float(log["rho"].sel(training_step=40)) == 0.0


def _open_in_another_process(store) -> dict:
    code = ("import json, sys, xarray as xr; ds = xr.open_zarr(sys.argv[1]); "
            "print(json.dumps({'steps': ds.training_step.values.tolist(), 'rho': ds.rho.values.tolist(), "
            "'verdict': [str(v) for v in ds.verdict.values]}))")
    done = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_log_is_readable_from_another_process_after_each_append(tmp_path, scheduler, mixture_teacher):
    store = tmp_path / "guidance.zarr"
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler)
    monitor.check(100, mixture_teacher)
    assert _open_in_another_process(store) == {"steps": [100], "rho": [1.0], "verdict": ["healthy"]}
    monitor.check(200, shifted_student(mixture_teacher, 0.5))
    seen = _open_in_another_process(store)
    assert seen["steps"] == [100, 200] and seen["verdict"] == ["healthy", "drifted"]
    assert seen["rho"] == load_log(store)["rho"].values.tolist()


def test_a_failed_append_leaves_the_earlier_entries_readable(tmp_path, monkeypatch, scheduler, mixture_teacher):
    from xarray.backends.common import ArrayWriter

    store = tmp_path / "guidance.zarr"
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler)
    monitor.check(10, mixture_teacher)
    before = load_log(store)

    original, calls = ArrayWriter.add, {"n": 0}

    def failing_add(self, source, target, region=None):  # the disk fills up after a few arrays of the entry
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(28, "No space left on device")
        return original(self, source, target, region)

    monkeypatch.setattr(ArrayWriter, "add", failing_add)
    with pytest.raises(OSError):
        monitor.check(20, shrunk_student(mixture_teacher, 0.5))
    assert calls["n"] == 6
    monkeypatch.setattr(ArrayWriter, "add", original)
    xr.testing.assert_identical(xr.open_zarr(store).load(), before)
    assert _open_in_another_process(store)["steps"] == [10]
    monitor.check(30, shrunk_student(mixture_teacher, 0.5))  # and the log goes on
    after = load_log(store)
    assert after["training_step"].values.tolist() == [10, 30]
    assert after["verdict"].values.tolist() == ["healthy", "miscalibrated"]
    xr.testing.assert_identical(after.isel(training_step=[0]), before)


def test_a_damaged_log_is_refused_in_one_line(tmp_path, scheduler, mixture_teacher):
    import shutil

    store = tmp_path / "guidance.zarr"
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler, num_samples=2, sampling_steps=3)
    for step in (10, 20):
        monitor.check(step, mixture_teacher)
    damages = {
        "metadata": lambda root: (root / ".zmetadata").write_text("{ not json"),
        "chunk": lambda root: next(p for p in sorted((root / "rho").iterdir()) if not p.name.startswith(".")).write_bytes(b"\x00junk"),
        "step chunk": lambda root: (root / "training_step" / "1").unlink(),  # reads as 0, after step 10
    }
    for name, damage in damages.items():
        copy = tmp_path / name
        shutil.copytree(store, copy)
        damage(copy)
        with pytest.raises(InputError, match="damaged training log") as info:
            load_log(copy)
        assert "\n" not in str(info.value), name


def test_a_resumed_run_rewinds_to_its_checkpoint_and_other_settings_are_refused_by_name(tmp_path, scheduler, mixture_teacher):
    store = tmp_path / "guidance.zarr"
    first = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler)
    for step in (10, 20, 30):
        first.check(step, mixture_teacher)
    resumed = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler)  # restarted from the step-15 checkpoint
    with pytest.raises(InputError, match=r"step 15 comes before the last entry .* \(step 30\).*rewind"):
        resumed.check(15, mixture_teacher)  # not rewound: refused, nothing dropped
    assert load_log(store)["training_step"].values.tolist() == [10, 20, 30]
    resumed.rewind(15)
    assert load_log(store)["training_step"].values.tolist() == [10]
    resumed.check(20, shrunk_student(mixture_teacher, 0.5))
    resumed.check(20, shrunk_student(mixture_teacher, 0.5))  # the same step again replaces it
    log = load_log(store)
    assert log["training_step"].values.tolist() == [10, 20]
    assert log["verdict"].values.tolist() == ["healthy", "miscalibrated"]
    for other, named in ((dict(sampling_steps=5), "sampling steps"), (dict(n_boot=50), "n_boot"),
                         (dict(labels=0), "labels"), (dict(thresholds=guidegap.Thresholds(rho_low=0.4)), "thresholds")):
        with pytest.raises(InputError, match=f"other monitor settings \\(.*{named}.* differ\\)"):
            GuidanceMonitor(mixture_teacher, **{"thresholds": DESIGN, "store": store, "scheduler": scheduler, **other}).check(
                40, mixture_teacher)
    assert load_log(store)["training_step"].values.tolist() == [10, 20]
    with pytest.raises(InputError, match=r"Its thresholds are the 'design' rule set: .*Thresholds\.named\('design'\)"):
        GuidanceMonitor(mixture_teacher, store=store, scheduler=scheduler, thresholds=guidegap.Thresholds(rho_low=0.4)).check(
            40, mixture_teacher)  # a log kept under an earlier default set says how to continue it
    adopted = GuidanceMonitor(mixture_teacher, store=store, scheduler=scheduler)  # no thresholds: the log's own
    assert adopted.thresholds == DESIGN
    adopted.check(40, shrunk_student(mixture_teacher, 0.5))
    assert load_log(store)["verdict"].values.tolist() == ["healthy", "miscalibrated", "miscalibrated"]


def test_a_monitor_given_no_audit_size_continues_a_log_at_its_own_and_a_new_one_at_the_defaults(tmp_path, scheduler, mixture_teacher):
    """A run resumed after guidegap's default sampling steps changed (25 -> 50 with the evidence rules) is not refused
    for a setting its user never chose; one that names a size is held to it."""
    store = tmp_path / "guidance.zarr"
    GuidanceMonitor(mixture_teacher, store=store, scheduler=scheduler, num_samples=4, sampling_steps=6).check(10, mixture_teacher)
    resumed = GuidanceMonitor(mixture_teacher, store=store, scheduler=scheduler)
    assert (resumed.options["num_samples"], resumed.options["num_steps"]) == (4, 6)
    resumed.check(20, mixture_teacher)
    assert load_log(store)["training_step"].values.tolist() == [10, 20] and load_log(store).sizes["step"] == 6
    with pytest.raises(InputError, match=r"other monitor settings \(.*sampling steps.* differ\)"):
        GuidanceMonitor(mixture_teacher, store=store, scheduler=scheduler, sampling_steps=8).check(30, mixture_teacher)
    fresh = GuidanceMonitor(mixture_teacher, store=tmp_path / "new.zarr", scheduler=scheduler)
    assert (fresh.options["num_samples"], fresh.options["num_steps"]) == (DEFAULT_NUM_SAMPLES, DEFAULT_SAMPLING_STEPS)


def test_a_log_started_before_a_metric_existed_continues_without_it_and_one_missing_a_logged_metric_is_refused(
        tmp_path, scheduler, mixture_teacher):
    from guidegap.metrics.registry import Metric, register_metric, remove_metric

    def gap_peak(student_cond, student_uncond, teacher_cond, teacher_uncond, guidance_scale):
        return ((student_cond - student_uncond) - (teacher_cond - teacher_uncond)).abs().flatten(1).amax(1)

    settings = dict(store=tmp_path / "guidance.zarr", scheduler=scheduler, num_samples=4, sampling_steps=4)
    GuidanceMonitor(mixture_teacher, thresholds=DESIGN, **settings).check(10, mixture_teacher)  # the older guidegap: no gap_peak
    register_metric(Metric("gap_peak", "pair", "largest absolute gap difference", function=gap_peak))
    try:
        with pytest.warns(UserWarning, match="was started without gap_peak_per_step; this check is logged without"):
            GuidanceMonitor(mixture_teacher, thresholds=DESIGN, **settings).check(20, shrunk_student(mixture_teacher, 0.5))
        log = load_log(settings["store"])
        assert log["training_step"].values.tolist() == [10, 20] and "gap_peak_per_step" not in log
        assert log["verdict"].values.tolist() == ["healthy", "miscalibrated"]
        other = dict(settings, store=tmp_path / "with_peak.zarr")
        GuidanceMonitor(mixture_teacher, thresholds=DESIGN, **other).check(10, mixture_teacher)
    finally:
        remove_metric("gap_peak")
    with pytest.raises(InputError, match=r"recorded variables \(gap_peak_per_step only in the log\) differ"):
        GuidanceMonitor(mixture_teacher, thresholds=DESIGN, **other).check(20, mixture_teacher)
    assert load_log(other["store"])["training_step"].values.tolist() == [10]


def test_an_oracle_teacher_continues_its_log_under_either_name(tmp_path, scheduler):
    store = tmp_path / "guidance.zarr"
    GuidanceMonitor("oracle", store=store, scheduler=scheduler, num_samples=2, sampling_steps=3).check(
        10, oracle_mixture(0).denoiser(scheduler))
    GuidanceMonitor("oracle:0", store=store, scheduler=scheduler, num_samples=2, sampling_steps=3).check(
        20, oracle_mixture(0).denoiser(scheduler))
    assert load_log(store)["training_step"].values.tolist() == [10, 20]


def test_a_check_before_the_last_is_refused_in_memory_too_until_rewound(scheduler, mixture_teacher):
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, scheduler=scheduler, num_samples=2, sampling_steps=3)
    for step in (100, 200):
        monitor.check(step, mixture_teacher)
    with pytest.raises(InputError, match="step 0 comes before the last check"):
        monitor.check(0, mixture_teacher)
    monitor.rewind(100)
    monitor.check(150, mixture_teacher)
    assert monitor.log["training_step"].values.tolist() == [100, 150]


def test_a_writer_killed_while_truncating_leaves_readers_a_whole_log(tmp_path, monkeypatch, scheduler, mixture_teacher):
    """The snapshot readers open shrinks before any chunk is removed, so a kill midway shows the shorter log."""
    import zarr

    store = tmp_path / "guidance.zarr"
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, store=store, scheduler=scheduler, num_samples=2, sampling_steps=3)
    for step in (10, 20, 30):
        monitor.check(step, shrunk_student(mixture_teacher, 0.5) if step == 10 else mixture_teacher)
    original, calls = zarr.Array.resize, {"n": 0}

    def killed_after_some(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Array, "resize", killed_after_some)
    with pytest.raises(KeyboardInterrupt):
        monitor.rewind(10)
    seen = _open_in_another_process(store)
    assert seen["steps"] == [10] and seen["verdict"] == ["miscalibrated"]
    monkeypatch.setattr(zarr.Array, "resize", original)
    monitor.check(20, mixture_teacher)  # the next append repairs the arrays and goes on
    assert load_log(store)["training_step"].values.tolist() == [10, 20]


def test_the_trainer_rewinds_its_callbacks_to_the_step_it_starts_from(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), role="teacher", tier="oracle", train_steps=4, batch_size=8,
                         checkpoint_every=2, log_every=1, progress=False)
    seen = []

    class Recorder:
        def __call__(self, step, student):
            return None

        def rewind(self, step):
            seen.append(step)

    train(config, callbacks=[Recorder()])
    train(dataclasses.replace(config, train_steps=6), callbacks=[Recorder()], resume=True)
    assert seen == [0, 4]


def test_only_the_main_process_checks_and_writes(tmp_path, monkeypatch, scheduler, mixture_teacher):
    from accelerate.state import DistributedType, PartialState

    store = tmp_path / "guidance.zarr"
    monitor = GuidanceMonitor(mixture_teacher, thresholds=DESIGN, every=10, store=store, scheduler=scheduler)

    def fake_state(rank: int) -> None:  # what Accelerator() leaves behind on rank `rank` of 2
        monkeypatch.setattr(PartialState, "_shared_state", {
            "process_index": rank, "local_process_index": rank, "num_processes": 2,
            "distributed_type": DistributedType.MULTI_CPU, "device": torch.device("cpu")})

    def no_audit(*args, **kwargs):
        raise AssertionError("a non-main rank must not run the audit")

    fake_state(1)
    with monkeypatch.context() as patch:
        patch.setattr("guidegap.auditing.api.audit", no_audit)
        assert monitor(10, collapsed_student(mixture_teacher, 4.0)) is None  # no audit, no raise
        assert monitor.check(10, mixture_teacher) is None
    assert not store.exists()
    fake_state(0)
    assert monitor(10, mixture_teacher)["audit_verdict"] == "healthy"
    assert load_log(store)["training_step"].values.tolist() == [10]
    monkeypatch.setattr(PartialState, "_shared_state", {})  # no state at all: a single process is the main one
    assert guidegap.monitoring.is_main_process()


def test_monitor_rejects_bad_settings(scheduler, mixture_teacher):
    with pytest.raises(InputError, match="every"):
        GuidanceMonitor(mixture_teacher, every=0)
    with pytest.raises(InputError, match="teacher"):
        GuidanceMonitor(None)
    with pytest.raises(InputError, match="fail-on verdicts"):
        GuidanceMonitor(mixture_teacher, raise_on=("colapsed",))
    assert GuidanceMonitor(mixture_teacher, raise_on="collapsed,non-finite").raise_on == {"collapsed", "non-finite"}
    assert GuidanceMonitor(mixture_teacher, raise_on=None).raise_on == set()


# -- guidegap.testing ------------------------------------------------------------------------------
def test_assert_guidance_healthy_passes_silently_on_a_healthy_student(oracle, scheduler):
    report = assert_guidance_healthy(oracle, oracle, num_samples=16, num_steps=10, scheduler=scheduler)
    assert report.verdict == "healthy"


@pytest.mark.parametrize("make, verdict", [
    (lambda t: collapsed_student(t, 4.0), "COLLAPSED"),
    (lambda t: shifted_student(t, 0.5), "DRIFTED"),
    (lambda t: shrunk_student(t, 0.5), "MISCALIBRATED"),
])
def test_assert_guidance_healthy_fails_with_the_verdict_line_and_key_numbers(oracle, scheduler, make, verdict):
    with pytest.raises(AssertionError) as caught:
        assert_guidance_healthy(make(oracle), oracle, num_samples=16, num_steps=10, scheduler=scheduler, thresholds=DESIGN)
    message = str(caught.value)
    assert f"VERDICT: {verdict} — " in message
    assert "rho " in message and "gap cosine " in message and "uncond error / teacher " in message
    assert "along the trajectory" not in message and "Suggested fix" not in message  # not the full report
    assert len(message) < 700


def test_under_the_default_rules_the_failure_line_names_the_guided_error_bar_and_the_rules_that_are_off(oracle, scheduler):
    with pytest.raises(AssertionError) as caught:
        assert_guidance_healthy(shifted_student(oracle, 0.5), oracle, num_samples=16, num_steps=10, scheduler=scheduler)
    message = str(caught.value)
    assert "VERDICT: MISGUIDED — " in message
    assert f"(healthy <= {guidegap.Thresholds().max_rel_guided_error})" in message
    assert "gap cosine " in message and "(rule off)" in message  # still reported: it says why


def test_the_light_audit_samples_on_the_training_schedule_of_the_run(tmp_path):
    from guidegap.recording.noise_schedules import noise_scheduler
    from guidegap.training.callbacks import LightAudit

    audit = LightAudit("oracle", schedule="cosine", num_train_timesteps=500)
    assert audit.scheduler.config.num_train_timesteps == 500
    torch.testing.assert_close(audit.scheduler.alphas_cumprod, noise_scheduler("cosine", 500).alphas_cumprod, rtol=0, atol=0)
    torch.testing.assert_close(audit.teacher.alphas_cumprod.float(), noise_scheduler("cosine", 500).alphas_cumprod.float())


def test_a_log_started_before_a_threshold_existed_continues_at_its_default_and_is_refused_off_it(
        tmp_path, scheduler, mixture_teacher):
    import zarr

    settings = dict(store=tmp_path / "guidance.zarr", scheduler=scheduler, num_samples=4, sampling_steps=4)
    GuidanceMonitor(mixture_teacher, **settings).check(10, mixture_teacher)
    group = zarr.open_group(str(settings["store"]), mode="a")
    config = json.loads(group.attrs["config"])
    del config["thresholds"]["max_rel_guided_error"]  # as an older guidegap, before the misguided rule, wrote it
    group.attrs["config"] = json.dumps(config, sort_keys=True)
    zarr.consolidate_metadata(str(settings["store"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the summaries added since (rel_guided_error) are left out
        GuidanceMonitor(mixture_teacher, **settings).check(20, mixture_teacher)
    assert load_log(settings["store"])["training_step"].values.tolist() == [10, 20]
    judged = guidegap.Thresholds(max_rel_guided_error=0.3)
    with pytest.raises(InputError, match=r"other monitor settings \(.*thresholds.* differ\)"):
        GuidanceMonitor(mixture_teacher, thresholds=judged, **settings).check(30, mixture_teacher)
