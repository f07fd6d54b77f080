"""One home per concept (issue 15): a metric, a verdict or a model family added in one place reaches everything.

Each test registers a new one itself and follows it through to the recorded Dataset, the report and the
``ds.guidegap`` accessor (and where they apply, the training log, the figures and the CLI's ``--fail-on``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import guidegap
import guidegap.accessor  # noqa: F401  (ds.guidegap)
import guidegap.denoisers
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import VERDICTS, Verdict, parse_fail_on, register_verdict, remove_verdict
from guidegap.errors import InputError
from guidegap.metrics.registry import Metric, register_metric, remove_metric
from guidegap.oracle import shrunk_student

from conftest import DESIGN

FAST = dict(num_samples=8, num_steps=6, n_boot=50)


def gap_l1(student_cond, student_uncond, teacher_cond, teacher_uncond, guidance_scale):
    """Mean absolute difference of the student's and the teacher's guidance gaps, per sample."""
    return ((student_cond - student_uncond) - (teacher_cond - teacher_uncond)).abs().flatten(1).mean(1)


def cond_peak(pred_cond, pred_uncond):
    """Largest absolute conditional prediction, per sample."""
    return pred_cond.abs().flatten(1).amax(1)


@pytest.fixture
def added_metrics():
    register_metric(Metric("gap_l1", "pair", "mean absolute difference of student and teacher guidance gaps",
                           function=gap_l1, label="gap L1"))
    register_metric(Metric("cond_peak", "model", "largest absolute conditional prediction", function=cond_peak,
                           label="peak |eps_c|"))
    try:
        yield
    finally:
        remove_metric("gap_l1")
        remove_metric("cond_peak")


def test_a_metric_is_its_function_plus_one_registry_entry(added_metrics, oracle, scheduler, tmp_path):
    from guidegap.monitoring.log import log_entry
    from guidegap.results.schema import VARIABLES

    assert VARIABLES["gap_l1"].dims == ("sample", "step") and VARIABLES["cond_peak"].dims == ("model", "sample", "step")
    report = guidegap.audit(shrunk_student(oracle, 0.5), oracle, scheduler=scheduler, **FAST)
    ds = report.dataset
    # the Dataset: recorded per sample and step, with its metadata, equal to the function at the recorded states
    assert ds["gap_l1"].dims == ("sample", "step") and ds["gap_l1"].attrs["units"] == "1"
    assert ds["gap_l1"].attrs["long_name"] == "mean absolute difference of student and teacher guidance gaps"
    assert ds["cond_peak"].dims == ("model", "sample", "step")
    kept = guidegap.trace(oracle, shrunk_student(oracle, 0.5), scheduler=scheduler, keep_predictions=True,
                          num_samples=4, num_steps=3)
    pred = {name: torch.as_tensor(kept[name].isel(step=1).values) for name in ("pred_cond", "pred_uncond")}
    expected = gap_l1(pred["pred_cond"][1], pred["pred_uncond"][1], pred["pred_cond"][0], pred["pred_uncond"][0], 4.0)
    np.testing.assert_allclose(kept["gap_l1"].isel(step=1).values, expected.numpy(), rtol=1e-5)
    # the summary, the report and its JSON, the accessor, a stored round trip
    assert report.summary["gap_l1"].value == pytest.approx(float(ds["gap_l1"].mean("step").mean()))
    assert "gap L1" in str(report) and "gap_l1" in report.to_dict()["ci"]
    assert ds.guidegap.summary(n_boot=50)["gap_l1"] == report.summary["gap_l1"]
    again = AuditReport.from_dataset(guidegap.load_dataset(report.save(tmp_path / "audit.nc")), n_boot=50)
    assert again.summary["gap_l1"].value == pytest.approx(report.summary["gap_l1"].value)
    # the training log: a per-step curve and a summary with its confidence interval
    entry = log_entry(report, 10, 0.5, {"config": "{}"})
    assert entry["gap_l1_per_step"].dims == ("training_step", "step") and "gap_l1_ci" in entry
    assert entry["gap_l1_per_step"].attrs["long_name"].startswith("mean over samples of")
    # a model metric is summarised where one model is audited: the teacher-free report
    alone = guidegap.audit(oracle, None, scheduler=scheduler, **FAST)
    assert "peak |eps_c|" in str(alone) and alone.summary["cond_peak"].value > 0


def test_a_metric_name_is_taken_once_and_the_schema_forgets_a_removed_one(added_metrics):
    from guidegap.results.schema import VARIABLES

    with pytest.raises(InputError, match="registered already"):
        register_metric(Metric("gap_l1", "pair", "again", function=gap_l1))
    with pytest.raises(InputError, match="needs the function"):
        register_metric(Metric("gap_l2", "pair", "no function"))
    with pytest.raises(InputError, match="built-in|added with register_metric"):
        remove_metric("gap_cos")
    remove_metric("gap_l1")
    assert "gap_l1" not in VARIABLES
    register_metric(Metric("gap_l1", "pair", "mean absolute difference of student and teacher guidance gaps",
                           function=gap_l1, label="gap L1"))


@pytest.fixture
def overguided():
    record = register_verdict(Verdict(
        "overguided",
        "The student's guidance gap is more than twice the teacher's: at a given w it is guided as the teacher would "
        "be at a far larger w.",
        "Sample the student at w' = 1 + (w - 1) / rho, or re-distill with --objective dash.",
        colour=6, precedence=25,
        rule=lambda v, th: f"rho = {v['rho']:.3g} > {2 * th.rho_high}" if v["rho"] > 2 * th.rho_high else None,
    ))
    try:
        yield record
    finally:
        remove_verdict("overguided")


def test_a_verdict_is_one_record(overguided, oracle, scheduler, tmp_path):
    from guidegap.cli.main import main
    from guidegap.plots.training import verdict_colors

    assert "overguided" in VERDICTS and "overguided" in parse_fail_on(None)
    report = guidegap.audit(shrunk_student(oracle, 3.0), oracle, scheduler=scheduler, thresholds=DESIGN, **FAST)
    # the rule: before miscalibrated (precedence 25 < 30), which also fires
    assert report.verdict == "overguided" and report.finding.fired == ["overguided", "miscalibrated"]
    assert report.finding.reason == "rho = 3 > 2.5"
    ds = report.dataset
    assert ds.attrs["verdict"] == "overguided"
    text = " ".join(str(report).split())  # the report wraps its text at 100 columns
    assert "VERDICT: OVERGUIDED" in text and "guided as the teacher would be" in text and "w' = 1 + (w - 1) / rho" in text
    assert "It shows in the early, middle, late steps." in text  # located in the phases like any pair rule
    assert report.to_dict()["suggestion"].startswith("Sample the student at w'")
    assert ds.guidegap.verdict() == "overguided"
    stored = guidegap.load_dataset(report.save(tmp_path / "audit.nc"))
    assert AuditReport.from_dataset(stored).verdict == "overguided"
    assert not report.passes() and report.passes("miscalibrated,collapsed")
    assert verdict_colors()["overguided"] == 6
    assert main(["plot", str(tmp_path / "audit.nc"), "--figure", str(tmp_path / "audit.png")]) == 0


def test_a_verdict_name_is_taken_once(overguided):
    with pytest.raises(InputError, match="registered already"):
        register_verdict(Verdict("collapsed", "again", "again"))
    with pytest.raises(InputError, match="added with register_verdict"):
        remove_verdict("healthy")
    assert json.dumps(list(VERDICTS))  # still a plain sequence of names


# -- a model family -----------------------------------------------------------------------------------
class ToyNet(torch.nn.Module):
    """A family the generic adapter cannot take: it declares its classes and size only in ``config``."""

    def __init__(self, classes: int = 3, size: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.config = {"classes": classes, "size": size, "seed": seed}
        self.table = torch.nn.Embedding(classes + 1, size * size)
        self.mix = torch.nn.Linear(size * size, size * size)

    def forward(self, sample, timestep, class_id):
        h = self.mix(sample.flatten(1)) + self.table(class_id) * (1 + timestep.float()[:, None] / 1000)
        return (torch.tanh(h).view_as(sample),)


class ToyDenoiser(guidegap.denoisers.Denoiser):
    """The family's adapter: classes and sample shape from the config, the null label is the last embedding row."""

    def __init__(self, model: ToyNet) -> None:
        size, classes = model.config["size"], model.config["classes"]
        super().__init__(num_classes=classes, null_label=classes, sample_shape=(1, size, size), module=model, name="ToyNet")
        self.model = model

    def forward(self, x, t, labels):
        return self.model(x, t, class_id=labels)[0]


