"""Trajectory recording: oracle ground truth, determinism, chunking, schedulers, model families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import guidegap
from guidegap.denoisers import ModuleDenoiser, as_denoiser
from guidegap.errors import GuidegapError
from guidegap.metrics import gap_norm as gap_norm_fn
from guidegap.metrics import summarize
from guidegap.oracle import collapsed_student, shrunk_student
from guidegap.recording import tag
from guidegap.recording.schedulers import make_scheduler

from conftest import tiny_dit, tiny_unet


def test_oracle_against_itself_is_exact(oracle, scheduler):
    ds = guidegap.trace(oracle, oracle, num_samples=12, num_steps=10, scheduler=scheduler)
    summary = summarize(ds)
    assert summary["rho"].value == pytest.approx(1.0, abs=1e-12)
    assert summary["cos_delta"].value == pytest.approx(1.0, abs=1e-6)
    for name in ("gap_mse", "cond_error", "uncond_error", "guided_error"):
        assert float(np.abs(ds[name]).max()) == 0.0, name
    np.testing.assert_array_equal(ds.gap_norm.sel(model="teacher"), ds.gap_norm.sel(model="student"))
    assert ds.sizes == {"model": 2, "sample": 12, "step": 10}
    assert ds.attrs["mode"] == "teacher-forced"


def test_guided_output_student_has_rho_zero(oracle, scheduler):
    ds = guidegap.trace(oracle, collapsed_student(oracle, 4.0), num_samples=8, num_steps=10, scheduler=scheduler)
    assert float(ds.gap_norm.sel(model="student").max()) == 0.0
    assert summarize(ds)["rho"].value == 0.0
    assert float(ds.gap_norm.sel(model="teacher").mean()) > 1e-3
    # The student's guided output equals the teacher's at w=4, so the guided error vanishes (float32 rounding).
    assert float(ds.guided_error.max()) < 1e-6


def test_shrunk_gap_gives_rho_equal_to_the_factor(oracle, scheduler):
    ds = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=8, num_steps=10, scheduler=scheduler)
    np.testing.assert_allclose(ds.gap_norm.sel(model="student"), 0.5 * ds.gap_norm.sel(model="teacher"), rtol=1e-5, atol=1e-7)
    assert summarize(ds)["rho"].value == pytest.approx(0.5, rel=1e-5)
    # e_u = 0 and e_c = -0.5 Delta_T: guided error at w is w times the w=1 error.
    amp = ds.amplification.where(ds.cond_error > 1e-6)
    np.testing.assert_allclose(amp.to_numpy()[np.isfinite(amp.to_numpy())], 4.0, rtol=1e-4)


def test_metrics_match_the_kept_predictions(oracle, scheduler):
    ds = guidegap.trace(oracle, shrunk_student(oracle, 0.7), num_samples=4, num_steps=5, scheduler=scheduler,
                        keep_predictions=True)
    cond = torch.as_tensor(ds.pred_cond.sel(model="student").isel(step=3).values)
    uncond = torch.as_tensor(ds.pred_uncond.sel(model="student").isel(step=3).values)
    np.testing.assert_allclose(gap_norm_fn(cond, uncond).numpy(), ds.gap_norm.sel(model="student").isel(step=3), rtol=1e-6)
    # Teacher-forced: both models saw the same state, and it is the teacher's DDIM path.
    np.testing.assert_array_equal(ds.state.sel(model="teacher"), ds.state.sel(model="student"))
    state = torch.as_tensor(ds.state.sel(model="teacher").isel(step=2).values)
    t = int(ds.timestep[2])
    recomputed = oracle(state, t, torch.as_tensor(ds.label.values))
    np.testing.assert_allclose(recomputed.numpy(), ds.pred_cond.sel(model="teacher").isel(step=2), rtol=1e-5, atol=1e-6)


def test_same_seed_same_dataset_other_seed_differs(oracle, scheduler):
    first = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=6, num_steps=6, scheduler=scheduler, seed=3)
    again = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=6, num_steps=6, scheduler=scheduler, seed=3)
    other = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=6, num_steps=6, scheduler=scheduler, seed=4)
    xr.testing.assert_identical(first, again)
    assert not np.array_equal(first.gap_norm.values, other.gap_norm.values)


@pytest.mark.parametrize("scheduler_name", ["ddim", "ddpm"])
def test_chunking_does_not_change_the_oracle_dataset(oracle, scheduler, scheduler_name):
    sched = make_scheduler(scheduler_name, base=scheduler)
    kwargs = dict(num_samples=10, num_steps=8, scheduler=sched, mode="free-running", seed=1)
    whole = guidegap.trace(oracle, shrunk_student(oracle, 0.5), chunk_size=10, **kwargs)
    chunked = guidegap.trace(oracle, shrunk_student(oracle, 0.5), chunk_size=3, **kwargs)
    xr.testing.assert_identical(whole, chunked)  # attrs too: the chunk size is how the work is batched, not a setting


def test_numpy_integers_are_taken_as_ints(oracle, scheduler):
    kwargs = dict(scheduler=scheduler, mode="free-running")
    plain = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=3, num_steps=4, seed=3, chunk_size=2, **kwargs)
    numpy = guidegap.trace(oracle, shrunk_student(oracle, 0.5), num_samples=np.int64(3), num_steps=np.int32(4),
                           seed=np.int64(3), chunk_size=np.int64(2), **kwargs)
    xr.testing.assert_identical(plain, numpy)


def test_chunking_on_a_unet_agrees_to_float_precision(scheduler):
    teacher, student = tiny_unet(seed=0), tiny_unet(seed=1)
    kwargs = dict(num_samples=6, num_steps=4, scheduler=scheduler, seed=2)
    whole = guidegap.trace(teacher, student, chunk_size=6, **kwargs)
    chunked = guidegap.trace(teacher, student, chunk_size=4, **kwargs)
    xr.testing.assert_allclose(whole.drop_attrs(), chunked.drop_attrs(), rtol=1e-4, atol=1e-6)


def test_free_running_stochastic_scheduler_uses_the_same_noise(oracle, scheduler):
    ddpm = make_scheduler("ddpm", base=scheduler)
    ds = guidegap.trace(oracle, oracle, num_samples=4, num_steps=6, scheduler=ddpm, mode="free-running")
    assert ds.attrs["mode"] == "free-running"
    assert float(ds.divergence.max()) == 0.0
    drifted = guidegap.trace(oracle, shrunk_student(oracle, 0.2), num_samples=4, num_steps=6, scheduler=ddpm,
                             mode="free-running")
    assert float(drifted.divergence.isel(step=-1).mean()) > 1e-3


@pytest.mark.parametrize("scheduler_name", ["ddim", "dpm++", "euler", "heun", "pndm"])
def test_unet_records_with_common_schedulers(scheduler, scheduler_name):
    sched = make_scheduler(scheduler_name, base=scheduler)
    ds = guidegap.trace(tiny_unet(seed=0), tiny_unet(seed=1), num_samples=3, num_steps=4, scheduler=sched)
    sched.set_timesteps(4)
    assert ds.sizes["step"] == len(sched.timesteps)  # Heun evaluates twice per step
    np.testing.assert_allclose(ds.timestep.values, sched.timesteps.numpy())
    assert np.isfinite(ds.gap_norm).all() and int(ds.nonfinite.sum()) == 0
    assert 0.0 < summarize(ds)["rho"].value < 10.0


def test_dit_records_eps_channels_and_ignores_train_mode(scheduler):
    model = tiny_dit()
    model.train()  # DiT drops labels at random in train mode; the recorder must not
    first = guidegap.trace(model, None, num_samples=3, num_steps=3, scheduler=scheduler, keep_predictions=True)
    second = guidegap.trace(model, None, num_samples=3, num_steps=3, scheduler=scheduler)
    assert model.training, "the model's mode is restored"
    assert first.pred_cond.sizes["channel"] == 1  # learned-sigma output reduced to eps
    np.testing.assert_array_equal(first.gap_norm, second.gap_norm)
    assert list(first.model.values) == ["teacher"] and "gap_cos" not in first


def test_plain_module_and_tag_schedule(scheduler):
    class Net(torch.nn.Module):
        num_classes = 3

        def forward(self, x, t, y):
            return 0.1 * x + 0.01 * (y.float() + 1).view(-1, 1, 1, 1)

    ds = guidegap.trace(None, Net(), num_samples=3, num_steps=5, guidance_scale="tag", scheduler=scheduler,
                        sample_shape=(1, 2, 2))
    expected = tag().values(ds.timestep.values, 1000)
    np.testing.assert_allclose(ds.guidance_scale, expected)
    # TAG w(t) = 1 + 3 sigmoid(5 (0.5 - t/1000)) at DDIM's 5 timesteps 800, 600, 400, 200, 0.
    np.testing.assert_allclose(expected, [1.547277, 2.132622, 2.867378, 3.452723, 3.772425], rtol=1e-6)
    # Gap = 0.01 * ((y + 1) - (3 + 1)) everywhere, so its RMS is 0.01 * (3 - y).
    np.testing.assert_allclose(ds.gap_norm.sel(model="student").isel(step=0), 0.01 * (3 - np.arange(3)), rtol=1e-5)


def test_per_step_guidance_list(oracle, scheduler):
    scales = [1.0, 2.0, 3.0, 4.0]
    ds = guidegap.trace(oracle, None, num_samples=2, num_steps=4, guidance_scale=scales, scheduler=scheduler)
    np.testing.assert_array_equal(ds.guidance_scale, scales)
    with pytest.raises(GuidegapError, match="one guidance scale per sampling step"):
        guidegap.trace(oracle, None, num_samples=2, num_steps=5, guidance_scale=scales, scheduler=scheduler)


def test_incompatible_pairs_and_bad_arguments_fail_clearly(oracle, scheduler):
    with pytest.raises(GuidegapError, match="number of classes"):
        guidegap.trace(tiny_unet(num_classes=4), tiny_unet(num_classes=3), num_samples=2, num_steps=2)
    with pytest.raises(GuidegapError, match="sample shape"):
        guidegap.trace(tiny_unet(), tiny_unet(sample_size=16), num_samples=2, num_steps=2)
    with pytest.raises(GuidegapError, match="labels in 0..3"):
        guidegap.trace(oracle, None, labels=[0, 4], num_samples=2, num_steps=2, scheduler=scheduler)
    with pytest.raises(GuidegapError, match="mode"):
        guidegap.trace(oracle, None, mode="sideways", scheduler=scheduler)
    with pytest.raises(GuidegapError, match="num_steps"):
        guidegap.trace(oracle, None, num_steps=0, scheduler=scheduler)
    with pytest.raises(GuidegapError, match="seed"):
        guidegap.trace(oracle, None, seed=-1, scheduler=scheduler)
    with pytest.raises(GuidegapError, match="sample_shape"):
        guidegap.trace(ModuleDenoiser(lambda x, t, y: x, num_classes=2), None, num_samples=2, num_steps=2)
    with pytest.raises(GuidegapError, match="num_classes"):
        as_denoiser(lambda x, t, y: x)


def test_non_finite_predictions_are_recorded_per_step_not_raised(oracle, scheduler):
    class Poisoned(torch.nn.Module):
        num_classes, sample_shape = 4, (1, 4, 4)

        def forward(self, x, t, y):
            out = oracle(x, t, y)
            return torch.where(t.view(-1, 1, 1, 1) < 500, torch.full_like(out, float("nan")), out)

    ds = guidegap.trace(oracle, Poisoned(), num_samples=2, num_steps=10, scheduler=scheduler)
    flagged = ds.nonfinite.sel(model="student").any("sample")
    np.testing.assert_array_equal(flagged.values, ds.timestep.values < 500)
    assert int(ds.nonfinite.sel(model="teacher").sum()) == 0


def test_teacher_forced_with_divergence_matches_free_running_divergence(oracle, scheduler):
    student = shrunk_student(oracle, 0.3)
    kwargs = dict(num_samples=6, num_steps=8, scheduler=scheduler, seed=5)
    forced = guidegap.trace(oracle, student, divergence=True, **kwargs)
    free = guidegap.trace(oracle, student, mode="free-running", **kwargs)
    plain = guidegap.trace(oracle, student, **kwargs)
    assert forced.attrs["mode"] == "teacher-forced"
    xr.testing.assert_identical(forced.divergence, free.divergence)
    xr.testing.assert_identical(forced.drop_vars("divergence").drop_attrs(), plain.drop_attrs())
    assert float(forced.divergence.isel(step=0).max()) > 0 and float(forced.divergence.isel(step=-1).mean()) > 1e-3


@pytest.mark.parametrize("name", sorted(set(__import__("guidegap.recording.schedulers", fromlist=["x"]).SCHEDULER_NAMES)))
def test_named_schedulers_match_diffusers_from_config(name):
    """scheduler_from_config skips diffusers' import of every compatible scheduler but builds the same scheduler."""
    import diffusers

    from guidegap.recording.schedulers import SCHEDULER_NAMES, default_scheduler, make_scheduler

    base = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ours = make_scheduler(name, base=base)
    theirs = getattr(diffusers, SCHEDULER_NAMES[name]).from_config(base.config)
    # diffusers also copies keys the class ignores (kept as unused config entries): compare what the class takes
    used = [k for k in ours.config if not k.startswith("_")]
    assert type(ours) is type(theirs) and {k: ours.config[k] for k in used} == {k: theirs.config[k] for k in used}
    assert set(theirs.config) - set(ours.config) <= set(base.config)
    assert default_scheduler().config.clip_sample is False
