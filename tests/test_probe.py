"""Data-probe mode: both branches on noised data at uniform random t (DASH's protocol), against the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

import guidegap
from guidegap.denoisers import ModuleDenoiser
from guidegap.errors import GuidegapError
from guidegap.metrics import summarize
from guidegap.oracle import shrunk_student
from guidegap.recording.seeding import PROBE, sample_generators, sample_noise

from conftest import DESIGN, tiny_unet


@pytest.fixture
def data(oracle):
    return oracle.mixture.sample(64, generator=torch.Generator().manual_seed(0))


class Identity(torch.nn.Module):
    """Returns x_t for every label and records what it was called with."""

    num_classes, sample_shape = 4, (1, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, y):
        self.calls.append((x.clone(), t.clone(), y.clone()))
        return x.clone()


def test_oracle_against_itself_is_exact(oracle, scheduler, data):
    ds = guidegap.probe(oracle, oracle, data, scheduler=scheduler)
    assert ds.sizes == {"model": 2, "sample": 64} and "step" not in ds.dims
    assert summarize(ds)["rho"].value == pytest.approx(1.0, abs=1e-12)
    for name in ("gap_mse", "cond_error", "uncond_error", "guided_error"):
        assert float(np.abs(ds[name]).max()) == 0.0, name
    np.testing.assert_array_equal(ds.gap_norm.sel(model="teacher"), ds.gap_norm.sel(model="student"))
    np.testing.assert_array_equal(ds.label, data[1].numpy())
    assert ds.attrs["mode"] == "data-probe"
    assert float(ds.gap_norm.sel(model="teacher").mean()) > 1e-3


def test_shrunk_student_has_rho_equal_to_the_factor(oracle, scheduler, data):
    ds = guidegap.probe(oracle, shrunk_student(oracle, 0.5), data, scheduler=scheduler)
    assert summarize(ds)["rho"].value == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(ds.gap_norm.sel(model="student"), 0.5 * ds.gap_norm.sel(model="teacher"), rtol=1e-5, atol=1e-7)
    assert float(ds.uncond_error.max()) == 0.0
    np.testing.assert_allclose(ds.cond_error, 0.5 * ds.gap_norm.sel(model="teacher"), rtol=1e-5, atol=1e-7)


def test_timesteps_are_uniform_integers_on_the_sample_dim(oracle, scheduler):
    x0, labels = oracle.mixture.sample(512, generator=torch.Generator().manual_seed(1))
    ds = guidegap.probe(oracle, None, (x0, labels), scheduler=scheduler, seed=5)
    t = ds.timestep.values
    assert ds.timestep.dims == ("sample",) and t.dtype == np.int64
    assert t.min() >= 0 and t.max() <= 999
    # U{0..999}: mean 499.5, sd of the mean 288.7 / sqrt(512) = 12.8; quartiles 1/4 each (sd 0.019)
    assert abs(t.mean() - 499.5) < 5 * 12.8
    counts = np.histogram(t, bins=4, range=(0, 1000))[0] / len(t)
    np.testing.assert_allclose(counts, 0.25, atol=5 * 0.019)
    assert len(np.unique(t)) > 350  # ~ 1000 (1 - exp(-0.512)) = 401 distinct values expected


def test_noising_is_sqrt_abar_x0_plus_sqrt_one_minus_abar_noise(scheduler):
    net = Identity()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(10, 1, 4, 4, generator=g)
    labels = torch.arange(10) % 4
    ds = guidegap.probe(None, net, (x0, labels), scheduler=scheduler, seed=7, chunk_size=4)
    x_t = torch.cat([x[: len(x) // 2] for x, _, _ in net.calls])
    seen_t = torch.cat([t[: len(t) // 2] for _, t, _ in net.calls])
    seen_y = torch.cat([y for _, _, y in net.calls])
    assert seen_t.tolist() == ds.timestep.values.tolist()
    assert seen_y.tolist() == sum(([*labels[i:i + 4].tolist(), *[4] * len(labels[i:i + 4])] for i in range(0, 10, 4)), [])
    abar = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)[ds.timestep.values].view(-1, 1, 1, 1)
    noise = sample_noise(sample_generators(7, range(10), PROBE), (1, 4, 4)).double()
    expected = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise
    torch.testing.assert_close(x_t.double(), expected, rtol=1e-5, atol=1e-6)
    # recorded metrics are those of x_t: an identity model has gap 0 and cond RMS = RMS(x_t)
    assert float(ds.gap_norm.max()) == 0.0
    np.testing.assert_allclose(ds.cond_norm.sel(model="student"), x_t.flatten(1).pow(2).mean(1).sqrt(), rtol=1e-6)


def test_noise_is_standard_normal_given_t(scheduler):
    """Independent of the seeding scheme: (x_t - sqrt(abar) x0) / sqrt(1 - abar) ~ N(0, 1), uncorrelated with x0."""
    net = Identity()
    net.sample_shape = (1, 8, 8)
    x0 = torch.ones(256, 1, 8, 8)
    x0[1::2] = -1.0
    ds = guidegap.probe(None, net, (x0, torch.zeros(256, dtype=torch.long)), scheduler=scheduler, seed=11)
    x_t = torch.cat([x[: len(x) // 2] for x, _, _ in net.calls]).double()
    abar = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)[ds.timestep.values].view(-1, 1, 1, 1)
    z = (x_t - abar.sqrt() * x0.double()) / (1 - abar).sqrt()
    n = z.numel()  # 16384 values
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.std()) - 1.0) < 5 / math.sqrt(2 * n)
    assert abs(float((z * x0).mean())) < 5 / math.sqrt(n)
    per_sample = z.flatten(1).mean(1) * 8  # each sample's mean * sqrt(64) ~ N(0, 1): samples are independent
    assert abs(float(per_sample.std()) - 1.0) < 0.15


def test_chunking_does_not_change_the_result(oracle, scheduler, data):
    student = shrunk_student(oracle, 0.7)
    whole = guidegap.probe(oracle, student, data, scheduler=scheduler, chunk_size=64)
    chunked = guidegap.probe(oracle, student, data, scheduler=scheduler, chunk_size=5)
    xr.testing.assert_identical(whole, chunked)
    numpy_ints = guidegap.probe(oracle, student, data, scheduler=scheduler, chunk_size=np.int64(5), seed=np.int64(0))
    xr.testing.assert_identical(whole, numpy_ints)


def test_same_seed_same_dataset_other_seed_differs(oracle, scheduler, data):
    student = shrunk_student(oracle, 0.7)
    first = guidegap.probe(oracle, student, data, scheduler=scheduler, seed=2)
    again = guidegap.probe(oracle, student, data, scheduler=scheduler, seed=2)
    other = guidegap.probe(oracle, student, data, scheduler=scheduler, seed=3)
    xr.testing.assert_identical(first, again)
    assert not np.array_equal(first.timestep.values, other.timestep.values)
    assert not np.array_equal(first.gap_norm.values, other.gap_norm.values)


def test_accepts_a_torch_dataset_numpy_arrays_and_separate_labels(oracle, scheduler, data):
    x0, labels = data
    reference = guidegap.probe(oracle, None, (x0, labels), scheduler=scheduler, num_samples=10)

    class Pairs(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.read: list[int] = []

        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i):
            self.read.append(i)
            return x0[i], int(labels[i])

    pairs = Pairs()
    from_dataset = guidegap.probe(oracle, None, pairs, scheduler=scheduler, num_samples=10)
    assert max(pairs.read) == 9  # only the items used are read
    from_numpy = guidegap.probe(oracle, None, (x0.numpy(), labels.numpy()), scheduler=scheduler, num_samples=10)
    separate = guidegap.probe(oracle, None, x0.numpy(), labels.tolist(), scheduler=scheduler, num_samples=10)
    two_pairs = guidegap.probe(oracle, None, [(x0[0], int(labels[0])), (x0[1], int(labels[1]))], scheduler=scheduler)
    for ds in (from_dataset, from_numpy, separate):
        xr.testing.assert_identical(ds, reference)
    xr.testing.assert_identical(two_pairs.drop_attrs(), reference.isel(sample=[0, 1]).drop_attrs())


def test_tag_guidance_is_per_sample(oracle, scheduler, data):
    ds = guidegap.probe(oracle, shrunk_student(oracle, 0.5), data, scheduler=scheduler, guidance_scale="tag", chunk_size=16)
    t = ds.timestep.values
    expected = 1 + 3 / (1 + np.exp(-5 * (0.5 - t / 1000)))
    assert ds.guidance_scale.dims == ("sample",)
    np.testing.assert_allclose(ds.guidance_scale, expected, rtol=1e-12)
    assert np.ptp(expected) > 1.0
    # e_u = 0, e_c = -0.5 Delta_T: guided error at w is w times the error at w = 1, sample by sample
    amp = ds.amplification.where(ds.cond_error > 1e-6)
    keep = np.isfinite(amp.values)
    assert keep.sum() > 32
    np.testing.assert_allclose(amp.values[keep], expected[keep], rtol=1e-4)
    np.testing.assert_allclose(ds.guided_error.values[keep], expected[keep] * ds.cond_error.values[keep], rtol=1e-4)


def test_a_diffusers_unet_in_train_mode_is_probed_in_eval_mode_and_restored(scheduler):
    teacher, student = tiny_unet(seed=0), tiny_unet(seed=1)
    teacher.train()
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ds = guidegap.probe(teacher, student, (x0, torch.tensor([0, 1, 2, 3])), scheduler=scheduler)
    assert teacher.training and not student.training
    assert np.isfinite(ds.gap_norm).all() and float(ds.gap_norm.min()) > 0
    assert 0.0 < summarize(ds)["rho"].value < 10.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda o, x, y: guidegap.probe(o, None, x), "images only"),
        (lambda o, x, y: guidegap.probe(o, None, x.numpy()), "images only"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:5], y[:4])), "one label per image"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4].view(2, 2))), "one label per image"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4].float() + 0.5)), "integer class labels"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4].flatten(1), y[:4])), "images of shape"),
        (lambda o, x, y: guidegap.probe(o, None, (torch.zeros(4, 1, 8, 8), y[:4])), "images of shape"),
        (lambda o, x, y: guidegap.probe(None, ModuleDenoiser(lambda a, b, c: a, num_classes=4, sample_shape=(1, 8, 8)),
                                        (x[:4], y[:4])), "images of shape"),
        (lambda o, x, y: guidegap.probe(o, None, ([[1.0], [1.0, 2.0]], [0, 1])), "cannot be stacked"),
        (lambda o, x, y: guidegap.probe(o, None, [(x[0], 0), (x[1], 0.5)]), "one integer label"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), num_samples=5), "num_samples <= 4"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), num_samples=0), "num_samples"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), num_samples=2.5), "num_samples"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), chunk_size=0), "chunk_size"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), seed=-1), "seed"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], torch.tensor([0, 1, 2, 4]))), "labels in 0..3"),
        (lambda o, x, y: guidegap.probe(o, None, (x[:4], y[:4]), guidance_scale=[1.0, 2.0]), "per-step list"),
        (lambda o, x, y: guidegap.probe(None, None, (x[:4], y[:4])), "neither"),
        (lambda o, x, y: guidegap.probe(o, None, "images.npz"), "labels"),
    ],
)
def test_bad_inputs_are_one_line_guidegap_errors(oracle, data, call, match):
    with pytest.raises(GuidegapError, match=match) as info:
        call(oracle, *data)
    assert "\n" not in str(info.value)


# -- data-probe audits: guidegap.audit(..., data=) and guidegap audit --probe-data ------------------------------
def test_a_probe_audit_judges_the_pair_and_locates_the_rule_by_thirds_of_t(oracle, scheduler, tmp_path):
    from guidegap.oracle import collapsed_student

    held_out = oracle.mixture.sample(240, generator=torch.Generator().manual_seed(5))
    report = guidegap.audit(collapsed_student(oracle, 4.0), oracle, data=held_out, n_boot=100)
    assert report.verdict == "collapsed" and report.is_probe
    assert [p["phase"] for p in report.phases] == ["early", "middle", "late"] and report.where() == ["early", "middle", "late"]
    assert all(p["timesteps"][0] >= p["timesteps"][1] for p in report.phases)
    assert report.phases[0]["timesteps"][1] >= 666 and report.phases[2]["timesteps"][0] < 334  # noisiest first
    assert report.dataset.sizes["sample"] == 240 and "step" not in report.dataset.dims  # all 240: fewer than 1000
    text = str(report)
    assert "240 held-out images noised at uniform t" in text and "by noise level (t)" in text and "thirds of t" in text
    assert guidegap.audit(oracle, oracle, data=held_out, n_boot=100).verdict == "healthy"
    saved = report.save(tmp_path / "probe.nc")
    assert guidegap.AuditReport.from_dataset(guidegap.load_dataset(saved), n_boot=100).verdict == "collapsed"
    with pytest.raises(GuidegapError, match="no trajectory"):
        report.plot()
    with pytest.raises(GuidegapError, match="pass the teacher"):
        guidegap.audit(oracle, None, data=held_out)
    images, labels = held_out
    separate = guidegap.audit(collapsed_student(oracle, 4.0), oracle, data=images, labels=labels, n_boot=100)
    assert separate.dataset.label.values.tolist() == labels.tolist()  # images with their labels given apart


def test_probe_sets_are_read_by_name_and_an_npz_is_checked_before_it_is_read(tmp_path):
    import io
    import zipfile

    from guidegap.data.probe_sets import load_probe_set

    path = tmp_path / "held_out.npz"
    np.savez(path, images=np.zeros((5, 1, 4, 4), np.float32), labels=np.arange(5))
    images, labels = load_probe_set(str(path), 3)
    assert images.shape == (3, 1, 4, 4) and labels.tolist() == [0, 1, 2]
    first, again = load_probe_set("oracle", 6), load_probe_set("oracle", 6)
    assert torch.equal(first[0], again[0]) and first[0].shape[0] == 6  # a seeded held-out draw
    np.savez(tmp_path / "objects.npz", images=np.array([object()] * 2), labels=np.arange(2))
    huge = io.BytesIO()  # a header declaring 2^40 elements and no data behind it
    np.lib.format.write_array_header_1_0(huge, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1, 1024, 1024)})
    labels_npy = io.BytesIO()
    np.save(labels_npy, np.arange(2))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("images.npy", huge.getvalue())
        archive.writestr("labels.npy", labels_npy.getvalue())
    np.savez(tmp_path / "uneven.npz", images=np.zeros((5, 1, 2, 2), np.float32), labels=np.arange(4))
    np.savez(tmp_path / "complex.npz", images=np.zeros((2, 1, 2, 2), np.complex128), labels=np.arange(2))
    for spec, match in (("huge.npz", "at most"), ("objects.npz", "real numeric images"), ("missing.npz", "does not exist"),
                        ("uneven.npz", r"labels of shape \(N,\), received \(5, 1, 2, 2\) and \(4,\)"),
                        ("complex.npz", "real numeric images"), ("imagenet", "expected probe data")):
        with pytest.raises(GuidegapError, match=match):
            load_probe_set(str(tmp_path / spec) if spec.endswith(".npz") else spec)


def test_a_probe_set_can_be_named_in_the_python_api_as_on_the_command_line(scheduler):
    from guidegap.oracle import oracle_mixture

    tier = oracle_mixture(0).denoiser(scheduler)
    report = guidegap.audit(shrunk_student(tier, 0.5), tier, data="oracle", num_samples=50, n_boot=50, thresholds=DESIGN)
    assert report.is_probe and report.dataset.sizes["sample"] == 50 and report.verdict == "miscalibrated"


def test_a_probe_audit_takes_the_probe_bar_of_the_misguided_rule_and_a_trajectory_audit_does_not(oracle, tmp_path):
    from guidegap.oracle import noisy_student

    held_out = oracle.mixture.sample(200, generator=torch.Generator().manual_seed(5))
    student = noisy_student(oracle, 0.1, 0.1)
    relaxed = dict(min_cos=-1.0, max_rel_branch_error=math.inf, rho_low=0.3, rho_high=math.inf)  # the guided error alone
    error = guidegap.audit(student, oracle, data=held_out, n_boot=50, thresholds=guidegap.Thresholds(**relaxed)).summary[
        "rel_guided_error"].value
    both = guidegap.Thresholds(**relaxed, max_rel_guided_error=10 * error, max_rel_guided_error_probe=error / 2)
    report = guidegap.audit(student, oracle, data=held_out, n_boot=50, thresholds=both)
    assert report.verdict == "misguided" and f"<= {error / 2}" in report.finding.reason  # the probe's own bar
    assert f"<= {error / 2}" in str(report)  # the report's healthy column shows the bar that judged it
    again = guidegap.AuditReport.from_dataset(guidegap.load_dataset(report.save(tmp_path / "probe.nc")), n_boot=50)
    assert again.verdict == "misguided" and again.thresholds.max_rel_guided_error_probe == error / 2
    trajectory = guidegap.audit(student, oracle, num_samples=16, num_steps=10, n_boot=50, divergence=False,
                                thresholds=guidegap.Thresholds(**relaxed, max_rel_guided_error=None, max_rel_guided_error_probe=1e-9))
    assert trajectory.verdict == "healthy"  # the probe bar never judges a trajectory; its own bar is off
    unset = guidegap.Thresholds(max_rel_guided_error=0.3, max_rel_guided_error_probe=None)
    assert unset.for_probe() is unset  # no probe bar: a probe takes max_rel_guided_error
    assert guidegap.Thresholds(max_rel_guided_error=0.3, max_rel_guided_error_probe=math.inf).for_probe().max_rel_guided_error is None
    with pytest.raises(GuidegapError, match="max_rel_guided_error_probe > 0"):
        guidegap.Thresholds(max_rel_guided_error_probe=0.0)


def test_probe_data_auto_is_the_training_data_a_model_declares(scheduler, tmp_path):
    from guidegap.auditing.api import declared_probe_set
    from guidegap.checkpoints.resolve import resolve_model
    from guidegap.oracle import oracle_mixture

    tier = oracle_mixture(3).denoiser(scheduler)
    named = guidegap.audit(shrunk_student(tier, 0.5), "oracle:3", data="oracle:3", num_samples=40, n_boot=20)
    auto = guidegap.audit(shrunk_student(tier, 0.5), "oracle:3", data="auto", num_samples=40, n_boot=20)
    assert auto.summary["rho"].value == named.summary["rho"].value  # the oracle teacher's data is its mixture
    assert resolve_model("oracle:3").data == "oracle:3" and resolve_model(tier).data is None
    with pytest.raises(GuidegapError, match="neither model declares"):
        guidegap.audit(shrunk_student(tier, 0.5), tier, data="auto")
    with pytest.raises(GuidegapError, match="neither model declares"):
        declared_probe_set(None, resolve_model(tier))


def test_prefer_probe_runs_the_probe_on_declared_installed_data_and_trajectories_otherwise(scheduler, monkeypatch):
    from guidegap.data import fashion_mnist
    from guidegap.examples import example_pair
    from guidegap.oracle import oracle_mixture

    tier = oracle_mixture(3).denoiser(scheduler)
    preferred = guidegap.audit(shrunk_student(tier, 0.5), "oracle:3", prefer_probe=True, num_samples=40, n_boot=20)
    auto = guidegap.audit(shrunk_student(tier, 0.5), "oracle:3", data="auto", num_samples=40, n_boot=20)
    assert preferred.dataset.attrs["mode"] == "data-probe" and preferred.summary["rho"].value == auto.summary["rho"].value
    assert "'oracle:3'" in preferred.dataset.attrs["mode_reason"] and "mode_reason" not in auto.dataset.attrs
    assert preferred.to_dict()["mode"] == "data-probe" and "mode: data probe on 'oracle:3'" in str(preferred)
    undeclared = guidegap.audit(shrunk_student(tier, 0.5), tier, prefer_probe=True, num_samples=4, num_steps=3, n_boot=20)
    assert undeclared.dataset.attrs["mode"] == "teacher-forced" and "mode_reason" not in undeclared.dataset.attrs
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_ROOT", fashion_mnist.Path("/nonexistent/fashion-mnist"))
    student, teacher = example_pair("cond-only")  # the example teacher declares fashion-mnist, absent here now
    missing = guidegap.audit(student, teacher, prefer_probe=True, num_samples=2, num_steps=2, divergence=False, n_boot=20)
    assert missing.dataset.attrs["mode"] == "teacher-forced" and missing.to_dict()["config"]["num_samples"] == 2
    reason = missing.to_dict()["mode_reason"]
    assert reason.startswith("along trajectories: the declared data 'fashion-mnist' cannot be read here") and "apt-get" in reason


def test_a_named_probe_set_the_teacher_cannot_take_is_refused_naming_the_set():
    from guidegap.errors import InputError
    from guidegap.oracle import GaussianMixture, collapsed_student
    from guidegap.recording.schedulers import default_scheduler

    other = GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(default_scheduler())
    with pytest.raises(InputError, match=r"shape \(1, 4, 4\) \(the teacher's\), received \(1, 2, 2\) from the probe set 'oracle'.*"
                                         r"oracle tier's own mixture"):
        guidegap.audit(collapsed_student(other, 4.0), other, data="oracle", num_samples=100)
