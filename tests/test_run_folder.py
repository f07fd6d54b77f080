"""Run folders (issue 16 items 2, 7, 9): one run per --out, logs that match the checkpoint, resumes that say what they do."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch

from guidegap.errors import InputError
from guidegap.training.run_folder import (LOCK_NAME, check_resumable, check_resume_folder, check_steps, divergence_message,
                                          hold_run_folder, nonfinite_parameters, trim_log)

HOLDER = textwrap.dedent("""
    import sys
    from guidegap.training.run_folder import hold_run_folder
    with hold_run_folder(sys.argv[1]):
        print("holding", flush=True)
        sys.stdin.read()
""")


@contextlib.contextmanager
def _held_by_another_process(out) -> Iterator[int]:
    """``out`` held by a live child process (its pid) until the block ends."""
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "holding"
        yield other.pid
    finally:
        other.stdin.close()
        other.wait(timeout=60)


def test_a_run_folder_held_by_a_live_run_is_refused_by_name(tmp_path):
    out = tmp_path / "run"
    with _held_by_another_process(out) as pid:
        with pytest.raises(InputError, match=f"in use by another guidegap run \\(pid {pid} on host .*choose another --out"):
            with hold_run_folder(out):
                pass
    with hold_run_folder(out):  # the holder is gone (or was killed): the folder is free again
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            with hold_run_folder(out):
                pass
    with hold_run_folder(out, enabled=False):  # other ranks of a DDP run do not lock
        pass


def test_resume_needs_a_checkpoint_to_continue(tmp_path):
    with pytest.raises(InputError, match="there is no run folder .*drop --resume"):
        check_resume_folder(tmp_path / "mistyped", "checkpoint.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        check_resume_folder(tmp_path / "empty", "checkpoint.pt")
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "log.jsonl").write_text('{"step": 10}\n')
    with pytest.raises(InputError, match="has no checkpoint.pt"):
        check_resume_folder(tmp_path / "early", "checkpoint.pt")
    (tmp_path / "early" / "checkpoint.pt").write_bytes(b"x")
    check_resume_folder(tmp_path / "early", "checkpoint.pt")


def test_resume_refuses_foreign_checkpoints_and_fewer_steps(tmp_path):
    with pytest.raises(InputError, match="stores no training state"):
        check_resumable({"parameters": 3}, tmp_path / "checkpoint.pt")  # was KeyError: 'config'
    check_resumable({"config": {"steps": 100}, "ema_updates": 100}, tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match="--train-steps 50: it is already at step 100"):
        check_steps(50, 100, tmp_path / "checkpoint.pt")
    check_steps(100, 100, tmp_path / "checkpoint.pt")


def test_trim_log_keeps_lines_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (10, 20, 30)) + '{"step": 40, "lo')
    trim_log(path, 20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]
    trim_log(path, 0)  # a fresh run
    assert path.read_text() == ""
    trim_log(tmp_path / "absent.jsonl", 5)


def test_the_divergence_message_names_the_checkpoint_that_is_kept(tmp_path):
    path = tmp_path / "checkpoint.pt"
    assert "last good checkpoint (step 20)" in divergence_message(float("nan"), 25, 0, 10, path)
    assert "last good checkpoint (step 30)" in divergence_message(float("inf"), 33, 30, 200, path)  # resumed at 30
    assert "no checkpoint was written" in divergence_message(float("nan"), 3, 0, 10, path)


def test_nonfinite_parameters_are_named():
    state = {"a": torch.zeros(3), "b": torch.tensor([1.0, float("nan")]), "c": torch.tensor([float("inf")]),
             "steps": torch.tensor([3])}
    assert nonfinite_parameters(state) == ["b", "c"]


def test_the_lock_file_does_not_count_as_content(tmp_path):
    with hold_run_folder(tmp_path / "run"):
        pass
    assert (tmp_path / "run" / LOCK_NAME).exists()
    with pytest.raises(InputError, match="is empty"):
        check_resume_folder(tmp_path / "run", "checkpoint.pt")


# -- the training loop uses them ------------------------------------------------------------------------------------
def _config(out, **overrides):
    from guidegap.training.config import TrainConfig

    values = dict(out=str(out), tier="oracle", teacher="oracle", objective="dash", train_steps=30, batch_size=8,
                  checkpoint_every=20, log_every=10, progress=False)
    return TrainConfig(**{**values, **overrides})


def _steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_into_a_folder_another_run_holds_is_refused(tmp_path):
    from guidegap.training.loop import train

    out = tmp_path / "run"
    with _held_by_another_process(out) as pid:
        with pytest.raises(InputError, match=f"in use by another guidegap run \\(pid {pid}"):
            train(_config(out))
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of the refused run was written


def test_resume_logs_each_step_once_and_a_fresh_run_starts_a_fresh_log(tmp_path):
    from guidegap.training.loop import train

    out = tmp_path / "run"
    (out).mkdir()
    (out / "log.jsonl").write_text('{"step": 500, "loss": 9.9}\n')  # a stale log of a run killed before its first checkpoint
    train(_config(out))
    assert _steps(out) == [10, 20, 30]
    with (out / "log.jsonl").open("a") as log:  # a run that went on to step 40 and was killed before checkpointing
        log.write('{"step": 40, "loss": 1.0}\n')
    train(_config(out, train_steps=50), resume=True)
    assert _steps(out) == [10, 20, 30, 40, 50]


def test_resume_without_a_checkpoint_says_so(tmp_path, capfd):
    from guidegap.training.loop import train

    result = train(_config(tmp_path / "mistyped", train_steps=10), resume=True)
    assert result.step == 10
    err = capfd.readouterr().err
    assert "--resume: there is no run folder" in err and "starting a new run at step 0" in err


def test_resume_refusals_at_the_training_loop(tmp_path):
    from guidegap.checkpoints import read_checkpoint, save_checkpoint
    from guidegap.training.loop import train

    out = tmp_path / "run"
    train(_config(out, train_steps=20))
    with pytest.raises(InputError, match="--train-steps 10: it is already at step 20"):
        train(_config(out, train_steps=10), resume=True)
    stored = read_checkpoint(out / "checkpoint.pt")
    stored.metadata = {}  # an exported checkpoint: no training state
    save_checkpoint(stored, out / "checkpoint.pt")
    with pytest.raises(InputError, match="stores no training state"):
        train(_config(out, train_steps=30), resume=True)


class _TurnsNaN:
    """The oracle data, NaN from the ``after``-th draw on (a diverging run, without changing resumable settings)."""

    def __init__(self, after: int) -> None:
        from guidegap.training.sources import make_source

        self.inner, self.after, self.draws = make_source("oracle"), after, 0
        self.num_classes, self.sample_shape = self.inner.num_classes, self.inner.sample_shape

    def sample(self, batch_size, generator):
        x0, labels = self.inner.sample(batch_size, generator)
        self.draws += 1
        return (x0 * float("nan") if self.draws > self.after else x0), labels


def test_a_diverged_run_keeps_the_last_good_checkpoint(tmp_path):
    from guidegap.checkpoints import read_checkpoint
    from guidegap.training.loop import train

    out = tmp_path / "run"
    with pytest.raises(InputError, match="the loss became nan at step 25.*last good checkpoint \\(step 20\\)"):
        train(_config(out, train_steps=40, checkpoint_every=10), source=_TurnsNaN(after=25))
    assert read_checkpoint(out / "checkpoint.pt").step == 20  # not the state that produced the NaN
    exploded = tmp_path / "lr"
    with pytest.raises(InputError, match="the loss became .*no checkpoint was written"):
        train(_config(exploded, train_steps=200, checkpoint_every=1000, lr=1e10))
    assert not (exploded / "checkpoint.pt").exists()  # was: weights of magnitude 1e10 saved as the run's checkpoint


class _Killed(BaseException):
    """A kill in the middle of a step, after the last checkpoint (raised from a callback)."""


def _kill_at(step: int):
    def callback(done, student):
        if done == step:
            raise _Killed
    return callback


def test_a_run_with_dropout_resumed_after_a_kill_equals_the_uninterrupted_run(tmp_path):
    """Dropout draws from the global RNGs, seeded per step: the resumed run draws the masks the uninterrupted one did."""
    from guidegap.checkpoints import read_checkpoint
    from guidegap.training.architectures import unet_config
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train
    from guidegap.training.sources import TensorSource

    generator = torch.Generator().manual_seed(0)
    source = TensorSource(torch.randn(32, 1, 8, 8, generator=generator), torch.randint(0, 2, (32,), generator=generator), 2)

    def config(out):
        return TrainConfig(out=str(tmp_path / out), role="student", objective="scratch", tier="cpu", model_class="UNet2DModel",
                           model_config={**unet_config((8, 8), 1, 8, 1, 2, 4, head_dim=8), "dropout": 0.1}, train_steps=4,
                           checkpoint_every=2, audit_every=1, batch_size=4, mixed_precision="no", progress=False,
                           lr_warmup_steps=0)

    train(config("whole"), source=source)
    with pytest.raises(_Killed):
        train(config("killed"), source=source, callbacks=[_kill_at(3)])
    assert read_checkpoint(tmp_path / "killed" / "checkpoint.pt").step == 2
    train(config("killed"), source=source, resume=True)
    whole, resumed = read_checkpoint(tmp_path / "whole" / "checkpoint.pt"), read_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    for key, value in whole.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0)
    for key, value in whole.ema_state_dict.items():
        torch.testing.assert_close(resumed.ema_state_dict[key], value, rtol=0, atol=0)


def test_a_resume_on_another_precision_or_against_a_replaced_teacher_is_refused(tmp_path, monkeypatch):
    import guidegap.training.loop as loop
    from guidegap.checkpoints import read_checkpoint, save_checkpoint
    from guidegap.training.config import TrainConfig

    teachers = tmp_path / "teachers"
    loop.train(TrainConfig(out=str(teachers / "a"), role="teacher", tier="oracle", train_steps=4, batch_size=8, progress=False))
    loop.train(TrainConfig(out=str(teachers / "b"), role="teacher", tier="oracle", train_steps=4, batch_size=8, seed=1,
                           progress=False))
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes((teachers / "a" / "checkpoint.pt").read_bytes())

    def student(steps):
        return TrainConfig(out=str(tmp_path / "student"), tier="oracle", teacher=str(teacher), objective="dash",
                           train_steps=steps, batch_size=8, checkpoint_every=2, mixed_precision="auto", progress=False)

    loop.train(student(2))
    stored = read_checkpoint(tmp_path / "student" / "checkpoint.pt")
    assert stored.metadata["mixed_precision_resolved"] == loop.resolve_mixed_precision("auto", False)
    other = "no" if stored.metadata["mixed_precision_resolved"] == "bf16" else "bf16"
    monkeypatch.setattr(loop, "resolve_mixed_precision", lambda setting, cuda: other)  # 'auto' on another machine
    with pytest.raises(InputError, match=f"trained with mixed precision .* resolves to '{other}'.*--mixed-precision"):
        loop.train(student(4), resume=True)
    monkeypatch.undo()
    teacher.write_bytes((teachers / "b" / "checkpoint.pt").read_bytes())  # the teacher file replaced
    with pytest.raises(InputError, match="its teacher file has changed since the run started"):
        loop.train(student(4), resume=True)
    teacher.write_bytes((teachers / "a" / "checkpoint.pt").read_bytes())
    assert loop.train(student(4), resume=True).step == 4
    old = read_checkpoint(tmp_path / "student" / "checkpoint.pt")
    old.metadata = {k: v for k, v in old.metadata.items() if k not in ("mixed_precision_resolved", "teacher_fingerprint")}
    save_checkpoint(old, tmp_path / "student" / "checkpoint.pt")  # written before either was recorded: resumes
    assert loop.train(student(6), resume=True).step == 6


def test_a_teacher_cache_is_refused_for_batches_from_a_source_of_the_callers(tmp_path):
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train
    from guidegap.training.sources import make_source

    config = TrainConfig(out=str(tmp_path / "run"), tier="oracle", teacher="oracle", objective="dash", train_steps=2,
                         batch_size=8, teacher_cache=str(tmp_path / "cache"), progress=False)
    with pytest.raises(InputError, match="teacher cache is keyed by config.data.*source="):
        train(config, source=make_source("oracle"))


def test_two_runs_racing_to_create_a_teacher_cache_agree_on_one_manifest(tmp_path, monkeypatch):
    """The manifest is created whole and only once: the run that loses the race compares against the winner's."""
    import guidegap.training.teacher_cache as teacher_cache
    from guidegap.atomic import write_bytes_exclusive

    folder = tmp_path / "cache"
    real = write_bytes_exclusive

    def other_run_first(path, data):  # another run's manifest lands between the check and this write
        real(path, json.dumps({"teacher": "sha256:other"}).encode())
        return real(path, data)

    monkeypatch.setattr(teacher_cache, "write_bytes_exclusive", other_run_first)
    with pytest.raises(InputError, match="made for other settings \\(teacher differ\\)"):
        teacher_cache.TeacherCache(folder, {"teacher": "sha256:mine"})
    assert json.loads((folder / "cache.json").read_text()) == {"teacher": "sha256:other"}
