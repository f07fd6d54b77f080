"""The trainer: oracle-tier verdicts per objective, bitwise resume after SIGKILL, DDP on CPU, teacher runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import guidegap
from guidegap.checkpoints import load_model, read_checkpoint
from guidegap.auditing.verdicts import VERDICTS, judge_pair
from guidegap.errors import GuidegapError
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train

from conftest import DESIGN

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _oracle_run(tmp_path: Path, objective: str, steps: int = 800, **overrides) -> Path:
    config = TrainConfig(out=str(tmp_path / objective), tier="oracle", teacher="oracle", objective=objective, train_steps=steps,
                         checkpoint_every=steps, log_every=100, progress=False, **overrides)
    return train(config).checkpoint


@pytest.fixture(scope="module")
def oracle_students(tmp_path_factory):
    """dash, cond-only and composite distilled from the exact oracle teacher (same data, steps, seed), each audited
    along trajectories and, under ``"<objective>/probe"``, by the data probe on the oracle's held-out samples."""
    root = tmp_path_factory.mktemp("oracle")
    reports = {}
    for objective in ("dash", "cond-only", "composite"):
        checkpoint = _oracle_run(root, objective)
        reports[objective] = guidegap.audit(str(checkpoint), "oracle", num_samples=64, num_steps=25)
        reports[f"{objective}/probe"] = guidegap.audit(str(checkpoint), "oracle", data="oracle")
    return reports


def test_dash_is_healthy_on_the_oracle_tier(oracle_students):
    for key in ("dash", "dash/probe"):
        report = oracle_students[key]
        assert report.verdict == "healthy", str(report)
        assert report.summary["rho"].value >= 0.9


def test_cond_only_leaves_the_uncond_branch_unsupervised_and_is_not_healthy(oracle_students):
    """At 800 steps the oracle cond-only student does not guide like its teacher (oracle outcome: FD at w = 4 2.3
    against DASH's 0.23). The data probe calls it ``misguided``; along trajectories its guided error (0.28) stays under
    the trajectory bar, a miss of the default rules that docs/design.md §6 records, while the ``design`` rules call
    it ``miscalibrated`` from its gap (rho ~2)."""
    report = oracle_students["cond-only"]
    assert oracle_students["cond-only/probe"].verdict == "misguided", str(oracle_students["cond-only/probe"])
    assert judge_pair(report.summary, DESIGN).verdict == "miscalibrated"
    summary, dash = report.summary, oracle_students["dash"].summary
    assert summary["rel_cond_error"].value < 2 * dash["rel_cond_error"].value  # the supervised branch is fine
    assert summary["rel_uncond_error"].value > 5 * dash["rel_uncond_error"].value
    assert summary["rel_guided_error"].value > 4 * dash["rel_guided_error"].value


def test_composite_errors_lie_in_the_null_direction_of_its_loss(oracle_students):
    """Composite pins only e_u + w (e_c - e_u) = 0, i.e. e_u = w / (w - 1) e_c: its branch errors follow
    that direction and are far larger than DASH's. On the oracle tier they stay small enough that the
    verdict rules call it healthy (measured, not asserted: see the issue note), so only the mechanism is tested."""
    summary, dash = oracle_students["composite"].summary, oracle_students["dash"].summary
    ratio = summary["uncond_error"].value / summary["cond_error"].value
    assert ratio == pytest.approx(4 / 3, rel=0.15)
    assert summary["rel_cond_error"].value > 3 * dash["rel_cond_error"].value
    assert summary["rel_uncond_error"].value > 3 * dash["rel_uncond_error"].value