@pytest.fixture
def toy_family():
    from guidegap.denoisers import Family, register_family, remove_family

    register_family(Family("ToyNet", ToyDenoiser, layout=lambda m: ("cond-first", "class_id", m.config["classes"]),
                           build=lambda config: ToyNet(**config)))
    try:
        yield
    finally:
        remove_family("ToyNet")


def test_a_model_family_is_one_adapter_plus_its_registration(toy_family, scheduler, tmp_path):
    from guidegap.checkpoints import Checkpoint, save_checkpoint

    teacher, student = ToyNet(seed=0), ToyNet(seed=0)
    assert isinstance(guidegap.as_denoiser(student), ToyDenoiser)
    # an audit of models in memory: the Dataset, the report, the accessor
    report = guidegap.audit(student, teacher, scheduler=scheduler, **FAST)
    ds = report.dataset
    assert report.verdict == "healthy" and report.summary["rho"].value == 1.0
    models = json.loads(ds.attrs["config"])["models"]
    assert models["student"]["name"] == "ToyNet" and models["student"]["num_parameters"] == sum(
        p.numel() for p in student.parameters())
    assert "ToyNet" in str(report) and ds.guidegap.verdict() == "healthy"
    # checkpoints of the family are rebuilt by its registration and audited from their files
    paths = []
    for name, model in (("teacher", teacher), ("student", student)):
        paths.append(save_checkpoint(Checkpoint("ToyNet", dict(model.config), model.state_dict(),
                                                scheduler_config={"_class_name": "DDIMScheduler", **scheduler.config}),
                                     tmp_path / f"{name}.pt"))
    from_files = guidegap.audit(str(paths[1]), str(paths[0]), **FAST)
    assert from_files.verdict == "healthy" and from_files.dataset.attrs["student"] == str(paths[1])
    # a bare model of the family is recorded in the layout its registration declares (cond half first)
    x = torch.randn(2, 1, 4, 4)
    with guidegap.record(teacher) as rec:
        teacher(torch.cat([x, x]), torch.full((4,), 500), class_id=torch.tensor([0, 1, 3, 3]))
    assert rec.paired_steps == 1 and rec.dataset["gap_norm"].dims == ("model", "sample", "step")
    np.testing.assert_array_equal(rec.dataset["label"].values, [0, 1])
