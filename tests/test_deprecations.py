"""Old names keep working, each with a DeprecationWarning that names its replacement (issue 15's moves)."""

from __future__ import annotations

import pytest
import torch

from guidegap.checkpoints import resolve_model
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
])
def test_moved_modules_still_import_and_say_where_they_went(old, new, name, monkeypatch):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
