"""The one judge (docs/design.md §2): a recorded Dataset and thresholds give the summary, the finding and its evidence.

``guidegap.audit``, :meth:`AuditReport.from_dataset`, ``ds.guidegap.verdict()``, ``guidegap.pipelines.record_pair``
and the audits of guidance-distilled students all judge a Dataset through :func:`judge` and stamp it with
:func:`stamp`; a GuidanceMonitor's training log, which stores summaries rather than recordings, through
:func:`judge_log`. Which rules apply follows from the Dataset (:func:`audit_kind`): a teacher and a student
(``judge_pair``), one model with its response to guidance (teacher-free, ``judge_teacher_free``), or a model that takes w as
an input (``judge_guidance_distilled``). The phases split the sampling steps into thirds and judge each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from guidegap.auditing.verdicts import Finding, Thresholds, judge_guidance_distilled, judge_pair, judge_teacher_free
from guidegap.errors import InputError
from guidegap.metrics.summary import Estimate, bootstrap, mean, ratio_of_means, summarize
from guidegap.results.schema import is_probe, seed_of
from guidegap.results.training_log import TRAINING_STEP, is_probe_log, require_log

__all__ = ["Judgement", "PHASES", "audit_kind", "judge", "stamp", "phase_findings", "guidance_response_estimate",
           "thresholds_of", "thresholds_for", "judge_log"]

PHASES = ("early", "middle", "late")


@dataclass
class Judgement:
    """What :func:`judge` finds: the verdict with its rule, the summary it was decided on, and the per-phase findings."""

    finding: Finding
    summary: dict[str, Estimate]
    phases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.finding.verdict


def thresholds_of(ds: xr.Dataset) -> Thresholds:
    """The thresholds stored in ``ds.attrs['thresholds']`` (JSON), else the docs/design.md §2 defaults."""
    text = ds.attrs.get("thresholds")
    return Thresholds(**json.loads(text)) if text else Thresholds()


def thresholds_for(ds: xr.Dataset, thresholds: Thresholds) -> Thresholds:
    """The thresholds ``ds`` is judged by: a data probe's misguided rule takes its own bar (:meth:`Thresholds.for_probe`)."""
    return thresholds.for_probe() if is_probe(ds) else thresholds


def audit_kind(ds: xr.Dataset) -> str:
    """``"pair"`` (teacher and student), ``"guidance-distilled"`` (w is a model input) or ``"teacher-free"``."""
    if ds.sizes.get("model", 1) > 1:
        return "pair"
    if "guidance_distilled" in ds.attrs:
        return "guidance-distilled"
    if "guidance_response" not in ds:
        raise InputError("expected a teacher-free audit Dataset with 'guidance_response' (or a recording of a teacher and a "
                         "student), received a one-model recording without it; audit it with guidegap.audit(student) "
                         "(guidegap audit --out writes it) or record it with a teacher.")
    return "teacher-free"


def judge(ds: xr.Dataset, thresholds: Thresholds | None = None, *, n_boot: int = 1000, seed: int | None = None,
          phases: bool = True) -> Judgement:
    """Summarise ``ds`` (bootstrap CIs, ``seed`` default: the recording's) and judge it with ``thresholds``.

    ``phases=False`` skips the per-phase findings (a verdict alone, as ``ds.guidegap.verdict()`` needs).
    """
    thresholds = thresholds_for(ds, thresholds or Thresholds())
    seed = seed_of(ds) if seed is None else int(seed)
    kind = audit_kind(ds)
    summary = summarize(ds, n_boot=n_boot, seed=seed)
    if kind == "pair":
        finding = judge_pair(summary, thresholds)
    elif kind == "guidance-distilled":
        summary["response_to_w"] = summary["rel_gap"]  # the recorder's relative gap of the view is the response to w
        if "probe_gap_norm" in ds:
            one = ds.isel(model=0)
            probe, norm = (one[name].mean("step").values for name in ("probe_gap_norm", "cond_norm"))
            summary["probe_rel_gap"] = bootstrap(ratio_of_means, probe, norm, n_boot=n_boot, seed=seed)
        finding = judge_guidance_distilled(str(ds.attrs["guidance_distilled"]), summary,
                                           float(ds.attrs["audited_guidance_scale"]), thresholds)
    else:
        finding = judge_teacher_free(summary, float(ds["guidance_response"].isel(step=-1).mean()), thresholds)
        summary["guidance_response"] = guidance_response_estimate(ds, n_boot, seed)
    found = phase_findings(ds, thresholds, kind == "pair", seed) if phases else []  # (for_probe twice is for_probe once)
    return Judgement(finding, summary, found)


