"""The registry of guidegap's metrics (docs/design.md §2): one entry per recorded variable and per summary estimate.

Everything that names a metric derives from here: the Dataset schema (:data:`guidegap.results.schema.VARIABLES`),
the recorders (:func:`model_values`, :func:`pair_values`), the bootstrap summaries (:func:`guidegap.summarize`), the
pair recording of pipelines, a GuidanceMonitor's training log and the report's tables. A new metric is its pure
function (``(B, ...)`` tensors to ``(B,)``, as in :mod:`guidegap.metrics.functional`) plus one entry::

    register_metric(Metric("gap_l1", "pair", "mean absolute difference of the guidance gaps", function=gap_l1,
                           label="gap L1"))

A ``"model"`` metric is called as ``function(pred_cond, pred_uncond)`` for every recorded model, a ``"pair"`` metric
as ``function(student_cond, student_uncond, teacher_cond, teacher_uncond, guidance_scale)``. A metric with a
``label`` gets a summary of the same name (the mean over samples of its per-sample means over steps) in the audits
it belongs to, a row in the report and, for pair metrics, a per-step curve and a summary in the training log.
Summaries that combine variables (``rho``, ``rel_cond_error``, ...) are :class:`Summary` entries of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from guidegap._registry import Registry
from guidegap.errors import InputError
from guidegap.metrics.functional import model_metrics, pair_metrics

__all__ = ["KINDS", "AUDITS", "Metric", "Summary", "Statistic", "mean_of", "ratio_of", "any_of", "METRICS", "SUMMARIES",
           "register_metric", "remove_metric", "metric", "metrics_of", "summaries", "report_rows", "model_values", "pair_values",
           "VariablesView"]

# Dims of a recorded variable by kind (trajectory form: data probes drop "step").
KINDS: dict[str, tuple[str, ...]] = {
    "model": ("model", "sample", "step"),   # one model's two branches (pred_cond, pred_uncond)
    "pair": ("sample", "step"),             # the student's branches against the teacher's, at w
    "path": ("sample", "step"),             # trajectory states, filled by the recorder (divergence, guidance_response)
    "step": ("step",),                      # one value per sampling step (guidance_scale)
    "full": ("model", "sample", "step", "channel", "height", "width"),  # kept tensors (keep_predictions)
}
AUDITS = ("pair", "teacher-free", "guidance-distilled")


@dataclass(frozen=True)
class Statistic:
    """How a summary estimate reduces per-sample values (each first averaged over steps), bootstrapped over samples.

    ``kind``: ``"mean"`` of one variable, ``"ratio"`` of the means of two, ``"any"`` (fraction of samples with any
    nonzero value). A variable named ``"gap_norm@teacher"`` is that model's; a bare per-model name in a teacher-free
    audit is the one model's.
    """

    kind: str
    variables: tuple[str, ...]


def mean_of(variable: str) -> Statistic:
    return Statistic("mean", (variable,))


def ratio_of(numerator: str, denominator: str) -> Statistic:
    return Statistic("ratio", (numerator, denominator))


def any_of(variable: str) -> Statistic:
    return Statistic("any", (variable,))


Healthy = Callable[[Any], str]  # the healthy range as text, from the verdict thresholds


@dataclass(frozen=True)
class Summary:
    """A summary estimate of an audit: its statistic and how it is named, shown and judged.

    ``statistic`` ``None``: estimated by the judge (:mod:`guidegap.auditing.judge`), not by ``summarize``.
    ``required``: ``summarize`` refuses a Dataset without its variables (otherwise it is left out). ``label`` /
    ``rank``: its row in the report (sorted by rank); ``phase_label``: its row in the per-phase table; ``healthy``:
    the healthy range shown beside it; ``long_name``: its name in a training log.
    """

    name: str
    audit: str
    long_name: str
    statistic: Statistic | None = None
    required: bool = True
    label: str | None = None
    healthy: Healthy | None = None
    rank: int = 100
    phase_label: str | None = None


@dataclass(frozen=True)
class Metric:
    """A recorded per-sample variable: its dims (``kind``), CF metadata, how it is computed and summarised.

    ``function``: what the recorders call for it (``None``: a built-in the recorders fill themselves, in one fused
    pass). ``curve``: the long name of its per-step curve in a training log (pair metrics get one by default).
    ``label`` / ``healthy`` / ``summary_long_name`` / ``rank``: its summary of the same name (see the module docstring).
    """

    name: str
    kind: str
    long_name: str
    units: str = "1"
    function: Callable[..., torch.Tensor] | None = None
    curve: str | None = None
    label: str | None = None
    healthy: Healthy | None = None
    summary_long_name: str | None = None
    rank: int = 100

    @property
    def dims(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    @property
    def curve_long_name(self) -> str | None:
        if self.curve is not None or self.kind != "pair":
            return self.curve
        return f"mean over samples of {self.long_name}"

    def summary(self) -> Summary | None:
        """The summary a labelled added metric brings: the mean of the variable, in the audits of its kind."""
        if self.label is None or self.kind not in ("pair", "model"):
            return None
        return Summary(self.name, "pair" if self.kind == "pair" else "teacher-free", self.summary_long_name or f"mean {self.long_name}",
                       mean_of(self.name), required=False, label=self.label, healthy=self.healthy, rank=self.rank)


def rho_band_text(th: Any) -> str:
    """The healthy rho band as a report prints it: ``0.8 - 1.25``, or ``>= 0.3`` where it has no top (the collapse
    rule's bar where that is the higher floor)."""
    if th.rho_high == float("inf"):
        return f">= {max(th.rho_low, th.collapsed_rho)}"
    return f"{th.rho_low} - {th.rho_high}"


def cosine_bar_text(th: Any) -> str:
    """``>= 0.8``, or ``off`` where the cosine rule is switched off (``min_cos`` = -1)."""
    return "off" if th.min_cos <= -1 else f">= {th.min_cos}"


def branch_bar_text(th: Any) -> str:
    """``<= 0.25``, or ``off`` where the branch-error rule is switched off (``max_rel_branch_error`` inf)."""
    return "off" if th.max_rel_branch_error == float("inf") else f"<= {th.max_rel_branch_error}"


# The built-in variables: name, kind, long name, and for pair metrics the long name of their per-step curve in a log.
_BUILTIN_METRICS = (
    ("gap_norm", "model", "RMS guidance gap RMS(eps_c - eps_u)", None),
    ("cond_norm", "model", "RMS of the conditional prediction", None),
    ("uncond_norm", "model", "RMS of the unconditional prediction", None),
    ("parallel_fraction", "model", "fraction of the gap parallel to eps_c (APG)", None),
    ("nonfinite", "model", "prediction contains NaN or Inf", None),
    ("gap_cos", "pair", "cosine between student and teacher guidance gaps",
     "mean over samples of the cosine between student and teacher gaps"),
    ("gap_mse", "pair", "mean squared difference of student and teacher guidance gaps",
     "mean over samples of the squared gap difference"),
    ("cond_error", "pair", "RMS conditional-branch error RMS(eps_c^S - eps_c^T)",
     "mean over samples of the RMS conditional-branch error"),
    ("uncond_error", "pair", "RMS unconditional-branch error RMS(eps_u^S - eps_u^T)",
     "mean over samples of the RMS unconditional-branch error"),
    ("guided_error", "pair", "RMS error of the guided prediction at w", "mean over samples of the RMS guided-prediction error"),
    ("amplification", "pair", "guided error at w over guided error at w=1", "mean over samples of guided error at w / at w=1"),
    ("divergence", "path", "RMS distance of free-running student and teacher states after the step",
     "mean over samples of the RMS free-running state distance"),
    ("guidance_response", "path", "RMS distance of the model's guided (w) and unguided (w=1) states after the step", None),
    ("probe_gap_norm", "model",
     "true-CFG probe of a guidance-distilled model: RMS(eps(prompt) - eps(null prompt)) at its w embedding", None),
    ("guidance_scale", "step", "classifier-free guidance scale w (1 = no guidance)", None),
    ("pred_cond", "full", "conditional prediction", None),
    ("pred_uncond", "full", "unconditional prediction", None),
    ("state", "full", "state x_t the model was evaluated at", None),
)
METRICS: Registry[Metric] = Registry("metric", ((name, Metric(name, kind, long_name, curve=curve))
                                             for name, kind, long_name, curve in _BUILTIN_METRICS))

_BUILTIN_SUMMARIES = (
    # a teacher and a student, in the order summarize() returns them
    Summary("rho", "pair", "rho = E|Delta_S| / E|Delta_T| (student / teacher mean guidance-gap RMS)",
            ratio_of("gap_norm@student", "gap_norm@teacher"), label="rho (gap size, S/T)", healthy=rho_band_text, rank=1,
            phase_label="rho"),
    Summary("cos_delta", "pair", "mean cosine of student and teacher guidance gaps", mean_of("gap_cos"), label="gap cosine",
            healthy=cosine_bar_text, rank=2, phase_label="gap cosine"),
    Summary("gap_mse", "pair", "mean squared difference of student and teacher guidance gaps", mean_of("gap_mse"),
            label="gap MSE", rank=5),
    Summary("cond_error", "pair", "mean RMS conditional-branch error", mean_of("cond_error")),
    Summary("uncond_error", "pair", "mean RMS unconditional-branch error", mean_of("uncond_error")),
    Summary("rel_cond_error", "pair", "conditional-branch error relative to the teacher's branch RMS",
            ratio_of("cond_error", "cond_norm@teacher"), label="cond error / teacher", healthy=branch_bar_text, rank=3,
            phase_label="cond error / T"),
    Summary("rel_uncond_error", "pair", "unconditional-branch error relative to the teacher's branch RMS",
            ratio_of("uncond_error", "uncond_norm@teacher"), label="uncond error / teacher", healthy=branch_bar_text, rank=4,
            phase_label="uncond error / T"),
    Summary("rel_guided_error", "pair", "guided-prediction error at w relative to the teacher's conditional-branch RMS",
            ratio_of("guided_error", "cond_norm@teacher"), label="guided error / teacher", rank=6,
            healthy=lambda th: "" if th.max_rel_guided_error is None else f"<= {th.max_rel_guided_error}",
            phase_label="guided error / T"),
    Summary("guided_error", "pair", "mean RMS error of the guided prediction", mean_of("guided_error"),
            label="guided error (RMS)", rank=7),
    Summary("amplification", "pair", "mean guided error at w over guided error at w=1", mean_of("amplification"),
            label="amplification by w", rank=8),
    Summary("divergence", "pair", "mean RMS distance of free-running student and teacher states", mean_of("divergence"),
            required=False, label="free-running divergence", rank=9),
    Summary("nonfinite", "pair", "fraction of samples with a NaN/Inf prediction", any_of("nonfinite"), required=False),
    # one model, teacher-free
    Summary("gap_norm", "teacher-free", "mean RMS guidance gap", mean_of("gap_norm"), label="gap (RMS)", rank=2),
    Summary("rel_gap", "teacher-free", "mean guidance gap over mean RMS of eps_c", ratio_of("gap_norm", "cond_norm"),
            label="gap / eps_c", healthy=lambda th: f">= {th.min_rel_gap}", rank=1, phase_label="gap / eps_c"),
    Summary("parallel_fraction", "teacher-free", "mean fraction of the gap parallel to eps_c", mean_of("parallel_fraction"),
            label="parallel fraction", rank=4),
    Summary("nonfinite", "teacher-free", "fraction of samples with a NaN/Inf prediction", any_of("nonfinite"), required=False),
    Summary("guidance_response", "teacher-free", "mean response of the samples to w at the last step",
            label="sample response to w", healthy=lambda th: f">= {th.min_guidance_response}", rank=3,
            phase_label="response to w at phase end"),
    # a guidance-distilled model: the teacher-free summaries of its (eps(w), eps(w = 1)) view, shown as its response to w
    Summary("response_to_w", "guidance-distilled", "response to w relative to RMS(eps(w))", label="response to w / eps(w)",
            healthy=lambda th: f">= {th.min_guidance_response}", rank=1),
    Summary("gap_norm", "guidance-distilled", "mean response to w RMS(eps(w) - eps(w=1))", label="response to w (RMS)", rank=2),
    Summary("probe_rel_gap", "guidance-distilled", "true-CFG probe: null-prompt gap relative to RMS(eps)",
            label="true-CFG: null gap / eps", rank=3),
    Summary("rel_gap", "guidance-distilled", "response to w relative to RMS(eps(w))", phase_label="response to w / eps(w)"),
)
SUMMARIES: dict[tuple[str, str], Summary] = {(s.audit, s.name): s for s in _BUILTIN_SUMMARIES}


def register_metric(entry: Metric) -> Metric:
    """Add a metric (and, with a ``label``, its summary); a name that is taken is refused. Returns ``entry``."""
    if isinstance(entry, Metric):
        if entry.kind not in KINDS:
            raise InputError(f"register_metric: expected kind in {sorted(KINDS)}, received {entry.kind!r}.")
        if entry.kind in ("model", "pair") and not callable(entry.function):
            raise InputError(f"register_metric: a {entry.kind!r} metric needs the function the recorders call; pass function=...")
        summary = entry.summary()
        if summary is not None and (summary.audit, summary.name) in SUMMARIES:
            raise InputError(f"register_metric: the {summary.audit} audits have a summary named {entry.name!r} already; "
                             "choose another name.")
    METRICS.add(getattr(entry, "name", ""), entry, Metric)
    summary = entry.summary()
    if summary is not None:
        SUMMARIES[summary.audit, summary.name] = summary
    return entry


def remove_metric(name: str) -> None:
    """Remove a metric added with :func:`register_metric` (and its summary); built-in metrics stay."""
    summary = METRICS.remove(name).summary()
    if summary is not None:
        SUMMARIES.pop((summary.audit, summary.name), None)


def metric(name: str) -> Metric:
    return METRICS[name]


def metrics_of(kind: str) -> list[Metric]:
    """The registered metrics of one kind, in registration order."""
    return [m for m in METRICS.values() if m.kind == kind]


def summaries(audit: str) -> list[Summary]:
    """The summary estimates of one kind of audit, in the order ``summarize`` returns them."""
    return [s for (kind, _), s in SUMMARIES.items() if kind == audit]


def report_rows(audit: str) -> list[Summary]:
    """The summaries the report shows for one kind of audit, in the table's order."""
    return sorted((s for s in summaries(audit) if s.label), key=lambda s: s.rank)


def _added(kind: str) -> Iterator[Metric]:
    return (m for m in METRICS.values() if m.kind == kind and m.name not in METRICS.builtin)


def model_values(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every registered ``"model"`` metric of one model's branches, each ``(B,)`` (built-ins in one fused pass)."""
    values = model_metrics(pred_cond, pred_uncond)
    values.update({m.name: m.function(pred_cond, pred_uncond) for m in _added("model")})
    return values


def pair_values(student_cond: torch.Tensor, student_uncond: torch.Tensor, teacher_cond: torch.Tensor,
                teacher_uncond: torch.Tensor, guidance_scale: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """Every registered ``"pair"`` metric of a student's branches against the teacher's, each ``(B,)``."""
    values = pair_metrics(student_cond, student_uncond, teacher_cond, teacher_uncond, guidance_scale)
    values.update({m.name: m.function(student_cond, student_uncond, teacher_cond, teacher_uncond, guidance_scale)
                   for m in _added("pair")})
    return values


class VariablesView(Mapping[str, Any]):
    """A read-only, always current view of the registry as ``name -> make(metric)`` (the Dataset schema's table)."""

    def __init__(self, make: Callable[[Metric], Any]) -> None:
        self._make = make

    def __getitem__(self, name: str) -> Any:
        return self._make(METRICS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(METRICS))

    def __len__(self) -> int:
        return len(METRICS)
