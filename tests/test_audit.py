"""Audit verdicts (docs/design.md §2) on constructed students whose verdict is known, for UNet2DModel and DiT.

Every student is the teacher with one surgical edit:

* exact copy                          -> healthy        (rho = cos = 1, every error 0)
* class rows = null row               -> collapsed      (eps_c = eps_u exactly, gap 0)
* class rows pulled toward the null   -> miscalibrated  (0.3 < rho < 0.8)
* constant added to the output bias   -> drifted        (gap untouched: rho = cos = 1, branch errors large)
* NaN weights                         -> non-finite
"""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
import torch

import guidegap
from guidegap.auditing.report import AuditReport, parse_fail_on
from guidegap.auditing.verdicts import VERDICTS, Thresholds, judge_pair, judge_teacher_free
from guidegap.denoisers import ModuleDenoiser, as_denoiser
from guidegap.errors import GuidegapError, InputError
from guidegap.metrics.summary import Estimate

from conftest import DESIGN, tiny_dit, tiny_unet

NUM_CLASSES = 4
FAST = dict(num_samples=8, num_steps=8)
FAMILIES = {"unet": tiny_unet, "dit": tiny_dit}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHRINK_FACTOR = 0.4  # class rows moved 60% of the way to the null row


# -- constructed students -------------------------------------------------------------------------
def label_tables(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every class-embedding weight (rows 0..K-1 real classes, row K the null label)."""
    from diffusers.models.embeddings import LabelEmbedding

    if getattr(model, "class_embedding", None) is not None:  # UNet2DModel
        return [model.class_embedding.weight]
    tables = [m.embedding_table.weight for m in model.modules() if isinstance(m, LabelEmbedding)]
    assert tables, "a DiT has one LabelEmbedding per block"
    return tables


def output_bias(model: torch.nn.Module) -> torch.Tensor:
    return model.conv_out.bias if hasattr(model, "conv_out") else model.proj_out_2.bias


def shrunk_student(teacher: torch.nn.Module, factor: float) -> torch.nn.Module:
    """emb[y] = null + factor (emb[y] - null): factor 1 is the teacher, 0 collapses the gap exactly."""
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for weight in label_tables(student):
            null = weight[NUM_CLASSES].clone()
            weight[:NUM_CLASSES] = null if factor == 0 else null + factor * (weight[:NUM_CLASSES] - null)
    return student


def collapsed_student(teacher: torch.nn.Module) -> torch.nn.Module:
    return shrunk_student(teacher, 0.0)


def output_rms(model: torch.nn.Module) -> float:
    """RMS of the eps prediction over random states, timesteps and labels (the teacher's output scale)."""
    gen = torch.Generator().manual_seed(123)
    denoiser = as_denoiser(model)
    x = torch.randn(16, *denoiser.sample_shape, generator=gen)
    t = torch.randint(0, 1000, (16,), generator=gen)
    y = torch.randint(0, NUM_CLASSES + 1, (16,), generator=gen)
    with torch.no_grad():
        return float(denoiser(x, t, y).pow(2).mean().sqrt())


def drifted_student(teacher: torch.nn.Module, relative_shift: float = 1.0) -> tuple[torch.nn.Module, float]:
    """Both branches moved by the same constant (relative to the teacher's output RMS); returns it too."""
    student = copy.deepcopy(teacher)
    shift = relative_shift * output_rms(teacher)
    with torch.no_grad():
        output_bias(student).add_(shift)
    return student, shift


def nan_student(teacher: torch.nn.Module) -> torch.nn.Module:
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        output_bias(student).fill_(float("nan"))
    return student


class NaNLate(torch.nn.Module):
    """The teacher's predictions, NaN for t < 500 (a run that blows up late)."""

    def __init__(self, teacher: torch.nn.Module) -> None:
        super().__init__()
        self.inner = as_denoiser(teacher)
        self.num_classes, self.sample_shape = self.inner.num_classes, self.inner.sample_shape

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.inner(x, t, y)
        return torch.where(t.view(-1, 1, 1, 1) < 500, torch.full_like(out, float("nan")), out)


def values(report: AuditReport) -> dict[str, float]:
    return {name: est.value for name, est in report.summary.items()}


def flat_text(report: AuditReport) -> str:
    return " ".join(str(report).split())


def estimates(**overrides: float) -> dict[str, Estimate]:
    """A hand-made healthy pair summary with point CIs; keyword arguments override values."""
    base = dict(rho=1.0, cos_delta=0.95, rel_cond_error=0.05, rel_uncond_error=0.05, gap_mse=0.0, nonfinite=0.0)
    base.update(overrides)
    return {name: Estimate(value, value, value, 0.95) for name, value in base.items()}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def teacher(request):
    return FAMILIES[request.param](NUM_CLASSES)


# -- constructed students, both model families ------------------------------------------------------
def test_exact_copy_is_healthy(teacher):
    report = guidegap.audit(copy.deepcopy(teacher), teacher, **FAST)
    v = values(report)
    assert report.verdict == "healthy", report.finding.reason
    assert report.finding.fired == []
    assert v["rho"] == pytest.approx(1.0, abs=1e-6)
    assert v["cos_delta"] == pytest.approx(1.0, abs=1e-5)
    for name in ("gap_mse", "cond_error", "uncond_error", "rel_cond_error", "rel_uncond_error", "guided_error", "divergence"):
        assert v[name] == 0.0, name
    assert v["nonfinite"] == 0.0
    assert report.passes() and report.passes("healthy") is False


def test_null_class_embeddings_collapse_the_gap_exactly(teacher):
    report = guidegap.audit(collapsed_student(teacher), teacher, **FAST)
    ds = report.dataset
    assert report.verdict == "collapsed", report.finding.reason
    assert float(ds.gap_norm.sel(model="student").max()) == 0.0
    assert float(ds.gap_norm.sel(model="teacher").min()) > 1e-4
    assert values(report)["rho"] == 0.0
    # eps_u is untouched: the unconditional branch is the teacher's, only the conditional one moved.
    assert values(report)["uncond_error"] == 0.0 and values(report)["cond_error"] > 0
    assert "miscalibrated" in report.finding.fired  # later rules still listed as evidence
    # It fires in every phase of the trajectory, and the text says so.
    assert report.where() == ["early", "middle", "late"]
    assert all("collapsed" in p["fired"] for p in report.phases)
    assert "It shows in the early, middle, late steps." in flat_text(report)
    assert "VERDICT: COLLAPSED" in str(report)
    assert not report.passes() and report.passes("miscalibrated,drifted")


def test_shrunk_gap_is_miscalibrated(teacher):
    report = guidegap.audit(shrunk_student(teacher, SHRINK_FACTOR), teacher, thresholds=DESIGN, **FAST)
    rho = values(report)["rho"]
    assert 0.4 < rho < 0.75, f"the constructed student should land clearly between the thresholds, got rho={rho}"
    assert report.verdict == "miscalibrated", report.finding.reason
    assert "collapsed" not in report.finding.fired
    assert values(report)["uncond_error"] == 0.0


def test_shifted_branches_are_drifted_although_rho_and_cos_look_fine(teacher):
    student, shift = drifted_student(teacher, 1.0)
    report = guidegap.audit(student, teacher, thresholds=DESIGN, **FAST)
    v = values(report)
    # The gap is untouched: only the per-branch errors can see this student.
    assert v["rho"] == pytest.approx(1.0, abs=1e-4)
    assert v["cos_delta"] >= 0.8 and v["cos_delta"] == pytest.approx(1.0, abs=1e-3)
    assert v["gap_mse"] < 1e-10
    # Teacher-forced: both branches are off by exactly the constant, at every step.
    assert v["cond_error"] == pytest.approx(shift, rel=1e-4)
    assert v["uncond_error"] == pytest.approx(shift, rel=1e-4)
    assert min(v["rel_cond_error"], v["rel_uncond_error"]) > 0.5
    assert report.verdict == "drifted", report.finding.reason
    assert report.finding.fired == ["drifted"]
    # Guidance does not amplify a shared error: e_u + w (e_c - e_u) = e_u.
    assert v["amplification"] == pytest.approx(1.0, abs=1e-3)


def test_nan_weights_are_non_finite_and_reported(teacher):
    report = guidegap.audit(nan_student(teacher), teacher, **FAST)
    assert report.verdict == "non-finite"
    assert report.finding.fired == ["non-finite"]  # NaN metrics must not also "fire" the other rules
    assert report.nonfinite_timesteps() == [float(t) for t in report.dataset.timestep.values]
    assert values(report)["nonfinite"] == 1.0
    text = flat_text(report)
    assert "VERDICT: NON-FINITE" in text and "NaN/Inf first at timestep 875 (8 of 8 steps)" in text
    assert json.dumps(report.to_dict(), allow_nan=False)
    assert report.to_dict()["rho"] is None


def test_nan_late_in_the_trajectory_is_located():
    teacher = tiny_unet(NUM_CLASSES)
    report = guidegap.audit(ModuleDenoiser(NaNLate(teacher), num_classes=NUM_CLASSES, sample_shape=(1, 8, 8)), teacher, **FAST)
    timesteps = report.dataset.timestep.values
    assert report.verdict == "non-finite"
    assert report.nonfinite_timesteps() == [float(t) for t in timesteps[timesteps < 500]]
    assert "NaN/Inf first at timestep 375 (4 of 8 steps)" in flat_text(report)
    assert [p["verdict"] for p in report.phases] == ["healthy", "non-finite", "non-finite"]


def test_a_teacher_without_a_gap_is_not_called_non_finite():
    collapsed = collapsed_student(tiny_unet(NUM_CLASSES))
    report = guidegap.audit(copy.deepcopy(collapsed), collapsed, **FAST)
    assert values(report)["nonfinite"] == 0.0 and math.isnan(values(report)["rho"])  # 0 / 0
    assert report.verdict == "inconclusive"
    assert "teacher" in report.finding.reason and "NaN" not in report.finding.reason
    assert "teacher" in flat_text(report)


def _oracle_wrapper(forward, name):
    from guidegap.oracle import GaussianMixture
    from guidegap.oracle.students import _TeacherWrapper
    from guidegap.recording.schedulers import default_scheduler

    teacher = GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(
        default_scheduler())

    class Wrapped(_TeacherWrapper):
        def __init__(self):
            super().__init__(teacher, name)
            self.calls = 0

        def forward(self, x, t, labels):
            self.calls += 1
            return forward(self, x, t, labels)

    return teacher, Wrapped()


def test_a_student_that_breaks_on_its_own_path_is_non_finite():
    """Exact at the teacher's states, NaN on its own free-running path (its second call of each step)."""
    teacher, student = _oracle_wrapper(
        lambda self, x, t, labels: self.teacher(x, t, labels) * (float("nan") if self.calls % 2 == 0 else 1.0), "nan-own-path")
    report = guidegap.audit(student, teacher, num_samples=4, num_steps=6, n_boot=50)
    assert values(report)["nonfinite"] == 0.0 and math.isnan(values(report)["divergence"])
    assert report.verdict == "non-finite" and "own (free-running) path" in report.finding.reason


def test_a_student_beside_a_teacher_without_a_gap_is_inconclusive_not_miscalibrated():
    """The teacher is label-blind (its gap is exactly zero); a student with a tiny gap has rho = x/0 = inf."""
    def blind(self, x, t, labels):
        return self.teacher(x, t, torch.full_like(labels, self.teacher.null_label))

    _, zero_gap = _oracle_wrapper(blind, "label-blind")
    _, tiny_gap = _oracle_wrapper(lambda self, x, t, labels: blind(self, x, t, labels)
                                  + 1e-4 * (labels != self.null_label).view(-1, 1, 1, 1).float(), "tiny-gap")
    report = guidegap.audit(tiny_gap, zero_gap, num_samples=4, num_steps=6, n_boot=50)
    assert math.isinf(values(report)["rho"]) and report.verdict == "inconclusive"


def test_a_teacher_free_model_that_predicts_zeros_is_collapsed_not_non_finite():
    _, zeros = _oracle_wrapper(lambda self, x, t, labels: torch.zeros_like(self.teacher(x, t, labels)), "zero-init")
    report = guidegap.audit(zeros, None, num_samples=4, num_steps=6, n_boot=50)
    assert report.verdict == "collapsed" and "zero" in report.finding.reason
    assert not report.passes("collapsed")


# -- verdict rules on hand-made summaries ---------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, verdict",
    [
        ({}, "healthy"),
        ({"rho": 0.2, "cos_delta": 0.1}, "collapsed"),  # collapsed comes before miscalibrated
        ({"rho": 0.2, "cos_delta": 0.1, "rel_cond_error": 0.9}, "collapsed"),
        ({"rho": 0.3}, "miscalibrated"),  # collapsed is rho < 0.3, strictly
        ({"rho": 0.5}, "miscalibrated"),
        ({"rho": 1.3}, "miscalibrated"),
        ({"cos_delta": 0.7}, "miscalibrated"),
        ({"cos_delta": 0.7, "rel_uncond_error": 0.9}, "miscalibrated"),  # before drifted
        ({"rho": 0.8, "cos_delta": 0.8, "rel_cond_error": 0.25}, "healthy"),  # bounds are inclusive
        ({"rho": 1.25}, "healthy"),
        ({"rel_cond_error": 0.26}, "drifted"),
        ({"rel_uncond_error": 0.3}, "drifted"),
        ({"nonfinite": 0.125, "rho": 0.1}, "non-finite"),  # non-finite comes first
    ],
)
def test_judge_pair_first_rule_that_holds(overrides, verdict):
    finding = judge_pair(estimates(**overrides), DESIGN)
    assert finding.verdict == verdict, finding.reason
    assert (finding.fired[0] if finding.fired else "healthy") == verdict


def test_the_misguided_rule_is_off_in_the_design_set_and_judges_the_guided_error_when_given_a_bar():
    assert judge_pair(estimates(rel_guided_error=5.0), DESIGN).verdict == "healthy"  # off: the other rules decide
    bar = Thresholds.named("design", max_rel_guided_error=0.3)
    assert judge_pair(estimates(rel_guided_error=0.3), bar).verdict == "healthy"  # the bound is inclusive
    finding = judge_pair(estimates(rel_guided_error=0.31), bar)
    assert finding.verdict == "misguided" and "0.31" in finding.reason and "<= 0.3" in finding.reason
    finding = judge_pair(estimates(rel_guided_error=0.5, rel_cond_error=0.3), bar)
    assert finding.verdict == "drifted" and finding.fired == ["drifted", "misguided"]  # the specific cause first
    assert judge_pair(estimates(), bar).verdict == "healthy"  # a summary without the statistic (an older log) passes
    with pytest.raises(InputError, match="max_rel_guided_error > 0"):
        Thresholds(max_rel_guided_error=0.0)


def test_judge_pair_lists_every_rule_that_fires_in_order():
    finding = judge_pair(estimates(rho=0.2, cos_delta=0.1, rel_cond_error=0.9), DESIGN)
    assert finding.fired == ["collapsed", "miscalibrated", "drifted"]
    assert "rho = 0.2 < 0.3" in finding.reason


def test_judge_pair_nan_without_nonfinite_record_is_non_finite():
    summary = estimates(rho=float("nan"))
    del summary["nonfinite"]
    finding = judge_pair(summary)
    assert finding.verdict == "non-finite" and finding.fired == ["non-finite"]


def test_custom_thresholds_change_the_verdict():
    assert judge_pair(estimates(rho=0.2)).verdict == "collapsed"
    assert judge_pair(estimates(rho=0.2), Thresholds(collapsed_rho=0.1)).verdict == "miscalibrated"
    assert judge_pair(estimates(rho=0.6), Thresholds(rho_low=0.5)).verdict == "healthy"
    assert judge_pair(estimates(rho=1.1), Thresholds(rho_high=1.05)).verdict == "miscalibrated"
    assert judge_pair(estimates(cos_delta=0.7), Thresholds(min_cos=0.6)).verdict == "healthy"
    assert judge_pair(estimates(rel_cond_error=0.5), Thresholds(max_rel_branch_error=1.0)).verdict == "healthy"
    assert judge_pair(estimates(rel_cond_error=0.1), Thresholds(max_rel_branch_error=0.05)).verdict == "drifted"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"collapsed_rho": 1.2},
        {"collapsed_rho": -0.1},
        {"rho_low": -0.1},
        {"rho_low": 1.1},
        {"rho_high": 0.9},
        {"min_cos": 1.5},
        {"min_cos": -2.0},
        {"max_rel_branch_error": 0.0},
        {"max_rel_branch_error": float("nan")},
        {"rho_high": float("nan")},
        {"min_rel_gap": -1.0},
        {"min_guidance_response": float("nan")},
    ],
)
def test_invalid_thresholds_raise(kwargs):
    with pytest.raises(InputError):
        Thresholds(**kwargs)


