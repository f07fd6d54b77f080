"""The detector validation's statistics (analyses/detector_validation.py, issue 17) on populations of known answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import ANALYSES, analysis_script


@pytest.fixture(scope="module")
def validation():
    with analysis_script("detector_validation") as module:  # importing it neither reads nor writes results
        yield module


def test_roc_auc_is_the_probability_that_a_bad_member_scores_higher(validation):
    bad = np.array([True, True, False, False])
    assert validation.roc_auc(np.array([3.0, 4.0, 1.0, 2.0]), bad) == 1.0
    assert validation.roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), bad) == 0.0
    assert validation.roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), bad) == 0.5  # ties count half
    assert validation.roc_auc(np.array([2.0, 0.0, 1.0, 3.0]), bad) == 0.25  # 2 > 1 only, of four pairs
    assert np.isnan(validation.roc_auc(np.array([1.0, 2.0]), np.array([True, True])))  # one class only


def test_best_threshold_flags_above_it_with_the_best_balanced_accuracy(validation):
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    bad = np.array([False, False, False, True, True, True])
    threshold, balanced = validation.best_threshold(score, bad)
    assert threshold == pytest.approx(0.5) and balanced == 1.0  # halfway between the last good and the first bad
    # one good member scoring high: the best split keeps it wrong rather than two bad ones
    score = np.array([0.1, 0.2, 0.95, 0.7, 0.8, 0.9])
    threshold, balanced = validation.best_threshold(score, bad)
    assert threshold == pytest.approx(0.45) and balanced == pytest.approx(0.5 * (1 + 2 / 3))


def test_the_pair_rule_is_fitted_on_the_training_part_only(validation):
    # statistic a separates the training part; b separates only the held-out part, so the rule must not use b alone
    frame = pd.DataFrame({"a": [0.1, 0.2, 0.8, 0.9, 0.5, 0.5], "b": [0.9, 0.8, 0.2, 0.1, 0.1, 0.9]})
    bad = np.array([False, False, True, True, False, True])
    train = np.array([True, True, True, True, False, False])
    rule = validation.best_pair_rule(frame, ["a", "b"], bad, train)
    assert rule["rule"] == "a > 0.5" and rule["balanced_accuracy_train"] == 1.0  # a alone: no pair does better
    assert rule["flagged"][:4].tolist() == [False, False, True, True]


def test_a_pair_is_chosen_when_each_statistic_sees_only_some_failures(validation):
    # a flags the first failure, b the second; neither alone separates the training part
    frame = pd.DataFrame({"a": [0.1, 0.1, 0.9, 0.1], "b": [0.1, 0.1, 0.1, 0.9]})
    bad = np.array([False, False, True, True])
    rule = validation.best_pair_rule(frame, ["a", "b"], bad, np.ones(4, bool))
    assert rule["rule"] == "a > 0.5 or b > 0.5" and rule["balanced_accuracy_train"] == 1.0


def _outcomes(a1: float, a4: float, fd1: float, fd4: float) -> xr.Dataset:
    return xr.Dataset({"fd_accuracy": ("guidance", [a1, a4]), "fd": ("guidance", [fd1, fd4])}, coords={"guidance": ["1", "4"]})


@pytest.mark.parametrize("member, expected", [
    ((0.55, 0.92, 12.0, 15.0), dict(faithful=True, guided=True, not_degraded=True, guides_like_teacher=True)),
    ((0.55, 0.80, 12.0, 15.0), dict(faithful=False, guided=True, guides_like_teacher=False)),  # a4 0.15 below
    ((0.80, 0.90, 12.0, 15.0), dict(faithful=True, guided=False, guides_like_teacher=False)),  # gain 0.10 < 0.5 x 0.40
    ((0.55, 0.95, 12.0, 31.0), dict(faithful=True, guided=True, not_degraded=False, guides_like_teacher=False)),  # FD > 2x
])
def test_the_outcome_follows_the_written_definition(validation, member, expected):
    teacher = _outcomes(0.55, 0.95, 10.0, 15.0)  # gain 0.40, FD at w = 4 15
    row = validation.outcome_row(_outcomes(*member), teacher)
    assert {k: row[k] for k in expected} == expected
    assert row["relative_gain"] == pytest.approx((member[1] - member[0]) / 0.40)


def test_trajectory_statistics_per_phase(validation):
    timesteps = np.array([900, 700, 500, 300, 100])
    teacher_gap, student_gap = np.array([1.0, 1.0, 2.0, 2.0, 2.0]), np.array([2.0, 2.0, 2.0, 2.0, 1.0])
    ds = xr.Dataset(
        {"audit_gap_norm": (("model", "step"), np.stack([teacher_gap, student_gap])),
         "audit_gap_cos": ("step", [1.0, 1.0, 0.5, 0.5, 0.0]),
         "audit_gap_mse": ("step", [1.0, 1.0, 1.0, 1.0, 4.0]),
         "audit_cond_norm": (("model", "step"), np.full((2, 5), 4.0)),
         "audit_uncond_norm": (("model", "step"), np.full((2, 5), 2.0)),
         "audit_cond_error": ("step", np.full(5, 1.0)), "audit_uncond_error": ("step", np.full(5, 1.0)),
         "audit_guided_error": ("step", [2.0, 2.0, 1.0, 1.0, 1.0])},
        coords={"model": ["teacher", "student"], "timestep": ("step", timesteps)})
    out = validation.trajectory_statistics(ds, "tf")
    assert out["tf_early_abs_log_rho"] == pytest.approx(np.log(2.0))  # t >= 667: 2 vs 1
    assert out["tf_middle_abs_log_rho"] == 0.0  # t = 500: 2 vs 2
    assert out["tf_late_abs_log_rho"] == pytest.approx(np.log(2.0 / 1.5))  # t < 333: 1.5 vs 2
    assert out["tf_all_one_minus_cos"] == pytest.approx(1 - 0.6)
    assert out["tf_all_one_minus_weighted_cos"] == pytest.approx(1 - (1 + 1 + 1 + 1 + 0) / 8)
    assert out["tf_late_rel_gap_error"] == pytest.approx(np.sqrt(2.5) / 2.0)
    assert out["tf_all_rel_cond_error"] == pytest.approx(0.25) and out["tf_all_rel_uncond_error"] == pytest.approx(0.5)
    assert out["tf_early_rel_guided_error"] == pytest.approx(0.5) and out["tf_late_rel_guided_error"] == pytest.approx(0.25)


def test_the_probe_per_phase_reproduces_the_overall_probe_and_splits_by_timestep(validation, oracle, scheduler):
    import torch

    import guidegap
    from guidegap.oracle import shrunk_student

    data = oracle.mixture.sample(96, generator=torch.Generator().manual_seed(0))
    probe = guidegap.probe(oracle, shrunk_student(oracle, 0.5), data, scheduler=scheduler, seed=0)
    out = validation.trajectory_statistics(validation.probe_as_trajectory(probe), "probe")
    summary = guidegap.summarize(probe)
    assert out["probe_all_abs_log_rho"] == pytest.approx(abs(np.log(summary["rho"].value)))
    assert out["probe_all_one_minus_cos"] == pytest.approx(1 - summary["cos_delta"].value)
    assert out["probe_all_rel_cond_error"] == pytest.approx(summary["rel_cond_error"].value)
    t = probe.timestep.values
    early = (t >= 667) & (t < 1000)
    student, teacher = probe.gap_norm.sel(model="student").values, probe.gap_norm.sel(model="teacher").values
    assert out["probe_early_abs_log_rho"] == pytest.approx(abs(np.log(student[early].mean() / teacher[early].mean())))


def test_the_headroom_sensitivity_is_reported_beside_the_outcome_and_never_replaces_it(validation):
    teacher = _outcomes(0.55, 0.95, 10.0, 15.0)  # gain 0.40 of a headroom 0.45
    row = validation.outcome_row(_outcomes(0.80, 0.99, 8.0, 12.0), teacher)  # gain 0.19 < 0.20, but 95% of its headroom
    assert row["guided"] is False and row["guides_like_teacher"] is False
    assert row["guided_of_headroom"] is True and row["guides_like_teacher_of_headroom"] is True
    flat = validation.outcome_row(_outcomes(0.80, 0.82, 8.0, 12.0), teacher)  # 10% of its headroom
    assert flat["guided_of_headroom"] is False


def test_balanced_accuracy_does_not_reward_flagging_everything(validation):
    bad = np.array([True, True, True, False])
    assert validation.balanced_accuracy(bad, np.ones(4, bool)) == 0.5
    assert validation.balanced_accuracy(bad, bad) == 1.0
    assert np.isnan(validation.balanced_accuracy(np.ones(3, bool), np.ones(3, bool)))


def _summaries(**columns: list[float]) -> pd.DataFrame:
    """Members' teacher-forced summaries: healthy by the design rules unless a column says otherwise."""
    n = len(next(iter(columns.values())))
    base = dict(tf_rho=[1.0] * n, tf_cos_delta=[0.9] * n, tf_rel_cond_error=[0.1] * n, tf_rel_uncond_error=[0.1] * n,
                tf_nonfinite=[0.0] * n, tf_all_rel_guided_error=[0.1] * n)
    return pd.DataFrame(base | columns)


