"""The ``guidegap`` command line (docs/design.md §3): verdict exit codes, JSON, files, and bad input.

Exit 0 when the verdict passes ``--fail-on`` (default: anything but healthy fails), 1 when it fails, 2 for
bad input or usage — with exactly one line on stderr and never a traceback.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import guidegap
from guidegap.auditing.verdicts import Thresholds
from guidegap.cli.main import main

from conftest import tiny_dit, tiny_unet

NUM_CLASSES = 4
FAST = ["--num-samples", "8", "--num-steps", "8", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- helpers --------------------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``main(args)`` in-process; argparse usage errors (SystemExit) count as their exit code."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(code: int, out: str, err: str, match: str = "") -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    assert lines[0].startswith("guidegap")
    assert match.lower() in lines[0].lower(), lines[0]


def collapse(model: torch.nn.Module) -> torch.nn.Module:
    """Every class-embedding row set to the null row: eps_c = eps_u exactly."""
    from diffusers.models.embeddings import LabelEmbedding

    student = copy.deepcopy(model)
    tables = [student.class_embedding.weight] if getattr(student, "class_embedding", None) is not None else [
        m.embedding_table.weight for m in student.modules() if isinstance(m, LabelEmbedding)]
    with torch.no_grad():
        for weight in tables:
            weight[:NUM_CLASSES] = weight[NUM_CLASSES].clone()
    return student


def with_nan_output(model: torch.nn.Module) -> torch.nn.Module:
    student = copy.deepcopy(model)
    bias = student.conv_out.bias if hasattr(student, "conv_out") else student.proj_out_2.bias
    with torch.no_grad():
        bias.fill_(float("nan"))
    return student


class TouchOnLoad:
    """Unpickling this creates ``marker`` (runs code); a safe loader must refuse it."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Saved models and damaged files, written once for the module."""
    import guidegap

    root = tmp_path_factory.mktemp("cli")
    unet, dit = tiny_unet(NUM_CLASSES), tiny_dit(NUM_CLASSES)
    models = {
        "unet": unet, "unet_collapsed": collapse(unet), "unet_nan": with_nan_output(unet),
        "dit": dit, "dit_collapsed": collapse(dit),
        "unet_no_classes": tiny_unet(NUM_CLASSES, num_class_embeds=None),
        "unet_6_classes": tiny_unet(6), "unet_16px": tiny_unet(NUM_CLASSES, sample_size=16),
    }
    paths = {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        paths[name] = root / name
    paths["marker"] = root / "pwned"
    torch.save({"state_dict": TouchOnLoad(paths["marker"])}, root / "evil.pt")
    paths["evil"] = root / "evil.pt"
    paths["corrupt"] = root / "corrupt.pt"
    paths["corrupt"].write_bytes(b"\x80\x02 this is not a checkpoint" * 4)
    paths["plain_nc"] = root / "plain.nc"
    guidegap.save_dataset(guidegap.trace(unet, None, num_samples=2, num_steps=2), paths["plain_nc"])
    return paths


# -- the built-in example -------------------------------------------------------------------------
def test_example_is_collapsed_and_fails_by_default(capsys):
    code, out, err = run_cli(capsys, "audit", "--example", "oracle", *FAST)
    assert code == 1
    assert "VERDICT: COLLAPSED" in out
    assert "rho (gap size, S/T)" in out and "Suggested fix:" in out
    assert err == ""


@pytest.mark.parametrize("fail_on, expected", [
    ("none", 0), ("collapsed", 1), ("miscalibrated,drifted", 0), ("non-finite,collapsed", 1), ("healthy", 0),
])
def test_fail_on_decides_the_exit_code(capsys, fail_on, expected):
    code, out, err = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--fail-on", fail_on)
    assert code == expected
    assert "VERDICT: COLLAPSED" in out


def test_json_prints_one_object_on_stdout(capsys):
    code, out, err = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--json")
    assert code == 1
    assert out.count("\n") == 1 and out.endswith("\n")  # one line, one object
    report = json.loads(out)
    assert report["verdict"] == "collapsed"
    assert report["rho"] == 0.0
    assert 0.0 <= report["cos_delta"] < 0.8 and report["gap_mse"] > 0
    assert report["config"]["num_samples"] == 8 and report["config"]["num_steps"] == 8


def test_out_and_figure_then_plot(capsys, tmp_path):
    out_nc, fig = tmp_path / "audit.nc", tmp_path / "audit.png"
    code, out, err = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--out", out_nc, "--figure", fig, "--fail-on", "none")
    assert code == 0
    assert f"wrote {out_nc}, {fig}" in out
    assert out_nc.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # netCDF-4 is HDF5
    assert fig.read_bytes().startswith(PNG_MAGIC)

    again = tmp_path / "again.png"
    code, out, err = run_cli(capsys, "plot", out_nc, "--figure", again)
    assert code == 0 and err == ""
    assert out.strip() == f"wrote {again} (collapsed)"
    assert again.read_bytes().startswith(PNG_MAGIC) and again.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.png", "audit.nc", "audit.png"]


def test_threshold_override_changes_the_verdict(capsys):
    code, out, _ = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--json", "--threshold", "collapsed_rho=0",
                           "--threshold", "min_cos=-1", "--threshold", "rho_low=0")
    assert code == 0
    assert json.loads(out)["verdict"] == "healthy"  # rho = 0 is not < 0, and 0 is inside [0, 1.25]
    assert json.loads(out)["thresholds"]["collapsed_rho"] == 0.0