def test_a_collapse_bar_above_rho_low_switches_the_bands_low_side_off():
    """Raising collapsed_rho alone is valid: the collapse rule runs first, so the band's low side never fires."""
    raised = Thresholds(collapsed_rho=0.9)
    values = {"rel_cond_error": 0.05, "rel_uncond_error": 0.05, "cos_delta": 0.95, "nonfinite": 0.0}
    judged = {r: judge_pair({k: Estimate(v, v, v, 0.95) for k, v in {**values, "rho": r}.items()}, raised).verdict
              for r in (0.85, 0.95)}
    assert judged == {0.85: "collapsed", 0.95: "healthy"}


def test_judge_teacher_free_can_only_call_collapse():
    one = {"rel_gap": Estimate(0.2, 0.1, 0.3, 0.95), "nonfinite": Estimate(0.0, 0.0, 0.0, 0.95)}
    assert judge_teacher_free(one, guidance_response=5.0).verdict == "inconclusive"
    assert judge_teacher_free(one, guidance_response=0.0).verdict == "collapsed"
    vanished = {**one, "rel_gap": Estimate(0.0, 0.0, 0.0, 0.95)}
    assert judge_teacher_free(vanished, guidance_response=5.0).verdict == "collapsed"
    broken = {**one, "nonfinite": Estimate(0.5, 0.0, 1.0, 0.95)}
    assert judge_teacher_free(broken, guidance_response=5.0).verdict == "non-finite"
    assert judge_teacher_free(one, 0.5, Thresholds(min_guidance_response=1.0)).verdict == "collapsed"