def _tensors(checkpoint) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in checkpoint.state_dict.items()}
    out.update({f"ema.{k}": v for k, v in checkpoint.ema_state_dict.items()})
    out["tirt"] = checkpoint.tirt_lambda
    for index, state in checkpoint.optimizer["state"].items():
        out.update({f"opt.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
    return out


def test_resume_after_sigkills_at_random_points_is_bitwise_identical(tmp_path):
    """Killed (SIGKILL) twice at seeded-random points, mid-step or mid-write alike, then resumed to the end: the
    weights, EMA, TIRT and optimizer state equal an uninterrupted run's bit for bit."""
    steps = 300
    common = ["--tier", "oracle", "--train-steps", str(steps), "--batch-size", "64", "--checkpoint-every", "20", "--no-progress"]
    reference = TrainConfig(out=str(tmp_path / "reference"), role="teacher", tier="oracle", train_steps=steps, batch_size=64,
                            checkpoint_every=steps, progress=False)
    train(reference)
    killed = tmp_path / "killed"
    checkpoint = killed / "checkpoint.pt"
    rng = random.Random(7)
    interrupted = []
    for threshold in sorted(rng.sample(range(40, 240), 2)):
        resume = ["--resume"] if checkpoint.exists() else []
        process = subprocess.Popen([sys.executable, "-m", "guidegap", "train-teacher", "--out", str(killed), *common, *resume],
                                   env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            if checkpoint.exists() and read_checkpoint(checkpoint).step >= threshold:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.2))  # land anywhere: inside a step or inside the next checkpoint's write
        process.send_signal(signal.SIGKILL)
        process.wait()
        interrupted.append(read_checkpoint(checkpoint).step)
    assert interrupted[0] >= 40 and interrupted[-1] < steps, f"the run must be killed mid-way, was at {interrupted}"
    done = subprocess.run([sys.executable, "-m", "guidegap", "train-teacher", "--out", str(killed), *common, "--resume"],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed, uninterrupted = read_checkpoint(checkpoint), read_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    assert resumed.step == uninterrupted.step == steps
    a, b = _tensors(resumed), _tensors(uninterrupted)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert not torch.equal(resumed.tirt_lambda, torch.zeros_like(resumed.tirt_lambda)), "TIRT is learned with the teacher"
    assert "resumed from" in (killed / "train.log").read_text()


def test_two_process_ddp_keeps_parameters_identical(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path / "ddp")],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reports = sorted(tmp_path.glob("rank*.txt"))
    assert [r.name for r in reports] == ["rank0.txt", "rank1.txt"], done.stdout[-2000:] + done.stderr[-2000:]
    lines = [r.read_text().split() for r in reports]
    assert [line[:2] for line in lines] == [["0", "2"], ["1", "2"]]
    assert lines[0][2] == lines[1][2], "parameters differ across ranks"
    assert lines[0][3] != lines[1][3], "both ranks drew the same batch"
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()


def test_teacher_training_on_fashion_mnist_writes_an_auditable_checkpoint(tmp_path):
    tiny = {"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16], "layers_per_block": 1,
            "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
            "norm_num_groups": 4, "num_class_embeds": 11}
    config = TrainConfig(out=str(tmp_path / "teacher"), role="teacher", tier="cpu", model_class="UNet2DModel",
                         model_config=tiny, train_steps=3, batch_size=8, checkpoint_every=2, log_every=1, progress=False)
    result = train(config)
    stored = read_checkpoint(result.checkpoint)
    assert stored.step == 3 and stored.metadata["role"] == "teacher"
    assert stored.scheduler_config["_class_name"] == "DDPMScheduler" and stored.scheduler_config["num_train_timesteps"] == 1000
    assert stored.tirt_lambda.shape == (1000,) and stored.tirt_lambda.abs().sum() > 0
    loaded = load_model(result.checkpoint)
    assert loaded.kind == "guidegap-checkpoint" and type(loaded.model).__name__ == "UNet2DModel"
    logs = [json.loads(line) for line in (tmp_path / "teacher" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [1, 2, 3] and all("eps" in entry for entry in logs)
    report = guidegap.audit(str(result.checkpoint), num_samples=4, num_steps=3)
    assert report.verdict in ("inconclusive", "collapsed")


def test_light_audit_hook_logs_verdicts_with_the_step(tmp_path):
    from guidegap.training.callbacks import LightAudit

    config = TrainConfig(out=str(tmp_path / "audited"), tier="oracle", teacher="oracle", objective="dash", train_steps=20,
                         batch_size=64, audit_every=10, checkpoint_every=20, log_every=5, progress=False)
    train(config, callbacks=[LightAudit("oracle", num_samples=8, sampling_steps=5)])
    audits = [json.loads(line) for line in (tmp_path / "audited" / "log.jsonl").read_text().splitlines() if "audit_verdict" in line]
    assert [entry["step"] for entry in audits] == [10, 20]
    assert all(entry["audit_verdict"] in VERDICTS for entry in audits)
    assert all(0 <= entry["audit_rho"] < 100 and -1 <= entry["audit_cos"] <= 1 for entry in audits)


def test_run_log_states_parameter_counts_and_compression(tmp_path):
    _oracle_run(tmp_path, "cond-only", steps=2)
    text = (tmp_path / "cond-only" / "train.log").read_text()
    assert "283,396 parameters" in text and "objective cond-only" in text


def test_bad_runs_fail_clearly(tmp_path):
    _oracle_run(tmp_path, "dash", steps=2)
    with pytest.raises(GuidegapError, match="--resume"):
        _oracle_run(tmp_path, "dash", steps=2)
    with pytest.raises(GuidegapError, match=r"differ from the stored run \(lr stored .*, given 0.5\)"):
        train(TrainConfig(out=str(tmp_path / "dash"), tier="oracle", teacher="oracle", objective="dash", train_steps=4,
                          checkpoint_every=4, progress=False, lr=0.5), resume=True)
    with pytest.raises(GuidegapError, match="teacher"):
        TrainConfig(out=str(tmp_path / "x"), objective="composite")
    with pytest.raises(GuidegapError, match="expected an objective name"):
        _oracle_run(tmp_path, "dahs", steps=2)


@pytest.mark.parametrize("tier", ["cpu", "paper"])
def test_tier_architectures_build_run_and_hit_their_compression(tier):
    from guidegap.training.architectures import build, count_parameters, model_spec

    teacher, student = (build(*model_spec(tier, role, 10)) for role in ("teacher", "student"))
    ratio = count_parameters(teacher) / count_parameters(student)
    assert 5.0 <= ratio <= 7.0, ratio
    size = teacher.config.sample_size
    x = torch.zeros(1, teacher.config.in_channels, size, size)
    with torch.no_grad():
        assert student(x, torch.tensor([10]), class_labels=torch.tensor([10])).sample.shape == x.shape
    if tier == "cpu":
        assert count_parameters(teacher) == 3_458_497 and count_parameters(student) == 568_113
