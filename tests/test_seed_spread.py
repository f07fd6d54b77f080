"""The seed spread of the Fashion-MNIST reproduction (analyses/seed_spread.py): which runs are replicates of which,
that a replicate differs from the campaign's run by its seed alone, and the spread and bars it reports."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest
from conftest import analysis_script


@pytest.fixture(scope="module")
def spread():
    with analysis_script("seed_spread") as module:  # importing it neither reads nor writes results
        yield module


def test_each_objective_has_the_campaigns_run_at_seed_0_and_replicates_at_other_seeds(spread):
    campaign, validation = spread.campaign, spread.validation
    by_objective: dict[str, list] = {}
    for entry in spread.SEED_RUNS:
        by_objective.setdefault(entry.objective, []).append(entry)
    for objective, entries in by_objective.items():
        seeds = [e.seed for e in entries]
        assert len(set(seeds)) == len(seeds) >= 2
        (base,) = [e for e in entries if e.seed == campaign.SEED]
        assert base.source == "campaign" and campaign.find(base.name).objective == objective
    replicates = {(name, objective, seed) for name, objective, options, _, seed in validation.EXTRA_STUDENTS
                  if seed != campaign.SEED and not options}
    assert {(e.name, e.objective, e.seed) for e in spread.SEED_RUNS if e.source == "detector validation"} == replicates
    assert all(e.seed != campaign.SEED for e in spread.trained_here())


def test_a_replicate_trained_here_differs_from_the_campaigns_run_by_its_seed_alone(spread):
    campaign, validation = spread.campaign, spread.validation
    for entry in spread.trained_here():
        base = asdict(campaign.config_for(campaign.find(entry.objective)))
        replicate = asdict(validation.extra_student_config(entry.run, {}, entry.seed))
        assert {k for k in base if base[k] != replicate[k]} == {"out", "seed", "teacher_cache"}
        assert replicate["seed"] == entry.seed and replicate["teacher_cache"] is None
        assert entry.run.steps == campaign.BUDGET and entry.evaluation.parent == spread.RESULTS


def test_the_spread_is_a_ratio_for_fd_and_a_range_otherwise(spread):
    columns = ("fd_tag", "fd4", "fd1", "fidelity_w1", "fidelity_w4", "a_tag", "rho", "cos_delta", "probe_rel_guided_error")
    frame = pd.DataFrame([{"objective": "dash", **{c: 1.0 for c in columns}, "fd_tag": 20.0, "fidelity_w4": 0.9},
                          {"objective": "dash", **{c: 1.0 for c in columns}, "fd_tag": 60.0, "fidelity_w4": 0.8},
                          {"objective": "gap", **{c: 2.0 for c in columns}}])
    out = spread.spread(frame).set_index(["objective", "measure"])
    assert out.loc[("dash", "fd_tag"), "max_over_min"] == pytest.approx(3.0)
    assert out.loc[("dash", "fidelity_w4"), "range"] == pytest.approx(0.1)
    assert out.loc[("dash", "fd_tag"), "seeds"] == 2 and out.loc[("gap", "rho"), "seeds"] == 1


def test_the_committed_table_is_remade_from_the_committed_evaluations(spread):
    """Each evaluated run is in the table (dash at all three seeds); the seed-1 ones reproduce the detector validation's samples exactly
    (same checkpoint, sampler and seeds), and the CSV is what ``table`` makes of them."""
    frame = spread.table()
    assert list(frame.run) == [e.name for e in spread.SEED_RUNS if e.evaluation.exists()]
    assert (frame.objective == "dash").sum() == 3
    replicates = frame[frame.source == "detector validation"]
    assert len(replicates) and (replicates.reproduction_gap == 0).all()
    committed = pd.read_csv(spread.TABLE)
    columns = ["run", "fd_tag", "fd4", "fidelity_w4", "rho", "verdict", "verdict_probe", "meets_dash_bars"]
    pd.testing.assert_frame_equal(committed[columns], frame[columns], check_dtype=False)