# -- teacher-free audits --------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_teacher_free_collapsed_student_is_collapsed(family):
    student = collapsed_student(FAMILIES[family](NUM_CLASSES))
    report = guidegap.audit(student, None, **FAST)
    assert report.verdict == "collapsed", report.finding.reason
    assert not report.has_teacher
    assert values(report)["rel_gap"] == 0.0
    assert values(report)["guidance_response"] < 1e-4
    assert "teacher  none (teacher-free audit)" in str(report)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_teacher_free_normal_model_is_inconclusive(family):
    report = guidegap.audit(FAMILIES[family](NUM_CLASSES), None, **FAST)
    assert report.verdict == "inconclusive"
    assert values(report)["rel_gap"] > 0.01 and values(report)["guidance_response"] > 0.1
    text = flat_text(report)
    assert "VERDICT: INCONCLUSIVE" in text
    assert "It cannot judge whether the gap has the right size or direction" in text
    assert "--teacher" in text
    assert not report.passes() and report.passes("collapsed,non-finite")


# -- report: fail-on, dict/JSON, files ------------------------------------------------------------
@pytest.fixture(scope="module")
def collapsed_report():
    teacher = tiny_unet(NUM_CLASSES)
    return guidegap.audit(collapsed_student(teacher), teacher, **FAST)


