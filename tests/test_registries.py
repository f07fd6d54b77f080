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
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import VERDICTS, Verdict, parse_fail_on, register_verdict, remove_verdict
from guidegap.errors import InputError
from guidegap.metrics.registry import Metric, register_metric, remove_metric
from guidegap.oracle import shrunk_student

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
    report = guidegap.audit(shrunk_student(oracle, 3.0), oracle, scheduler=scheduler, **FAST)
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
