"""Pair mode: a teacher pipeline and a student pipeline run from the same seed, compared step by step.

Both pipelines run unmodified, one after the other, each on its **own guided trajectory** from the same
initial noise (free-running, docs/design.md §2): at step ``k`` the teacher and the student are evaluated at
different states ``x_T`` and ``x_S`` once their samples drift apart, so the per-step branch errors mix the
student's own error with the effect of the states it reached. ``divergence`` measures that drift: at step
``k`` it is ``RMS(x_S - x_T)`` of the states both models are evaluated at in step ``k + 1`` (the states after
step ``k``, as the denoiser sees them, i.e. after ``scheduler.scale_model_input``); the last step has none (NaN).
For local, teacher-forced errors use :func:`guidegap.trace` / :func:`guidegap.pipelines.audit_text`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from guidegap.auditing.judge import judge, stamp
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import Thresholds
from guidegap.errors import InputError
from guidegap.metrics import divergence
from guidegap.metrics.registry import metrics_of, pair_values
from guidegap.recording.layouts import Layout
from guidegap.recording.pipeline import Recorder, assemble, check_recorded

__all__ = ["record_pair"]

def _declared_guidance(pipe: Any, call_kwargs: dict[str, Any]) -> float | None:
    if "guidance_scale" in call_kwargs:
        return float(call_kwargs["guidance_scale"])
    try:
        default = inspect.signature(pipe.__call__).parameters["guidance_scale"].default
    except (KeyError, TypeError, ValueError):
        return None
    return float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else None


def _seeding(call_kwargs: dict[str, Any], seed: int) -> Callable[[], Any]:
    """A function giving each run the same random stream: fresh ``Generator(seed)``, or the caller's generators
    rewound to the state they had before the first run."""
    given = call_kwargs.get("generator")
    if given is None:
        return lambda: torch.Generator().manual_seed(seed)
    generators = list(given) if isinstance(given, (list, tuple)) else [given]
    if not all(isinstance(g, torch.Generator) for g in generators):
        raise InputError(f"record_pair: expected generator to be a torch.Generator or a list of them, received {type(given).__name__}.")
    states = [g.get_state() for g in generators]

    def rewound() -> Any:
        for g, state in zip(generators, states):
            g.set_state(state)
        return given

    return rewound


class _Comparison:
    """Listener on the student's recorder: pair metrics against the teacher's retained step tensors."""

    def __init__(self, teacher: Recorder, num_steps: int, batch: int) -> None:
        self.teacher = teacher
        self.arrays = {name: np.full((batch, num_steps), np.nan) for name in (*(m.name for m in metrics_of("pair")), "divergence")}
        self.problems: list[str] = []

    def __call__(self, k: int, timestep: float, cond: torch.Tensor, uncond: torch.Tensor, state: torch.Tensor) -> None:
        steps = self.teacher._steps
        if k >= len(steps):
            self.problems.append(f"the student made more guided steps than the teacher ({len(steps)})")
            return
        ref = steps[k]
        tc, tu, tx = (t.to(cond.device) for t in ref.tensors)
        if tc.shape != cond.shape:
            self.problems.append(f"step {k}: teacher predictions {tuple(tc.shape)} vs student {tuple(cond.shape)}")
            return
        if not (ref.timestep == timestep or (math.isnan(ref.timestep) and math.isnan(timestep))):
            self.problems.append(f"step {k}: teacher timestep {ref.timestep:g} vs student {timestep:g}")
        w = ref.guidance_scale if ref.guidance_scale is not None else math.nan
        for name, values in pair_values(cond.float(), uncond.float(), tc.float(), tu.float(), w).items():
            self.arrays[name][:, k] = values.detach().cpu().double().numpy()
        if k > 0 and tx.shape == state.shape:
            self.arrays["divergence"][:, k - 1] = divergence(state.float(), tx.float()).cpu().double().numpy()


def record_pair(
    teacher_pipe: Any,
    student_pipe: Any,
    *,
    seed: int = 0,
    layout: Layout | str | None = None,
    thresholds: Thresholds | None = None,
    n_boot: int = 1000,
    **call_kwargs: Any,
) -> AuditReport:
    """Run ``teacher_pipe(**call_kwargs)`` and ``student_pipe(**call_kwargs)`` from the same seed and judge the student.

    Both runs are recorded with :func:`guidegap.record`; at every guided step the student's two branches are
    compared with the teacher's (:func:`guidegap.metrics.pair_metrics` at the run's ``guidance_scale``), and the
    states give ``divergence``. The trajectories are free-running: each pipeline follows its own samples (see the
    module docstring). Returns an :class:`~guidegap.auditing.AuditReport` with the docs/design.md §2 verdict
    (``judge_pair``); its Dataset has ``model = ["teacher", "student"]`` and ``attrs["mode"] == "pipeline"``.

    ``seed`` seeds a fresh ``torch.Generator`` for each run; a ``generator=`` in ``call_kwargs`` is used instead,
    rewound to its starting state before the student's run. ``layout`` applies to both pipelines (default:
    each pipeline's declared layout). Pass ``output_type="latent"`` to skip decoding.

    Memory: the teacher runs first and the student is compared with it step by step, so the teacher's two branch
    predictions and its state are held for every guided step, on the model's device in its dtype, until the
    student's run ends (3 x steps x the latent's size: 3 x 50 x 4x64x64 in float16 = 4.9 MB per image for SD 1.5
    at 512 px); the student's are reduced to metrics as they come.
    """
    thresholds = thresholds or Thresholds()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"record_pair: expected seed to be an integer >= 0, received {seed!r}.")
    generator = _seeding(call_kwargs, int(seed))
    guidance = _declared_guidance(student_pipe, call_kwargs)

    teacher = Recorder(teacher_pipe, layout=layout, name="teacher")
    teacher._retain = True
    teacher._declared_guidance = _declared_guidance(teacher_pipe, call_kwargs)
    with teacher:
        teacher_pipe(**{**call_kwargs, "generator": generator()})
    batch = check_recorded(teacher)

    student = Recorder(student_pipe, layout=layout, name="student")
    student._declared_guidance = guidance
    comparison = _Comparison(teacher, teacher.paired_steps, batch)
    student._listeners.append(comparison)
    with student:
        student_pipe(**{**call_kwargs, "generator": generator()})
    check_recorded(student)
    if student.paired_steps != teacher.paired_steps:
        comparison.problems.append(f"the teacher made {teacher.paired_steps} guided steps, the student {student.paired_steps}")
    if comparison.problems:
        raise InputError(
            f"record_pair: the two runs cannot be compared step by step ({comparison.problems[0]}); give both pipelines "
            "the same scheduler configuration, num_inference_steps and batch."
        )
    for recorder in (teacher, student):  # the teacher's tensors were only needed for the comparison
        for step in recorder._steps:
            step.tensors = None

    scheduler = getattr(teacher_pipe, "scheduler", None)
    config = {
        "seed": int(seed) if call_kwargs.get("generator") is None else "caller's generator",
        "guidance": {"kind": "constant", "scale": guidance} if guidance is not None else {"kind": "unknown"},
        "scheduler": {"class": type(scheduler).__name__ if scheduler is not None else "unknown",
                      **({k: str(v) for k, v in dict(scheduler.config).items()} if scheduler is not None else {})},
        "call_kwargs": {k: v for k, v in call_kwargs.items() if isinstance(v, (str, int, float, bool)) or v is None},
        "trajectories": "free-running (each pipeline on its own guided trajectory from the same noise)",
    }
    ds = assemble([teacher, student], ["teacher", "student"], pair=comparison.arrays, extra_config=config)
    ds.attrs["history"] = f"guidegap.pipelines.record_pair (guidegap {ds.attrs['guidegap_version']})"

    judgement = judge(ds, thresholds, n_boot=n_boot, seed=int(seed))
    stamp(ds, judgement, thresholds, student=type(student_pipe).__name__, teacher=type(teacher_pipe).__name__)
    return AuditReport.of(judgement, ds, thresholds)