def test_the_library_verdict_is_guidegaps_own_judge_on_each_members_summary(validation):
    frame = _summaries(tf_cos_delta=[0.9, 0.3, 0.3, 0.9], tf_rho=[1.0, 1.0, 1.0, 0.1], tf_all_rel_guided_error=[0.1, 0.2, 0.6, 0.1])
    today = validation.library_flags(frame, "tf", validation.rule_set_thresholds(None))
    assert today.tolist() == [False, True, True, True]  # the cosine rule flags the second and third, collapse the last
    relaxed = validation.rule_set_thresholds(
        validation.RULE_SETS["collapse + guided error (rho band, cosine and branch rules off)"], max_rel_guided_error=0.4)
    assert validation.library_flags(frame, "tf", relaxed).tolist() == [False, False, True, True]  # collapse is kept


def test_a_rule_sets_guided_error_bar_is_fitted_on_the_training_part_only(validation):
    frame = _summaries(tf_cos_delta=[0.3] * 6, tf_all_rel_guided_error=[0.1, 0.2, 0.5, 0.6, 0.15, 0.7])
    bad = np.array([False, False, True, True, True, False])  # the held-out two are the other way round
    train = np.array([True, True, True, True, False, False])
    overrides = validation.RULE_SETS["collapse + guided error (rho band, cosine and branch rules off)"]
    thresholds, balanced = validation.fit_rule_set(frame, "tf", overrides, bad, train)
    assert thresholds.max_rel_guided_error == pytest.approx(0.35) and balanced == 1.0  # halfway between 0.2 and 0.5
    assert thresholds.min_cos == -1.0
    today, balanced_today = validation.fit_rule_set(frame, "tf", None, bad, train)
    assert today == validation.Thresholds.named("design") and balanced_today == 0.5  # the design cosine rule flags all six


