"""Hostile inputs and crashes: fuzzed files never give a traceback or run code; killed writers leave a whole file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guidegap
from guidegap.checkpoints import read_checkpoint
from guidegap.cli.main import main
from guidegap.oracle import shrunk_student

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def audit_file(tmp_path_factory):
    from guidegap.oracle import GaussianMixture
    from guidegap.recording.schedulers import default_scheduler

    oracle = GaussianMixture.random(seed=0).denoiser(default_scheduler())
    path = tmp_path_factory.mktemp("audit") / "audit.nc"
    guidegap.audit(shrunk_student(oracle, 0.5), oracle, num_samples=4, num_steps=4, n_boot=50).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    out = tmp_path_factory.mktemp("ckpt") / "run"
    return train(TrainConfig(out=str(out), tier="oracle", teacher="oracle", objective="dash", train_steps=2, batch_size=8,
                             checkpoint_every=2, progress=False)).checkpoint


def _mutations():
    """Truncate, overwrite a span with random bytes, or insert bytes: (kind, position fraction, payload)."""
    return st.tuples(st.sampled_from(["truncate", "overwrite", "insert"]), st.floats(0, 1), st.binary(min_size=1, max_size=64))


def _mutate(data: bytes, mutation) -> bytes:
    kind, where, payload = mutation
    at = int(where * len(data))
    if kind == "truncate":
        return data[:at]
    if kind == "overwrite":
        return data[:at] + payload + data[at + len(payload):]
    return data[:at] + payload + data[at:]


def _cli_bad_input(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@FUZZ
@given(mutation=_mutations())
def test_fuzzed_checkpoints_give_exit_2_and_one_line(tmp_path_factory, checkpoint_file, mutation, capsys):
    data = _mutate(checkpoint_file.read_bytes(), mutation)
    path = tmp_path_factory.mktemp("fuzz") / "student.pt"
    path.write_bytes(data)
    code = main(["audit", str(path), "--teacher", "oracle", "--num-samples", "2", "--num-steps", "2", "--json"])
    captured = capsys.readouterr()
    if code != 2:  # a mutation that keeps the file loadable (e.g. inside unused padding) must audit normally
        assert code in (0, 1) and captured.out.startswith("{"), captured.err
    else:
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


@FUZZ
@given(mutation=_mutations())
def test_fuzzed_audit_files_give_exit_2_and_one_line(tmp_path_factory, audit_file, mutation, capsys):
    path = tmp_path_factory.mktemp("fuzz") / "audit.nc"
    path.write_bytes(_mutate(audit_file.read_bytes(), mutation))
    code = main(["plot", str(path), "--figure", str(path.with_suffix(".png"))])
    captured = capsys.readouterr()
    assert code in (0, 2), captured.err
    if code == 2:
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


@FUZZ
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes_never_execute_or_traceback(tmp_path_factory, payload, capsys):
    path = tmp_path_factory.mktemp("bytes") / "model.pt"
    path.write_bytes(payload)
    _cli_bad_input(["audit", str(path), "--num-samples", "2", "--num-steps", "2"], capsys)


def test_pickles_that_would_run_code_are_refused_in_every_container(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name, obj in {"bare": Payload(), "in_state_dict": {"w": torch.zeros(1), "x": Payload()},
                      "in_checkpoint": {"format": "guidegap-checkpoint", "format_version": 1, "state_dict": Payload()}}.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        err = _cli_bad_input(["audit", str(path), "--factory", "os:getcwd"], capsys)
        assert "--trust-pickle" in err
    assert not marker.exists()


WRITER = textwrap.dedent("""
    import sys, numpy as np, guidegap
    from guidegap.checkpoints.format import Checkpoint, save_checkpoint
    import torch
    kind, path, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "dataset":
        ds = guidegap.load_dataset(path)
    i = 0
    while True:
        i += 1
        if kind == "dataset":
            ds.attrs["history"] = f"write {i}"
            ds["gap_norm"] = ds["gap_norm"] * 0 + i
            guidegap.save_dataset(ds, path)
        else:
            big = {"w": torch.full((2_000_000,), float(i))}
            save_checkpoint(Checkpoint("MLPDenoiser", {}, big, step=i), path)
        open(ready, "w").write(str(i))
""")


@pytest.mark.parametrize("kind", ["dataset", "checkpoint"])
def test_sigkill_while_writing_leaves_the_old_or_the_new_file(tmp_path, audit_file, kind):
    path = tmp_path / ("audit.nc" if kind == "dataset" else "checkpoint.pt")
    if kind == "dataset":
        path.write_bytes(audit_file.read_bytes())
    ready = tmp_path / "ready"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for delay in (0.3, 0.55, 0.8, 1.1):
        ready.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, str(script), kind, str(path), str(ready)])
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(delay)  # now somewhere inside a later write
        process.send_signal(signal.SIGKILL)
        process.wait()
        if kind == "dataset":
            ds = guidegap.load_dataset(path)
            written = int(ds.attrs["history"].split()[-1])
            assert float(ds.gap_norm.min()) == float(ds.gap_norm.max()) == written
        else:
            stored = read_checkpoint(path)
            assert torch.equal(stored.state_dict["w"], torch.full((2_000_000,), float(stored.step)))
        # What a kill can leave behind is the killed write's temporary file, never a damaged target.
        assert all(p.name.startswith(f".{path.name}.") for p in tmp_path.iterdir() if p.name.endswith(".tmp"))


def test_nan_mid_trajectory_is_a_verdict_with_the_steps(oracle):
    class Poisoned(torch.nn.Module):
        num_classes, sample_shape = 4, (1, 4, 4)

        def forward(self, x, t, y):
            out = oracle(x, t, y)
            return torch.where(t.view(-1, 1, 1, 1) < 300, torch.full_like(out, float("inf")), out)

    report = guidegap.audit(Poisoned(), oracle, num_samples=4, num_steps=10, n_boot=50)
    assert report.verdict == "non-finite"
    assert report.nonfinite_timesteps() == [200.0, 100.0, 0.0]
    assert "first at timestep 200" in " ".join(str(report).split())
    assert isinstance(report.dataset, xr.Dataset) and int(report.dataset.nonfinite.sel(model="teacher").sum()) == 0