# -- saved diffusers folders ----------------------------------------------------------------------
@pytest.mark.parametrize("family", ["unet", "dit"])
def test_folder_audits(capsys, files, family):
    healthy = run_cli(capsys, "audit", files[family], "--teacher", files[family], *FAST, "--json")
    assert healthy[0] == 0, healthy[2]
    assert json.loads(healthy[1])["verdict"] == "healthy"
    assert json.loads(healthy[1])["rho"] == pytest.approx(1.0, abs=1e-6)

    collapsed = run_cli(capsys, "audit", files[f"{family}_collapsed"], "--teacher", files[family], *FAST, "--json")
    assert collapsed[0] == 1
    assert json.loads(collapsed[1])["verdict"] == "collapsed" and json.loads(collapsed[1])["rho"] == 0.0

    # --fail-on collapsed: only a collapse fails.
    assert run_cli(capsys, "audit", files[f"{family}_collapsed"], "--teacher", files[family], *FAST, "--fail-on", "collapsed")[0] == 1
    assert run_cli(capsys, "audit", files[family], "--teacher", files[family], *FAST, "--fail-on", "collapsed")[0] == 0
    assert run_cli(capsys, "audit", files[f"{family}_collapsed"], "--teacher", files[family], *FAST, "--fail-on", "drifted")[0] == 0


def test_teacher_free_folder_audit(capsys, files):
    code, out, err = run_cli(capsys, "audit", files["unet"], *FAST)
    assert code == 1  # inconclusive fails by default ...
    assert "VERDICT: INCONCLUSIVE" in out and "teacher-free" in out
    code, out, err = run_cli(capsys, "audit", files["unet"], *FAST, "--fail-on", "collapsed,non-finite")
    assert code == 0  # ... but passes a gate on what a teacher-free audit can decide
    code, out, err = run_cli(capsys, "audit", files["unet_collapsed"], *FAST, "--json")
    assert code == 1 and json.loads(out)["verdict"] == "collapsed"