def test_the_bench_judges_its_references_as_the_table_did(validation):
    """bench_detector re-judges each committed reference audit with guidegap itself: under the default thresholds
    that gives the reproduction table's verdicts, and the relative guided error the validation computed."""
    with analysis_script("bench_detector") as bench:
        table = pd.read_csv(bench.TABLE)
        references = bench.reference_table(False, validation.Thresholds())
    assert references.verdict.tolist() == table.verdict.tolist()
    dash = references.set_index("run").loc["dash"]
    audit = xr.open_dataset(ANALYSES / "results" / "fashion_mnist" / "dash" / "step_0004000.nc", engine="h5netcdf")
    assert dash.rel_guided_error == pytest.approx(validation.trajectory_statistics(audit, "tf")["tf_all_rel_guided_error"], rel=1e-6)


def test_extra_students_are_members_at_their_steps_and_train_without_the_shared_cache(validation):
    extras = {m.name: m for m in validation.extra_members()}
    assert {"dash-seed1@250", "dash-seed1@4000", "dash-no-tirt-seed1@1000", "composite-w2", "peer"} <= set(extras)
    assert not any(name.endswith("@500") for name in extras)  # the campaign's skipped export step
    assert extras["dash-seed1@2000"].family == "dash" and extras["dash-no-tirt-seed1@2000"].family == "dash-no-tirt"
    assert extras["composite-w2"].family == "composite-w2" and "dash-no-tirt" in validation.HELD_OUT
    runs = dict((run.name, run) for run, _ in validation.extra_runs())
    replicate = validation.extra_student_config(runs["dash-seed1"], {}, 1)
    assert replicate.seed == 1 and replicate.teacher_cache is None and replicate.objective == "dash"
    scaled = validation.extra_student_config(runs["composite-w2"], {"guidance_scale": 2.0}, 0)
    assert scaled.seed == 0 and scaled.teacher_cache is None and scaled.objective_options == {"guidance_scale": 2.0}


