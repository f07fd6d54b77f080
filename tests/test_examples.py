"""The shipped Fashion-MNIST example: real trained models, audited the way the README's quickstart runs them."""

from __future__ import annotations

import json

import pytest

from guidegap.cli.main import main
from guidegap.examples import EXAMPLE_AUDIT, example_pair, example_path


@pytest.fixture(scope="module")
def example_reports():
    """Both shipped students audited with the example settings (the teacher's passes dominate the cost)."""
    import guidegap

    out = {}
    for name in ("cond-only", "dash"):
        student, teacher = example_pair(name)
        out[name] = guidegap.audit(str(student), str(teacher), **EXAMPLE_AUDIT)
    return out


def test_the_cond_only_example_is_flagged(example_reports):
    """Its unconditional branch was never supervised: the audit must say guidance is broken."""
    report = example_reports["cond-only"]
    assert report.verdict != "healthy", str(report)
    # measured at 32 x 25: uncond 0.31 vs cond 0.17 of the teacher's branch RMS, rho 5.8, gap cosine 0.08
    assert report.summary["rel_uncond_error"].value > 1.3 * report.summary["rel_cond_error"].value
    assert report.summary["rho"].value > 1.25 and report.summary["cos_delta"].value < 0.5


def test_example_verdicts_match_the_reproduction_table(example_reports):
    """The shipped files are the table's rows (the same bytes): their full audit verdicts are the ones in the CSV."""
    import csv
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    rows = {row["run"]: row for row in csv.DictReader((repo / "analyses" / "results" / "fashion_mnist.csv").open())}
    for name, report in example_reports.items():
        assert (repo / rows[name]["checkpoint"]).read_bytes() == example_path(name).read_bytes(), name
        assert report.verdict == rows[name]["verdict"], (name, str(report))


def test_cli_example_runs_the_cond_only_student_by_default(capsys):
    code = main(["audit", "--example", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["verdict"] != "healthy"
    assert report["student"].endswith("cond-only.pt") and report["teacher"].endswith("teacher.pt")


def test_shipped_checkpoints_are_small_float16_data():
    from guidegap.checkpoints import read_checkpoint

    total = 0
    for name in ("teacher", "cond-only", "dash"):
        path = example_path(name)
        total += path.stat().st_size
        checkpoint = read_checkpoint(path)
        assert checkpoint.optimizer is None and checkpoint.ema_state_dict is None
        assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float16" for v in checkpoint.state_dict.values())
    assert total < 10e6
