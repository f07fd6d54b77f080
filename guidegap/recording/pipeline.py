"""``guidegap.record``: record both CFG branches inside an unmodified diffusers pipeline (or a bare model).

TransformerLens' ``run_with_cache`` pattern::

    with guidegap.record(pipe) as rec:
        images = pipe(class_labels=[1, 2], num_inference_steps=25).images
    rec.dataset            # per-sample, per-step gap_norm, cond_norm, uncond_norm, parallel_fraction, nonfinite

A recording hook on the denoiser (``pipe.transformer`` / ``pipe.unet``) sees every call. A call carries both
branches when

* it runs under ``cache_context("cond")`` or ``("uncond")`` (also a guider's ``"pred_cond"`` / ``"pred_uncond"``):
  it is one branch, paired with the other branch's next call at the same timestep (either order); or
* it is one batch of ``2B`` rows (no cache context, or ``"cond_uncond"``) whose halves are laid out as the
  pipeline declares (:mod:`guidegap.recording.layouts`) *and* evaluate one state: the two halves of the sample
  are identical, as ``torch.cat([latents] * 2)`` makes them, the uncond half's class labels are all the null
  label (class-conditional layouts), and the pipeline's ``do_classifier_free_guidance`` (where it has one) holds.

Anything else carries one branch: a batch that halves mid-run (CFG cut-off), a pipeline run at ``w <= 1``, a
branch without a partner. Such calls are counted in ``attrs["unguided_calls"]`` and never split into fake
halves; calls under other contexts (``"uncond_stg"``, ...) or without a tensor output count in
``attrs["other_calls"]``. Each recorded step reduces the two branches on the fly with
:func:`guidegap.metrics.model_metrics`; full tensors are kept only with ``keep_predictions=True``.

Not supported: branches that run on different states (InstructPix2Pix's three-way batch is counted as
unguided), and ``enable_model_cpu_offload``, whose accelerate hooks are re-installed at the end of each
pipeline call over the recording hook (only the first call inside a ``with`` block is recorded).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr

from guidegap._version import __version__
from guidegap.denoisers.channels import eps_channels, eps_part
from guidegap.errors import InputError
from guidegap.metrics.registry import model_values
from guidegap.recording.layouts import BATCHED_CONTEXTS, CONTEXT_BRANCHES, Layout, default_layout
from guidegap.recording.buffers import MetricBuffers
from guidegap.results.schema import make_dataset

if TYPE_CHECKING:
    from guidegap.recording.hooks import Call

__all__ = ["Recorder", "record", "resolve_targets"]

Listener = Callable[[int, float, torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class _Step:
    """One recorded step: timestep, per-sample metrics (on the model's device) and optional tensors."""

    timestep: float
    metrics: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    guidance_scale: float | None
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (cond, uncond, state)

    @property
    def batch(self) -> int:
        return int(self.metrics["gap_norm"].shape[0])


@dataclass
class _Pending:
    """A single-branch call waiting for its partner (separate-call pipelines)."""

    branch: str
    timestep: float
    pred: torch.Tensor
    sample: torch.Tensor
    labels: torch.Tensor | None


def resolve_targets(target: Any) -> tuple[Any | None, list[torch.nn.Module]]:
    """``(pipeline or None, denoiser modules)``: a pipeline's ``transformer`` (and ``transformer_2``) or ``unet``."""
    if isinstance(target, torch.nn.Module):
        return None, [target]
    modules: list[torch.nn.Module] = []
    for attr in ("transformer", "transformer_2", "unet"):
        module = getattr(target, attr, None)
        if isinstance(module, torch.nn.Module) and all(module is not m for m in modules):
            modules.append(module)
        if attr == "transformer_2" and modules:
            break  # a pipeline with a transformer has no unet to record
    if not modules:
        raise InputError(
            f"expected a diffusers pipeline with a `transformer` or `unet`, or a torch.nn.Module denoiser; received "
            f"{type(target).__name__}; pass the pipeline, or its denoiser module."
        )
    return target, modules


def _prediction(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def _timestep_value(timestep: Any) -> float:
    if isinstance(timestep, torch.Tensor):
        return float(timestep.flatten()[0].item()) if timestep.numel() else math.nan
    if isinstance(timestep, (int, float, np.integer, np.floating)):
        return float(timestep)
    return math.nan


def _same_timestep(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class Recorder:
    """Records both CFG branches of a pipeline's denoiser; use through :func:`record`.

    After (or during) the ``with`` block, :attr:`dataset` holds one ``step`` per denoiser call (or call pair)
    that carried both branches. Counters: :attr:`paired_steps`, :attr:`unguided_calls`, :attr:`other_calls`.
    """

    def __init__(self, target: Any, *, layout: Layout | str | None = None, keep_predictions: bool = False,
                 name: str = "model") -> None:
        if not isinstance(name, str) or not name:
            raise InputError(f"record: expected name to be a non-empty string, received {name!r}.")
        self.pipeline, self.modules = resolve_targets(target)
        if isinstance(layout, str):
            layout = Layout(layout)
        if layout is not None and not isinstance(layout, Layout):
            raise InputError(f"record: expected layout=Layout(...) or an order string, received {type(layout).__name__}.")
        self.layout = layout or default_layout(self.pipeline, self.modules[0])
        self.keep_predictions = bool(keep_predictions)
        self.name = name
        self.unguided_calls = 0
        self.other_calls = 0
        self._eps = {id(m): eps_channels(m) for m in self.modules}
        self._steps: list[_Step] = []
        self._pending: _Pending | None = None
        self._listeners: list[Listener] = []
        self._retain = False  # keep (cond, uncond, state) on the model's device, for pair mode
        self._declared_guidance: float | None = None
        self._detachers: list[Callable[[], None]] = []
        self._state = "new"

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> "Recorder":
        from guidegap.recording.hooks import RecordingHook, attach, forward_signature

        if self._state != "new":
            raise InputError("record: this recorder was already used; call guidegap.record(...) again for a new recording.")
        try:
            for module in self.modules:
                hook = RecordingHook(self._on_call, forward_signature(module), self.layout.label_arg)
                self._detachers.append(attach(module, hook))
        except BaseException:
            self._detach_all()
            raise
        self._state = "recording"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._flush_pending()
        finally:
            self._detach_all()
            self._state = "done"

    def _detach_all(self) -> None:
        errors: list[BaseException] = []
        while self._detachers:
            try:
                self._detachers.pop()()
            except BaseException as error:  # keep removing the others
                errors.append(error)
        if errors:
            raise errors[0]

    # -- counters -------------------------------------------------------------------------------
    @property
    def paired_steps(self) -> int:
        return len(self._steps)

    @property
    def timesteps(self) -> list[float]:
        return [s.timestep for s in self._steps]

    # -- per call -------------------------------------------------------------------------------
    def _on_call(self, module: torch.nn.Module, call: Call, output: Any) -> None:
        pred = _prediction(output)
        if pred is None or call.sample is None or pred.ndim == 0 or pred.shape[0] != call.sample.shape[0]:
            self.other_calls += 1
            return
        pred = eps_part(pred, self._eps.get(id(module)))
        context = call.context
        branch = CONTEXT_BRANCHES.get(context) if context is not None else None
        with torch.no_grad():
            if branch is not None:
                self._single_branch(branch, call, pred)
            elif context is None or context in BATCHED_CONTEXTS:
                self._flush_pending()
                self._batched(call, pred)
            else:
                self.other_calls += 1

    def _batched(self, call: Call, pred: torch.Tensor) -> None:
        if not self.layout.batched or not self._carries_both(call, pred.shape[0]):
            self.unguided_calls += 1
            return
        cond, uncond = self.layout.halves(pred)
        state, _ = self.layout.halves(call.sample)
        labels = self.layout.halves(torch.as_tensor(call.labels))[0] if self.layout.label_arg else None
        self._add_step(_timestep_value(call.timestep), cond, uncond, state, labels)

    def _carries_both(self, call: Call, rows: int) -> bool:
        sample = call.sample
        if rows < 2 or rows % 2:
            return False
        if self._pipeline_does_cfg() is False:
            return False
        if self.layout.label_arg is not None:
            labels = call.labels
            if labels is None:
                return False
            labels = torch.as_tensor(labels)
            if labels.ndim != 1 or labels.shape[0] != rows:
                return False
            if not bool((self.layout.halves(labels)[1] == self.layout.null_label).all()):
                return False
        half = rows // 2
        return torch.equal(sample[:half], sample[half:])

    def _pipeline_does_cfg(self) -> bool | None:
        if self.pipeline is None or not hasattr(type(self.pipeline), "do_classifier_free_guidance"):
            return None
        try:
            return bool(self.pipeline.do_classifier_free_guidance)
        except Exception:  # a property that needs state the pipeline does not have
            return None

    def _single_branch(self, branch: str, call: Call, pred: torch.Tensor) -> None:
        timestep = _timestep_value(call.timestep)
        labels = torch.as_tensor(call.labels) if self.layout.label_arg and call.labels is not None else None
        pending = self._pending
        if (pending is not None and pending.branch != branch and _same_timestep(pending.timestep, timestep)
                and pending.pred.shape == pred.shape):
            self._pending = None
            if branch == "uncond":
                self._add_step(timestep, pending.pred, pred, pending.sample, pending.labels)
            else:
                self._add_step(timestep, pred, pending.pred, call.sample, labels)
            return
        self._flush_pending()
        # Clones: the pipeline may reuse or modify these tensors before the partner call arrives.
        self._pending = _Pending(branch, timestep, pred.detach().clone(), call.sample.detach().clone(), labels)

    def _flush_pending(self) -> None:
        if self._pending is not None:
            self._pending = None
            self.unguided_calls += 1

    def _guidance_scale_now(self) -> float | None:
        if self.pipeline is not None:
            try:
                value = getattr(self.pipeline, "guidance_scale", None)
            except Exception:
                value = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return self._declared_guidance

    def _add_step(self, timestep: float, cond: torch.Tensor, uncond: torch.Tensor, state: torch.Tensor,
                  labels: torch.Tensor | None) -> None:
        cond, uncond, state = cond.detach(), uncond.detach(), state.detach()
        metrics = model_values(cond, uncond)
        tensors = None
        if self.keep_predictions:  # float32 on the host, as the Dataset stores them
            tensors = tuple(t.to("cpu", torch.float32, copy=True) for t in (cond, uncond, state))
        elif self._retain:  # pair mode: the teacher's tensors stay where the model runs
            tensors = (cond.clone(), uncond.clone(), state.clone())
        index = len(self._steps)
        self._steps.append(_Step(timestep, metrics, None if labels is None else labels.detach().cpu(),
                                 self._guidance_scale_now(), tensors))
        for listener in self._listeners:
            listener(index, timestep, cond, uncond, state)

    # -- results --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-safe description of what was recorded and how."""
        module = self.modules[0]
        return {
            "name": type(module).__name__,
            "pipeline": type(self.pipeline).__name__ if self.pipeline is not None else None,
            "num_parameters": int(sum(p.numel() for m in self.modules for p in m.parameters())),
            "layout": self.layout.describe(),
            "eps_channels": self._eps.get(id(module)),
        }

    @property
    def dataset(self) -> xr.Dataset:
        """The recording as a Dataset (``model`` = ``[name]``, ``sample``, ``step``); see the module docstring."""
        return assemble([self], [self.name])


def record(pipe_or_model: Any, *, layout: Layout | str | None = None, keep_predictions: bool = False,
           name: str = "model") -> Recorder:
    """Record both CFG branches of an unmodified diffusers pipeline's denoiser (or of a bare model) at every call.

    Use as ``with guidegap.record(pipe) as rec: pipe(...)``; afterwards ``rec.dataset`` is an ``xarray.Dataset``
    with ``model`` (``[name]``), ``sample`` and ``step`` dims (one step per call, or call pair, that carried both
    branches), a ``timestep`` coordinate and per-sample ``gap_norm``, ``cond_norm``, ``uncond_norm``,
    ``parallel_fraction`` and ``nonfinite``; ``keep_predictions=True`` adds ``pred_cond``, ``pred_uncond`` and
    ``state`` (image models). ``layout`` overrides the declared CFG batch layout (:mod:`guidegap.recording.layouts`),
    and is required for pipelines guidegap has no declaration for. The hook is removed on exit, also on error,
    and never changes what the pipeline returns.
    """
    return Recorder(pipe_or_model, layout=layout, keep_predictions=keep_predictions, name=name)


# -- Dataset assembly (shared with pair mode) ------------------------------------------------------
def check_recorded(recorder: Recorder) -> int:
    """The batch size ``B`` of a recording; raises when nothing, or runs of different sizes, were recorded."""
    if not recorder._steps:
        raise InputError(
            f"record: no denoiser call carried both CFG branches ({recorder.unguided_calls} single-branch calls, "
            f"{recorder.other_calls} other calls); run the pipeline with guidance_scale > 1 inside the `with` block, "
            f"and check the layout ({recorder.layout.order})."
        )
    batches = sorted({s.batch for s in recorder._steps})
    if len(batches) > 1:
        raise InputError(
            f"record: the recorded steps have different batch sizes {batches}; record one pipeline call (or calls "
            "with one batch size) per `with guidegap.record(...)` block."
        )
    return batches[0]


def assemble(recorders: list[Recorder], names: list[str], pair: dict[str, np.ndarray] | None = None,
             extra_config: dict[str, Any] | None = None, mode: str = "pipeline") -> xr.Dataset:
    """Per-model variables of every recorder (same steps and samples) plus optional pair variables."""
    first = recorders[0]
    batch = check_recorded(first)
    num_steps = first.paired_steps
    for other in recorders[1:]:
        if check_recorded(other) != batch or other.paired_steps != num_steps:
            raise InputError(
                f"the recordings disagree: {first.paired_steps} steps of {batch} samples vs {other.paired_steps} steps "
                f"of {check_recorded(other)}; run both pipelines with the same batch, num_inference_steps and scheduler."
            )
    keep = all(r.keep_predictions for r in recorders)
    if keep:
        shapes = {tuple(s.tensors[0].shape) for r in recorders for s in r._steps}
        if any(len(shape) != 4 for shape in shapes):
            raise InputError(f"keep_predictions stores image predictions (B, C, H, W), received shapes {sorted(shapes)}; "
                             "record without keep_predictions.")
    buffers = MetricBuffers(len(recorders), batch, num_steps)
    rows = slice(0, batch)
    for m, recorder in enumerate(recorders):
        for k, step in enumerate(recorder._steps):
            buffers.put(step.metrics, rows, k, model=m)
            if keep and step.tensors is not None:
                cond, uncond, state = step.tensors
                buffers.put({"pred_cond": cond, "pred_uncond": uncond, "state": state}, rows, k, model=m)
    if pair:
        buffers.arrays.update(pair)
    scales = [s.guidance_scale for s in first._steps]
    if all(s is not None for s in scales):
        buffers.arrays["guidance_scale"] = np.asarray(scales, dtype=np.float64)
    labels = first._steps[0].labels
    labels_np = labels.numpy().astype(np.int64) if labels is not None and labels.shape == (batch,) else np.full(batch, -1, np.int64)
    config: dict[str, Any] = {
        "num_samples": batch,
        "num_steps": num_steps,
        "keep_predictions": keep,
        "models": {name: r.describe() for name, r in zip(names, recorders)},
        "labels": "class labels" if labels is not None else "none (-1): not class-conditional",
    }
    config.update(extra_config or {})
    attrs: dict[str, str | int | float] = {
        "guidegap_version": __version__,
        "mode": mode,
        "config": json.dumps(config, sort_keys=True, default=str),
        "history": f"guidegap.record (guidegap {__version__})",
        "paired_steps": num_steps,
        "unguided_calls": sum(r.unguided_calls for r in recorders),
        "other_calls": sum(r.other_calls for r in recorders),
    }
    scheduler = getattr(first.pipeline, "scheduler", None) if first.pipeline is not None else None
    if scheduler is not None and hasattr(scheduler, "config"):
        attrs["prediction_type"] = str(scheduler.config.get("prediction_type", "epsilon"))
    timesteps = np.asarray(first.timesteps, dtype=np.float64)
    return make_dataset(buffers.arrays, models=names, labels=labels_np, timesteps=timesteps, attrs=attrs)