def test_parse_fail_on():
    assert parse_fail_on(None) == set(VERDICTS) - {"healthy"}
    assert parse_fail_on("none") == set()
    assert parse_fail_on(" collapsed , non-finite ") == {"collapsed", "non-finite"}
    assert parse_fail_on(["drifted"]) == {"drifted"}
    for bad in ("colapsed", "collapsed,bogus", "none,collapsed", "", " , "):
        with pytest.raises(InputError):
            parse_fail_on(bad)


def test_passes(collapsed_report):
    assert not collapsed_report.passes()
    assert collapsed_report.passes("none")
    assert collapsed_report.passes("miscalibrated")
    assert not collapsed_report.passes("collapsed")
    assert not collapsed_report.passes(["drifted", "collapsed"])
    with pytest.raises(InputError):
        collapsed_report.passes("nope")


def test_to_dict_is_json_with_the_contract_keys(collapsed_report):
    d = collapsed_report.to_dict()
    assert d["verdict"] == "collapsed"
    assert d["rho"] == 0.0 and d["cos_delta"] == 0.0 and d["gap_mse"] > 0
    assert d["ci"]["rho"] == [0.0, 0.0]
    assert [p["phase"] for p in d["phases"]] == ["early", "middle", "late"]
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert json.loads(collapsed_report.to_json())["verdict"] == "collapsed"


