"""Run folders (issue 16 items 2, 7, 9): one run per --out, logs that match the checkpoint, resumes that say what they do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from guidegap.errors import InputError
from guidegap.training.run_folder import (LOCK_NAME, check_resumable, check_resume_folder, hold_run_folder,
                                          nonfinite_parameters, trim_log)

HOLDER = textwrap.dedent("""
    import sys
    from guidegap.training.run_folder import hold_run_folder
    with hold_run_folder(sys.argv[1]):
        print("holding", flush=True)
        sys.stdin.read()
""")


def test_a_run_folder_held_by_a_live_run_is_refused_by_name(tmp_path):
    out = tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "holding"
        with pytest.raises(InputError, match=f"in use by another guidegap run \\(pid {other.pid} on host .*choose another --out"):
            with hold_run_folder(out):
                pass
    finally:
        other.stdin.close()
        other.wait(timeout=60)
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
        check_resumable({"parameters": 3}, 100, 200, tmp_path / "checkpoint.pt")  # was KeyError: 'config'
    good = {"config": {"steps": 100}, "ema_updates": 100}
    with pytest.raises(InputError, match="--steps 50: it is already at step 100"):
        check_resumable(good, 100, 50, tmp_path / "checkpoint.pt")
    check_resumable(good, 100, 100, tmp_path / "checkpoint.pt")


def test_trim_log_keeps_lines_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (10, 20, 30)) + '{"step": 40, "lo')
    trim_log(path, 20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]
    trim_log(path, 0)  # a fresh run
    assert path.read_text() == ""
    trim_log(tmp_path / "absent.jsonl", 5)


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
