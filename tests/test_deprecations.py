"""Old names keep working, each with a DeprecationWarning that names its replacement (issue 15's moves)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from guidegap.checkpoints import resolve_model
from guidegap.errors import InputError
from guidegap.recording.schedulers import default_scheduler


def test_resolve_model_of_the_audit_module_forwards_to_the_one_resolver():
    from guidegap.auditing.api import resolve_model as old

    with pytest.warns(DeprecationWarning, match="guidegap.checkpoints.resolve_model"):
        denoiser, schedule, source = old("oracle:2")
    new = resolve_model("oracle:2")
    assert (schedule, source) == (new.scheduler_config, new.source) and denoiser.name == new.denoiser.name


def test_load_teacher_and_teacher_schedule_of_the_loop_forward_to_the_one_resolver():
    from guidegap.training.loop import load_teacher, teacher_schedule

    alphas_cumprod = default_scheduler().alphas_cumprod
    with pytest.warns(DeprecationWarning, match="resolve_model"):
        teacher, tirt, params = load_teacher("oracle", alphas_cumprod)
    assert tirt is None and params is None
    torch.testing.assert_close(teacher.alphas_cumprod, alphas_cumprod.double())
    with pytest.warns(DeprecationWarning, match="resolve_model"):
        assert teacher_schedule("oracle") is None


@pytest.mark.parametrize("old, new, name", [
    ("guidegap.pipelines.recorder", "guidegap.recording.pipeline", "record"),
    ("guidegap.pipelines.hooks", "guidegap.recording.hooks", "HookError"),
    ("guidegap.pipelines.layouts", "guidegap.recording.layouts", "Layout"),
    ("guidegap.recording.sampling", "guidegap.recording.sampler", "sample"),
    ("guidegap.plots.collapse", "guidegap.auditing.figure", "plot_collapse"),
    ("guidegap.pipelines.text_transformer", "guidegap.denoisers.text_transformer", "TextTransformerDenoiser"),
])
def test_moved_modules_still_import_and_say_where_they_went(old, new, name, monkeypatch):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_judge_single_is_judge_teacher_free():
    from guidegap.auditing.verdicts import judge_single, judge_teacher_free
    from guidegap.metrics.summary import Estimate

    summary = {"rel_gap": Estimate(0.5, 0.4, 0.6, 0.95)}
    with pytest.warns(DeprecationWarning, match="judge_teacher_free"):
        assert judge_single(summary, 0.0) == judge_teacher_free(summary, 0.0)


def test_teacher_free_audits_stored_before_the_rename_still_load_and_name_the_student(oracle, scheduler):
    import json

    import guidegap
    from guidegap.auditing.intrinsic import single_model_dataset
    from guidegap.auditing.judge import judge, stamp
    from guidegap.auditing.report import AuditReport
    from guidegap.denoisers.views import UnguidedView
    from guidegap.recording.trajectory import trace_teacher_free

    options = dict(num_samples=4, num_steps=4, scheduler=scheduler)
    with pytest.warns(DeprecationWarning, match="trace_teacher_free"):
        old = single_model_dataset(guidegap.trace(oracle, UnguidedView(oracle), mode="free-running", **options))
    new = trace_teacher_free(oracle, **options)
    for name in ("gap_norm", "cond_norm", "guidance_response"):  # the same recording, without the relabelling
        np.testing.assert_array_equal(old[name].values, new[name].values)
    assert list(json.loads(new.attrs["config"])["models"]) == ["student"]
    assert json.loads(old.attrs["config"])["models"]["student"]["name"] == "oracle (w=1)"
    stamp(old, judge(old), guidegap.Thresholds(), student="old.nc", teacher="")
    text = str(AuditReport.from_dataset(old))
    assert "student  old.nc (oracle)" in text and "(w=1)" not in text


def test_uses_tirt_is_weighted():
    from guidegap.training.objectives import Objective, make_objective

    dash = make_objective("dash")
    with pytest.warns(DeprecationWarning, match="weighted"):
        assert dash.uses_tirt is True
    with pytest.warns(DeprecationWarning, match="set weighted"):
        class Old(Objective):  # a subclass written against the old name still declares its weighting
            uses_tirt = True
    assert Old.weighted is True and Old().weighted is True


def test_train_steps_and_sampling_steps_keep_their_old_names(tmp_path, capsys):
    import dataclasses

    from guidegap.cli.main import build_parser
    from guidegap.monitoring import GuidanceMonitor
    from guidegap.training.callbacks import LightAudit
    from guidegap.training.config import TrainConfig

    with pytest.warns(DeprecationWarning, match=r"TrainConfig\(steps=...\) is deprecated; use train_steps="):
        config = TrainConfig(out=str(tmp_path), tier="oracle", teacher="oracle", steps=7)
    assert config.train_steps == 7 and "steps" not in config.to_dict()
    with pytest.warns(DeprecationWarning, match="train_steps"):
        assert config.steps == 7
    assert dataclasses.replace(config, train_steps=9).train_steps == 9
    with pytest.raises(InputError, match="pass train_steps= only"):
        TrainConfig(out=str(tmp_path), tier="oracle", teacher="oracle", steps=7, train_steps=8)
    # configs and checkpoints written before the rename store "steps": they load (and resume) as train_steps
    stored = {k: v for k, v in config.to_dict().items() if k != "train_steps"} | {"steps": 11}
    assert TrainConfig.from_dict(stored).train_steps == 11
    with pytest.warns(DeprecationWarning, match="--train-steps"):
        args = build_parser().parse_args(["distill", "--teacher", "oracle", "--out", "x", "--steps", "12"])
    assert args.train_steps == 12 and "--steps is deprecated; use --train-steps" in capsys.readouterr().err
    for flags in (["--steps", "12", "--train-steps", "7"], ["--train-steps", "7", "--steps", "12"]):
        with pytest.raises(SystemExit), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            build_parser().parse_args(["distill", "--teacher", "oracle", "--out", "x", *flags])
        assert "pass --train-steps only (--steps is its old name), received both" in capsys.readouterr().err
    with pytest.warns(DeprecationWarning, match=r"GuidanceMonitor\(num_steps=...\) is deprecated; use sampling_steps="):
        monitor = GuidanceMonitor("oracle", num_steps=5)
    assert monitor.options["num_steps"] == 5 and "sampling_steps=5" in repr(monitor)
    with pytest.warns(DeprecationWarning, match="sampling_steps"):
        assert LightAudit("oracle", num_steps=6).options["num_steps"] == 6


def test_moved_module_names_warn_and_name_their_new_home():
    from guidegap.auditing import intrinsic
    from guidegap.denoisers.views import UnguidedView
    from guidegap.monitoring import monitor

    with pytest.warns(DeprecationWarning, match=r"intrinsic\.UnguidedView is deprecated; use guidegap\.denoisers\.views\.UnguidedView"):
        assert intrinsic.UnguidedView is UnguidedView
    with pytest.warns(DeprecationWarning, match="use guidegap.monitoring.monitor.DEFAULT_SAMPLING_STEPS"):
        assert monitor.DEFAULT_NUM_STEPS == monitor.DEFAULT_SAMPLING_STEPS
    with pytest.raises(AttributeError, match="no attribute 'NOT_A_NAME'"):
        monitor.NOT_A_NAME