def test_a_rule_switched_off_by_an_infinite_bar_stays_json(collapsed_report):
    ds = collapsed_report.dataset.copy()
    ds.attrs["thresholds"] = json.dumps(Thresholds.named("design", rho_high=math.inf).to_dict())  # written as Infinity
    off = AuditReport.from_dataset(ds, n_boot=50)
    d = json.loads(off.to_json())  # strict JSON: to_json refuses NaN / Infinity
    assert d["thresholds"]["rho_high"] is None and d["thresholds"]["max_rel_guided_error"] is None
    assert Thresholds(**d["thresholds"]) == Thresholds.named("design", rho_high=math.inf)  # null reads back as no bar
    with pytest.raises(InputError, match="received None for min_cos"):
        Thresholds(min_cos=None)


def test_same_seed_same_report_other_seed_differs():
    teacher = tiny_dit(NUM_CLASSES)
    student = shrunk_student(teacher, SHRINK_FACTOR)
    first = guidegap.audit(student, teacher, seed=3, **FAST).to_dict()
    again = guidegap.audit(student, teacher, seed=3, **FAST).to_dict()
    other = guidegap.audit(student, teacher, seed=4, **FAST).to_dict()
    assert first == again
    assert first["rho"] != other["rho"]


def test_save_and_reload_gives_the_same_report(collapsed_report, tmp_path):
    path = collapsed_report.save(tmp_path / "audit.nc")
    again = AuditReport.from_dataset(guidegap.load_dataset(path))
    assert again.verdict == collapsed_report.verdict == "collapsed"
    assert again.finding == collapsed_report.finding
    assert set(again.summary) == set(collapsed_report.summary)
    for name, est in collapsed_report.summary.items():
        np.testing.assert_allclose([*again.summary[name].to_dict().values()], [*est.to_dict().values()], rtol=1e-6, err_msg=name)
    assert again.phases == collapsed_report.phases
    assert str(again) == str(collapsed_report)


