"""The Fashion-MNIST campaign's teacher plan (analyses/fashion_mnist.py): it trains on, segment by segment, only while
the stored decision says the teacher missed its bar."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "analyses" / "fashion_mnist.py"


@pytest.fixture(scope="module")
def campaign():
    spec = importlib.util.spec_from_file_location("fashion_mnist_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


MISSED = [{"convention": "ddpm-clamp", "meets_bar": False}]


@pytest.mark.parametrize("decided, steps", [
    ({}, 4000),  # nothing evaluated: the first segment
    ({"candidates": MISSED}, 12000),  # a decision written before decisions named their step: the first segment's
    ({"teacher_steps": 12000, "teacher_meets_bar": False, "candidates": MISSED}, 24000),
    ({"teacher_steps": 12000, "teacher_meets_bar": True, "candidates": [{"meets_bar": True}]}, 12000),
    ({"teacher_steps": 24000, "teacher_meets_bar": False, "candidates": MISSED}, 24000),  # the last: the gate stops there
])
def test_the_teacher_trains_on_only_past_a_segment_end_where_it_missed_its_bar(campaign, monkeypatch, decided, steps):
    monkeypatch.setattr(campaign, "TEACHER_SEGMENTS", (4000, 12000, 24000))
    monkeypatch.setattr(campaign, "decision", lambda: decided)
    assert campaign.teacher_steps() == steps
    assert campaign.find("teacher").steps == steps
    config = campaign.config_for(campaign.find("teacher"))
    assert config.train_steps == config.lr_decay_steps == steps and all(k < steps for k in config.export_steps)


def test_training_time_outlives_the_run_folder(campaign, monkeypatch, tmp_path):
    """A run's training seconds (summed over resumed segments) are recorded beside its results, and read from there
    on a machine whose runs/ no longer has the log."""
    import json

    monkeypatch.setattr(campaign, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(campaign, "RESULTS", tmp_path / "results")
    run = campaign.find("dash")
    log = tmp_path / "runs" / "dash" / "log.jsonl"
    log.parent.mkdir(parents=True)
    rows = [{"step": 10, "seconds": 5.0}, {"step": 20, "seconds": 9.0}, {"step": 30, "seconds": 4.0}]  # resumed at 20
    log.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert campaign.recorded_training(run) == (13.0, 30)
    log.unlink()
    assert campaign.recorded_training(run) == (13.0, 30)
    assert campaign.recorded_training(campaign.find("scratch")) is None


def test_a_run_in_progress_is_packed_and_resumed_on_a_machine_without_runs(campaign, monkeypatch, tmp_path):
    """snapshot packs a training run (not its exports or lock); restore_run unpacks it only where no folder exists."""
    from types import SimpleNamespace

    monkeypatch.setattr(campaign, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(campaign, "SNAPSHOTS", tmp_path / "in_progress")
    monkeypatch.setattr(campaign, "exported", lambda run: run.name != "dash")
    monkeypatch.setattr(campaign, "export_run", lambda run: None)
    monkeypatch.setattr(campaign, "read_checkpoint", lambda path: SimpleNamespace(step=750))
    folder = tmp_path / "runs" / "dash"
    (folder / "guidance.zarr" / "rho").mkdir(parents=True)
    (folder / "exports").mkdir()
    files = {"checkpoint.pt": b"weights", "log.jsonl": b'{"step": 750}\n', "guidance.zarr/rho/0": b"\x00\x01",
             ".guidegap-run.lock": b"1234", "exports/step_0000250.pt": b"ema"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    campaign.snapshot_runs()
    assert sorted(p.name for p in (tmp_path / "in_progress").iterdir()) == ["dash.tar"]

    campaign.restore_run(campaign.find("dash"))  # the folder is there: left as it is
    assert (folder / ".guidegap-run.lock").exists()
    import shutil

    shutil.rmtree(tmp_path / "runs")
    campaign.restore_run(campaign.find("dash"))
    restored = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert restored == {k: v for k, v in files.items() if not k.startswith((".guidegap", "exports"))}


def test_each_diagnostic_run_is_one_recipe_change_away_from_its_student(campaign):
    from dataclasses import asdict

    base = asdict(campaign.config_for(campaign.find("scratch")))
    diagnostic = asdict(campaign.config_for(campaign.find("scratch-tirt")))
    differ = {k for k in base if base[k] != diagnostic[k]}
    assert differ == {"out", "tirt", "objective_options"}
    assert (base["tirt"], diagnostic["tirt"]) == ("uniform", "learned") and diagnostic["objective_options"]["tirt"] is True
    assert campaign.find("scratch-tirt").steps == campaign.BUDGET


def test_pdm_is_gaps_seed_replicate_trained_without_the_shared_cache(campaign):
    from dataclasses import asdict

    gap, pdm = (asdict(campaign.config_for(campaign.find(name))) for name in ("gap", "pdm"))
    assert {k for k in gap if gap[k] != pdm[k]} == {"out", "objective", "seed", "teacher_cache"}
    assert pdm["seed"] != campaign.SEED and pdm["teacher_cache"] is None
    assert gap["seed"] == campaign.SEED and gap["teacher_cache"] is not None


def test_the_compute_report_counts_the_campaigns_evaluations_only(campaign, monkeypatch, tmp_path):
    """The detector validation writes more evaluations beside the campaign's (other steps, own audits); they are its
    compute, not the campaign's."""
    import xarray as xr

    monkeypatch.setattr(campaign, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(campaign, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(campaign, "COMPUTE", tmp_path / "compute.md")
    run = campaign.find("dash")
    folder = tmp_path / "results" / "dash"
    folder.mkdir(parents=True)
    extra = min(set(run.export_steps) - set(run.evaluated_steps))
    names = [f"step_{k:07d}" for k in run.evaluated_steps]
    names += [f"step_{extra:07d}", f"step_{run.steps:07d}_own_audits", f"step_{run.steps:07d}_audit"]
    for name in names:
        xr.Dataset(attrs={"evaluation_seconds": 60.0}).to_netcdf(folder / f"{name}.nc", engine="h5netcdf")
    frame = campaign.compute_report()
    assert sorted(frame.item) == sorted(names[:len(run.evaluated_steps)])