def stamp(ds: xr.Dataset, judgement: Judgement, thresholds: Thresholds, **sources: str) -> None:
    """Write the verdict, its rule, the thresholds, ``sources`` (``student=``, ``teacher=``) and the summary to ``ds.attrs``."""
    ds.attrs.update(
        verdict=judgement.finding.verdict,
        verdict_reason=judgement.finding.reason,
        thresholds=json.dumps(thresholds.to_dict()),
        **sources,
        summary=json.dumps({k: v.to_dict() for k, v in judgement.summary.items()}),
    )


def phase_findings(ds: xr.Dataset, thresholds: Thresholds, pair: bool, seed: int = 0) -> list[dict[str, Any]]:
    """Split the steps into early / middle / late thirds and judge each (where along the trajectory it breaks); a data
    probe, which has no steps, into thirds of the training timesteps (early: the noisiest)."""
    out = []
    thresholds = thresholds_for(ds, thresholds)
    for name, part, steps, timesteps in _phases(ds):
        summary = summarize(part, n_boot=200, seed=seed)
        # Teacher-free, a phase is not judged: the gap legitimately shrinks once the class is decided.
        finding = judge_pair(summary, thresholds) if pair else None
        values = {k: v.value for k, v in summary.items()}
        if "guidance_response" in part:
            values["guidance_response"] = float(part["guidance_response"].isel(step=-1).mean())
        out.append({
            "phase": name,
            "steps": steps,
            "timesteps": timesteps,
            "verdict": finding.verdict if finding else "",
            "fired": finding.fired if finding else [],
            "summary": values,
        })
    return out


def _phases(ds: xr.Dataset) -> list[tuple[str, xr.Dataset, list[int] | None, list[float]]]:
    """Each phase's ``(name, part of ds, [first, last] step or None, [first, last] timestep)``: thirds of the steps,
    or for a probe thirds of the training timesteps (a third with under two samples is left out)."""
    if not is_probe(ds):
        bounds = np.linspace(0, ds.sizes["step"], len(PHASES) + 1).round().astype(int)
        parts = [(name, ds.isel(step=slice(int(lo), int(hi))), [int(lo), int(hi) - 1])
                 for name, lo, hi in zip(PHASES, bounds[:-1], bounds[1:]) if hi > lo]
        return [(name, part, steps, [float(part["timestep"].values[0]), float(part["timestep"].values[-1])])
                for name, part, steps in parts]
    train_steps = int(json.loads(ds.attrs.get("config", "{}")).get("noise_schedule", {}).get("num_train_timesteps", 1000))
    t = np.asarray(ds["timestep"].values, dtype=np.float64)
    bounds = np.linspace(train_steps, 0, len(PHASES) + 1)
    rows = [(name, np.flatnonzero((t >= low) & (t < high))) for name, high, low in zip(PHASES, bounds[:-1], bounds[1:])]
    return [(name, ds.isel(sample=index), None, [float(t[index].max()), float(t[index].min())])
            for name, index in rows if len(index) >= 2]


def guidance_response_estimate(ds: xr.Dataset, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Teacher-free: the samples' response to w at the end of the trajectory, mean over samples with a CI."""
    values = np.asarray(ds["guidance_response"].isel(step=-1).values, dtype=np.float64)
    return bootstrap(mean, values, n_boot=n_boot, seed=seed)


def judge_log(log: xr.Dataset, thresholds: Thresholds | None = None, caller: str = "judge_log") -> xr.DataArray:
    """The verdict of every check of a training log, recomputed from the summaries it stores (each ``<name>`` with its
    ``<name>_ci``) with ``thresholds`` (default: the log's); ``caller`` names the function in the error for a non-log."""
    require_log(log, caller)
    th = thresholds if thresholds is not None else thresholds_of(log)
    th = th.for_probe() if is_probe_log(log) else th  # a data-probe log is judged as guidegap.audit judges a probe
    names = [str(n) for n in log.data_vars if f"{n}_ci" in log]
    if th.max_rel_guided_error is not None and "rel_guided_error" not in names:
        import warnings

        warnings.warn("this training log has no rel_guided_error (it began before guidegap recorded it), so the misguided "
                      "rule's bar cannot be applied to it; its verdicts are those of the other rules.", UserWarning, stacklevel=3)
    verdicts = []
    for i in range(log.sizes[TRAINING_STEP]):
        row = log.isel({TRAINING_STEP: i})
        summary = {}
        for name in names:
            low, high = (float(v) for v in row[f"{name}_ci"].values)
            summary[name] = Estimate(float(row[name]), low, high, float(log[name].attrs.get("ci_level", 0.95)))
        verdicts.append(judge_pair(summary, th).verdict)
    return xr.DataArray(np.array(verdicts, dtype=object), coords={TRAINING_STEP: log[TRAINING_STEP]}, dims=TRAINING_STEP,
                        name="verdict", attrs={"long_name": "guidegap verdict (recomputed)", "units": "1"})