def test_teacher_free_report_survives_a_round_trip(tmp_path):
    report = guidegap.audit(tiny_unet(NUM_CLASSES), None, **FAST)
    again = AuditReport.from_dataset(guidegap.load_dataset(report.save(tmp_path / "free.nc")))
    assert again.verdict == "inconclusive"
    assert set(again.summary) == set(report.summary)
    assert again.summary["guidance_response"].value == pytest.approx(report.summary["guidance_response"].value, rel=1e-6)
    assert str(again) == str(report)


@pytest.mark.parametrize("teacher_free", [False, True])
def test_every_report_is_the_one_judge_of_its_dataset(teacher_free, collapsed_report):
    from guidegap.auditing.judge import audit_kind, judge

    report = guidegap.audit(tiny_unet(NUM_CLASSES), None, **FAST) if teacher_free else collapsed_report
    ds = report.dataset
    assert audit_kind(ds) == ("teacher-free" if teacher_free else "pair")
    judgement = judge(ds, report.thresholds, seed=json.loads(ds.attrs["config"])["seed"])
    assert (judgement.finding, judgement.phases) == (report.finding, report.phases)
    assert judgement.summary == report.summary
    assert json.loads(ds.attrs["summary"]) == {k: v.to_dict() for k, v in report.summary.items()}
    assert (ds.attrs["verdict"], ds.attrs["verdict_reason"]) == (report.verdict, report.finding.reason)
    assert ds.guidegap.verdict() == report.verdict  # the accessor asks the same judge
    with pytest.raises(InputError, match="teacher-free audit Dataset"):
        judge(ds.drop_vars("guidance_response") if teacher_free else ds.isel(model=[1]))