def test_nan_student_is_a_verdict_not_bad_input(capsys, files):
    code, out, err = run_cli(capsys, "audit", files["unet_nan"], "--teacher", files["unet"], *FAST, "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["verdict"] == "non-finite" and report["rho"] is None
    code, out, err = run_cli(capsys, "audit", files["unet_nan"], "--teacher", files["unet"], *FAST)
    assert code == 1 and "VERDICT: NON-FINITE" in out and "NaN/Inf first at timestep" in out


# -- bad input: exit 2, one line on stderr, no traceback -----------------------------------------
BAD_INPUTS = {
    "missing file": (["audit", "{root}/missing.pt"], "no such file"),
    "trust flag before the path": (["audit", "--trust-pickle", "{evil}"], "write the bare flag after it"),
    "missing teacher": (["audit", "{unet}", "--teacher", "{root}/missing"], "no such file"),
    "corrupt file": (["audit", "{corrupt}"], "not a readable"),
    "no class embedding": (["audit", "{unet_no_classes}"], "class-label embedding"),
    "class counts differ": (["audit", "{unet}", "--teacher", "{unet_6_classes}"], "number of classes"),
    "image shapes differ": (["audit", "{unet}", "--teacher", "{unet_16px}"], "sample shape"),
    "zero samples": (["audit", "{unet}", "--num-samples", "0"], "positive integer"),
    "zero steps": (["audit", "{unet}", "--num-steps", "0"], "positive integer"),
    "unknown scheduler": (["audit", "{unet}", "--scheduler", "warp-drive"], "scheduler"),
    "bad fail-on": (["audit", "{unet}", "--fail-on", "colapsed"], "--fail-on"),
    "empty fail-on": (["audit", "{unet}", "--fail-on", ""], "--fail-on"),
    "out in a missing folder": (["audit", "{unet}", "--out", "{root}/nowhere/x.nc"], "does not exist"),
    "out not netCDF": (["audit", "{unet}", "--out", "{root}/x.csv"], ".nc"),
    "figure in a missing folder": (["audit", "{unet}", "--figure", "{root}/nowhere/x.png"], "does not exist"),
    "figure format": (["audit", "{unet}", "--figure", "{root}/x.notaformat"], "figure"),
    "label out of range": (["audit", "{unet}", "--labels", "99"], "labels in 0..3"),
    "negative label": (["audit", "{unet}", "--labels", "-1"], "labels in 0..3"),
    "labels not numbers": (["audit", "{unet}", "--labels", "cat"], "class ids"),
    "wrong number of labels": (["audit", "{unet}", "--labels", "0,1,2"], "one label or"),
    "guidance not a number": (["audit", "{unet}", "--guidance-scale", "lots"], "guidance scale"),
    "guidance nan": (["audit", "{unet}", "--guidance-scale", "nan"], "guidance scale"),
    "guidance inf": (["audit", "{unet}", "--guidance-scale", "inf"], "guidance scale"),
    "unknown threshold": (["audit", "{unet}", "--threshold", "rho_min=0.5"], "unknown threshold"),
    "threshold not a number": (["audit", "{unet}", "--threshold", "collapsed_rho=low"], "NAME=VALUE"),
    "inconsistent thresholds": (["audit", "{unet}", "--threshold", "collapsed_rho=1.5"], "collapsed_rho"),
    "negative seed": (["audit", "--example", "oracle", "--seed", "-1"], "seed"),
    "no student": (["audit"], "STUDENT"),
    "example and student": (["audit", "{unet}", "--example"], "--example"),
    "state dict without factory": (["audit", "{unet}/diffusion_pytorch_model.safetensors"], "--factory"),
    "bad factory": (["audit", "{unet}/diffusion_pytorch_model.safetensors", "--factory", "nope"], "package.module:function"),
    "unknown option": (["audit", "{unet}", "--frobnicate"], "unrecognized"),
    "unknown command": (["distil"], "invalid choice"),
    "plot of a plain recording": (["plot", "{plain_nc}", "--figure", "{root}/p.png"], "audit Dataset"),
    "plot of a missing file": (["plot", "{root}/missing.nc", "--figure", "{root}/p.png"], "no such result file"),
    "plot of a corrupt file": (["plot", "{corrupt}", "--figure", "{root}/p.png"], "not a readable"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(capsys, files, case):
    template, match = BAD_INPUTS[case]
    names = {name: str(path) for name, path in files.items()}
    args = [a.format(root=files["unet"].parent, **names) for a in template]
    code, out, err = run_cli(capsys, *args, *(FAST if args[0] == "audit" else []))
    assert_bad_input(code, out, err, match)
    assert not (files["unet"].parent / "p.png").exists()


def test_malicious_pickle_is_refused_without_running_it(capsys, files):
    for args in (["audit", files["evil"]], ["audit", files["unet"], "--teacher", files["evil"]]):
        code, out, err = run_cli(capsys, *args, *FAST)
        assert_bad_input(code, out, err, "--trust-pickle")
    assert not files["marker"].exists()


def test_bad_input_is_caught_before_the_run(capsys, files, monkeypatch):
    """Argument errors must not cost a full audit: the recorder is never called."""
    import guidegap.auditing.api as api

    def no_run(*args, **kwargs):
        raise AssertionError("the audit ran before the arguments were checked")

    monkeypatch.setattr(api, "trace", no_run)
    root = files["unet"].parent
    cases = [
        (["--fail-on", "bogus"], "--fail-on"),
        (["--out", root / "x.txt"], ".nc"),
        (["--out", root], "folder"),
        (["--figure", root / "x.notaformat"], "figure"),
        (["--threshold", "rho_high=0.5"], "rho_high"),
    ]
    for extra, match in cases:
        code, out, err = run_cli(capsys, "audit", files["unet"], *FAST, *extra)
        assert_bad_input(code, out, err, match)
        assert "the audit ran" not in err


# -- the real console script ----------------------------------------------------------------------
def console(*args: object) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("guidegap")
    assert exe, "the guidegap console script is installed with the package"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GUIDEGAP_DEBUG", None)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def test_console_script_audits_a_folder(files):
    done = console("audit", files["dit_collapsed"], "--teacher", files["dit"], *FAST, "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["verdict"] == "collapsed"
    assert "Traceback" not in done.stderr


def test_console_script_bad_input(files):
    done = console("audit", files["evil"], "--teacher", files["unet"], *FAST)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "--trust-pickle" in done.stderr
    assert "Traceback" not in done.stderr
    assert not files["marker"].exists()


def test_module_entry_point_prints_version():
    done = subprocess.run([sys.executable, "-m", "guidegap", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("guidegap ")


@pytest.mark.parametrize("scale, expected", [("tag", {"kind": "tag"}), ("2.5", {"scale": 2.5})])
def test_guidance_scale_option(capsys, scale, expected):
    code, out, err = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--json", "--guidance-scale", scale)
    assert code == 1 and err == ""
    guidance = json.loads(out)["config"]["guidance"]
    assert expected.items() <= guidance.items(), guidance


def test_no_divergence_skips_the_students_own_path(tmp_path, capsys):
    out = tmp_path / "fast.nc"
    code = main(["audit", "--example", "oracle", "--num-samples", "4", "--num-steps", "4", "--no-divergence", "--out", str(out),
                 "--figure", str(tmp_path / "fast.png"), "--json"])
    assert code == 1 and json.loads(capsys.readouterr().out)["verdict"] == "collapsed"
    ds = guidegap.load_dataset(out)
    assert "divergence" not in ds and "gap_norm" in ds
    assert (tmp_path / "fast.png").stat().st_size > 0


def test_a_probe_audit_of_the_built_in_example_on_the_held_out_images(capsys):
    code, out, err = run_cli(capsys, "audit", "--example", "--probe-data", "fashion-mnist", "--num-samples", "48",
                             "--no-progress", "--json")
    report = json.loads(out)
    # the cond-only student: its unsupervised null branch puts the guided prediction far off the teacher's
    assert code == 1 and report["verdict"] == "misguided" and report["rel_guided_error"] > 1.5 * Thresholds().max_rel_guided_error_probe
    assert report["config"]["num_samples"] == 48 and [p["phase"] for p in report["phases"]] == ["early", "middle", "late"]
    assert report["rho"] > 2
    code, out, _ = run_cli(capsys, "audit", "--example", "--probe-data", "auto", "--num-samples", "48", "--no-progress", "--json")
    assert json.loads(out)["rho"] == report["rho"]  # 'auto': the teacher checkpoint declares fashion-mnist


def test_where_the_probe_is_the_default_a_trajectory_option_or_trajectories_keeps_the_trajectories(capsys, monkeypatch):
    from guidegap.cli import audit as cli_audit

    monkeypatch.setattr(cli_audit, "PROBE_BY_DEFAULT", True)
    code, out, _ = run_cli(capsys, "audit", "--example", "--num-samples", "48", "--no-progress", "--json")
    report = json.loads(out)
    assert report["mode"] == "data-probe" and report["config"]["num_samples"] == 48
    assert "'fashion-mnist'" in report["mode_reason"]
    code, out, _ = run_cli(capsys, "audit", "--example", "--probe-data", "fashion-mnist", "--num-samples", "48", "--no-progress", "--json")
    assert json.loads(out)["rho"] == report["rho"]  # the same probe as asking for it by name
    for flags in (["--trajectories"], ["--num-steps", "3"]):
        code, out, _ = run_cli(capsys, "audit", "--example", "--num-samples", "2", *flags, "--no-progress", "--json")
        trajectories = json.loads(out)
        assert trajectories["mode"] == "teacher-forced" and "mode_reason" not in trajectories
    assert_bad_input(*run_cli(capsys, "audit", "--example", "--trajectories", "--probe-data", "fashion-mnist"),
                     match="two audit modes")


@pytest.mark.parametrize("flags, match", [
    (["--num-steps", "5"], "--num-steps describe a sampling trajectory"),
    (["--labels", "1", "--scheduler", "ddpm"], "--labels, --scheduler describe a sampling trajectory"),
    (["--num-samples", "20000"], "holds 10000 images"),
    (["--negative-prompt", "blurry"], "text-to-image pipelines are audited along their sampling trajectories"),
])
def test_probe_data_refuses_what_only_a_trajectory_has(capsys, flags, match):
    assert_bad_input(*run_cli(capsys, "audit", "--example", "--probe-data", "fashion-mnist", *flags), match=match)


def test_rules_names_a_rule_set_and_thresholds_apply_on_top(capsys, monkeypatch):
    from guidegap.auditing import verdicts

    monkeypatch.setitem(verdicts.RULE_SETS, "lenient", dict(min_cos=-1.0, max_rel_guided_error=0.3))
    code, out, _ = run_cli(capsys, "audit", "--example", "oracle", *FAST, "--rules", "lenient", "--threshold", "rho_low=0.5", "--json")
    applied = json.loads(out)["thresholds"]
    assert (applied["min_cos"], applied["max_rel_guided_error"], applied["rho_low"]) == (-1.0, 0.3, 0.5)
    assert_bad_input(*run_cli(capsys, "audit", "--example", "oracle", *FAST, "--rules", "strict"), match="expected a rule set")


def test_the_oracle_example_is_not_probed_with_the_tiers_mixture(capsys):
    assert_bad_input(*run_cli(capsys, "audit", "--example", "oracle", "--probe-data", "oracle"), match="its own")