def test_the_probe_modes_bar_is_the_probe_bar_and_judges_probe_summaries_only(validation):
    tf = _summaries(tf_cos_delta=[0.3] * 4, tf_all_rel_guided_error=[0.5] * 4)
    probe = tf.rename(columns=lambda c: f"probe_{c[3:]}").assign(probe_all_rel_guided_error=[0.1, 0.15, 0.25, 0.3])
    frame = pd.concat([tf, probe], axis=1)
    bad, train = np.array([False, False, True, True]), np.ones(4, bool)
    overrides = validation.RULE_SETS["collapse + guided error (rho band, cosine and branch rules off)"]
    thresholds, balanced = validation.fit_rule_set(frame, "probe", overrides, bad, train)
    assert thresholds.max_rel_guided_error_probe == pytest.approx(0.2) and balanced == 1.0
    assert thresholds.max_rel_guided_error is None  # the teacher-forced bar is the tf mode's to fit
    assert validation.library_flags(frame, "probe", thresholds).tolist() == [False, False, True, True]
    assert validation.library_flags(frame, "tf", thresholds).tolist() == [False] * 4  # no tf bar: the rule is off there


def test_the_decision_follows_design_section_6_as_written(validation, tmp_path, monkeypatch):
    """(1) each mode's pick on the training part, the probe's taken; (2) the >= 90% held-out gate on the probe's
    verdict; (3) the probe by default only where it beats the trajectories held out."""
    monkeypatch.setattr(validation, "DECISION_JSON", tmp_path / "decision.json")
    tf = _summaries(tf_cos_delta=[0.3] * 8, tf_all_rel_guided_error=[0.1, 0.2, 0.5, 0.6, 0.1, 0.6, 0.2, 0.3])
    probe = tf.rename(columns=lambda c: f"probe_{c[3:]}").assign(probe_all_rel_guided_error=[0.1, 0.1, 0.3, 0.3] * 2)
    frame = pd.concat([tf, probe], axis=1)
    bad = np.array([False, False, True, True] * 2)
    test = np.array([False] * 4 + [True] * 4)
    fitted, picks = {}, {}
    for mode in validation.MODES:
        for name, overrides in validation.RULE_SETS.items():
            fitted[(mode, name)], balanced = validation.fit_rule_set(frame, mode, overrides, bad, ~test)
            if balanced > picks.get(mode, ("", None, -1.0))[2]:
                picks[mode] = (name, fitted[(mode, name)], balanced)
    decision, lines = validation.decide(frame, fitted, picks, bad, test)
    chosen = picks["probe"][0]
    assert decision["chosen"] == chosen != "design rules"
    assert decision["thresholds"]["max_rel_guided_error"] == pytest.approx(fitted[("tf", chosen)].max_rel_guided_error)
    assert decision["thresholds"]["max_rel_guided_error_probe"] == pytest.approx(0.2)
    assert decision["held_out"]["probe"]["accuracy"] == 1.0 and decision["held_out"]["tf"]["accuracy"] == 0.25
    assert decision["becomes_default"] and decision["probe_by_default"]
    assert json.loads((tmp_path / "decision.json").read_text()) == decision and any("(2)" in line for line in lines)
    wrong = frame.assign(probe_all_rel_guided_error=[0.1, 0.1, 0.3, 0.3, 0.3, 0.1, 0.1, 0.3])  # two held out misjudged
    decision, _ = validation.decide(wrong, fitted, picks, bad, test)
    assert decision["held_out"]["probe"]["accuracy"] == 0.5 and not decision["becomes_default"]
    assert not decision["probe_by_default"]