def test_from_dataset_refuses_a_plain_recording():
    ds = guidegap.trace(tiny_unet(NUM_CLASSES), tiny_unet(NUM_CLASSES, seed=1), num_samples=4, num_steps=4)
    with pytest.raises(InputError, match="audit Dataset"):
        AuditReport.from_dataset(ds)


@pytest.mark.parametrize("kind", ["collapsed", "non-finite", "teacher-free"])
def test_plot_writes_a_png(kind, collapsed_report, tmp_path):
    if kind == "collapsed":
        report = collapsed_report
    elif kind == "non-finite":
        teacher = tiny_dit(NUM_CLASSES)
        report = guidegap.audit(nan_student(teacher), teacher, num_samples=4, num_steps=4)
    else:
        report = guidegap.audit(collapsed_student(tiny_dit(NUM_CLASSES)), None, num_samples=4, num_steps=4)
    path = tmp_path / "curves.png"
    fig = report.plot(path)
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    assert fig._suptitle.get_text().endswith(report.verdict)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary files left


def test_plot_to_a_bad_path_is_an_input_error(collapsed_report, tmp_path):
    with pytest.raises(GuidegapError, match="does not exist"):
        collapsed_report.plot(tmp_path / "missing" / "x.png")
    with pytest.raises(GuidegapError, match=r"\.png"):
        collapsed_report.plot(tmp_path / "x.notaformat")
    assert list(tmp_path.iterdir()) == []


def test_figure_gets_the_usual_permissions(collapsed_report, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "curves.png"
    collapsed_report.plot(path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    path.chmod(0o640)
    collapsed_report.plot(path)  # overwriting keeps the file's mode, as open() would
    assert path.stat().st_mode & 0o777 == 0o640


def test_the_report_names_the_free_running_divergence_only_when_it_was_recorded():
    teacher, student = _oracle_wrapper(lambda self, x, t, labels: self.teacher(x, t, labels), "exact")
    with_it = guidegap.audit(student, teacher, num_samples=2, num_steps=3, n_boot=20)
    without = guidegap.audit(student, teacher, num_samples=2, num_steps=3, n_boot=20, divergence=False)
    assert "teacher-forced, with free-running divergence" in str(with_it)
    assert "teacher-forced" in str(without) and "free-running divergence" not in str(without)


def test_a_named_rule_set_is_reachable_and_overridable(monkeypatch):
    from guidegap.auditing import verdicts

    design = Thresholds.named("design")
    assert design.min_cos == 0.8 and design.max_rel_branch_error == 0.25 and design.max_rel_guided_error is None
    monkeypatch.setitem(verdicts.RULE_SETS, "lenient", dict(min_cos=-1.0, max_rel_guided_error=0.3))
    lenient = Thresholds.named("lenient", rho_low=0.5)
    assert (lenient.min_cos, lenient.max_rel_guided_error, lenient.rho_low) == (-1.0, 0.3, 0.5)  # the set, then overrides
    assert lenient.max_rel_branch_error == Thresholds().max_rel_branch_error  # what the set leaves alone
    with pytest.raises(InputError, match="expected a rule set from evidence, design, lenient, received 'strict'"):
        Thresholds.named("strict")
    assert Thresholds.named("evidence") == Thresholds()  # the defaults are the evidence-based set, reachable by name
    with pytest.raises(InputError, match="unknown threshold 'bogus'"):
        Thresholds.named("design", bogus=1.0)
