"""Plain-text rendering of an audit report for the terminal (80 columns, no colour codes needed)."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Protocol

import numpy as np
import xarray as xr

from guidegap.auditing.judge import thresholds_for
from guidegap.auditing.verdicts import BORDERLINE, VALIDATED_GUIDANCE_SCALE, Finding, Thresholds, verdict_record
from guidegap.metrics.registry import report_rows, summaries
from guidegap.metrics.summary import Estimate
from guidegap.results.schema import is_probe

__all__ = ["Report", "render_report", "per_prompt"]


class Report(Protocol):
    """What the text needs of a :class:`guidegap.AuditReport`, which renders itself with this module."""

    finding: Finding
    summary: dict[str, Estimate]
    phases: list[dict[str, Any]]
    dataset: xr.Dataset
    thresholds: Thresholds

    @property
    def verdict(self) -> str: ...

    @property
    def has_teacher(self) -> bool: ...

    @property
    def borderline(self) -> bool: ...

    @property
    def guidance_validated(self) -> bool | None: ...

    @property
    def explanation(self) -> str: ...

    @property
    def suggestion(self) -> str: ...

    def where(self, verdict: str | None = None) -> list[str]: ...

    def nonfinite_timesteps(self) -> list[float]: ...


def _fmt(value: float) -> str:
    if value != value:
        return "nan"
    return f"{value:.3g}"


def _models(report: Report) -> list[str]:
    config = json.loads(report.dataset.attrs["config"])
    lines = []
    for role in ("student", "teacher"):
        source = report.dataset.attrs.get(role) or ""
        if role == "teacher" and not report.has_teacher:
            lines.append(f"  teacher  {source} (not compared: the student is guidance-distilled)" if source
                         else "  teacher  none (teacher-free audit)")
            continue
        models: dict[str, Any] = config["models"]
        # Teacher-free audits stored before guidegap recorded them as such list the student under "teacher".
        desc = models.get("teacher" if not report.has_teacher and "teacher" in models else role, {})
        params = desc.get("num_parameters")
        name = desc.get("name", "?")
        details = ", ".join(([name] if source and source != name else []) + ([f"{params / 1e6:.2f}M parameters"] if params else []))
        lines.append(f"  {role:<8} {source or name}" + (f" ({details})" if details else ""))
    return lines


def _audit(report: Report) -> str:
    """Which of the registry's audits (:data:`guidegap.metrics.registry.AUDITS`) the report is of."""
    if "guidance_distilled" in report.dataset.attrs:
        return "guidance-distilled"
    return "pair" if report.has_teacher else "teacher-free"


def _phase_table(report: Report) -> list[str]:
    """Per-phase numbers (and, with a teacher, the rules that fire in each phase), columns sized to fit."""
    keys = [(entry.name, entry.phase_label) for entry in summaries(_audit(report)) if entry.phase_label]
    table = [["by noise level (t)" if is_probe(report.dataset) else "along the trajectory", *(f"{p['phase']} (t {_fmt(p['timesteps'][0])}-{_fmt(p['timesteps'][1])})" for p in report.phases)]]
    table += [[f"  {label}", *(_fmt(p["summary"].get(key, float("nan"))) for p in report.phases)] for key, label in keys]
    if report.has_teacher:
        table.append(["  rules that fire", *(", ".join(p["fired"]) or "-" for p in report.phases)])
    widths = [max(len(row[i]) for row in table) + 3 for i in range(len(table[0]))]
    return ["  " + "".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]


_MAX_PROMPT_ROWS = 10  # the lowest and highest five of longer prompt sets


def _prompt_table(report: Report) -> list[str]:
    """One line per prompt, lowest value first: the report names prompts where class audits name classes."""
    label = "rho" if report.has_teacher else "gap / eps_c"
    if "guidance_distilled" in report.dataset.attrs:
        label = "response to w / eps(w)"
    rows = sorted(per_prompt(report), key=lambda row: row[1])
    shown = rows if len(rows) <= _MAX_PROMPT_ROWS else rows[:_MAX_PROMPT_ROWS // 2] + [None] + rows[-(_MAX_PROMPT_ROWS // 2):]
    lines = [f"  by prompt ({label}, lowest first)"]
    lines += [f"    {_fmt(row[1]):>7}  {textwrap.shorten(row[0], 80)}" if row else
              f"    {'...':>7}  ({len(rows) - _MAX_PROMPT_ROWS} more)" for row in shown]
    return lines + [""]


def per_prompt(report: Report) -> list[tuple[str, float]]:
    """``(prompt, value)`` per audited prompt: rho with a teacher, else the gap (or response) relative to eps_c."""
    ds = report.dataset
    prompts = json.loads(ds.attrs["prompts"])
    labels = np.asarray(ds["label"].values)
    out = []
    for index, prompt in enumerate(prompts):
        rows = ds.isel(sample=np.flatnonzero(labels == index))
        if rows.sizes["sample"] == 0:
            continue
        if report.has_teacher:
            gap = rows["gap_norm"].mean(("sample", "step"))
            value = float(gap.sel(model="student") / gap.sel(model="teacher"))
        else:
            one = rows.isel(model=0)
            value = float(one["gap_norm"].mean() / one["cond_norm"].mean())
        out.append((prompt, value))
    return out


def render_report(report: Report) -> str:
    ds, th = report.dataset, report.thresholds
    judged = thresholds_for(ds, th)  # a data probe's misguided rule takes its own bar
    config = json.loads(ds.attrs["config"])
    guidance = config["guidance"]
    w = guidance.get("scale", guidance.get("kind"))
    probe = is_probe(ds)
    lines = ["guidegap audit", *_models(report)]
    distilled = "guidance_distilled" in ds.attrs
    if distilled:
        w = ds.attrs["audited_guidance_scale"]
        how = "guidance-distilled: eps(w) vs eps(w = 1) along its own path"
    elif not report.has_teacher:
        how = "guided vs. unguided (w = 1) from the same noise"
    elif ds.attrs.get("mode") == "pipeline":
        how = "free-running pipelines from the same seed"
    else:
        how = "teacher-forced" + (", with free-running divergence" if config.get("divergence", True) else "")
    if probe:
        lines.append(f"  {config['num_samples']} held-out images noised at uniform t (data probe, DASH's protocol), w = {w}, "
                     f"seed {config['seed']}")
    else:
        sched = config["scheduler"]["class"].replace("Scheduler", "")
        lines.append(f"  {config['num_samples']} samples x {ds.sizes['step']} {sched} steps, w = {w}, seed {config['seed']}; {how}")
    if "mode_reason" in ds.attrs:
        lines.append(f"  mode: {ds.attrs['mode_reason']}")
    if "prompts" in ds.attrs:
        nulls = json.loads(ds.attrs.get("null_condition", "{}"))
        lines.append(f"  {len(json.loads(ds.attrs['prompts']))} prompts; null branch: "
                     + "; ".join(f"{role} {text}" for role, text in nulls.items()))
    lines.append("")
    level = int(round(next(iter(report.summary.values())).level * 100))
    lines.append(f"  {'metric':<26}{'value':>9}  {f'{level}% CI':<20}healthy")
    for entry in report_rows(_audit(report)):
        if entry.name not in report.summary:
            continue
        est = report.summary[entry.name]
        ci = f"[{_fmt(est.low)}, {_fmt(est.high)}]"
        healthy = entry.healthy(judged) if entry.healthy else ""
        lines.append(f"  {entry.label:<26}{_fmt(est.value):>9}  {ci:<20}{healthy}".rstrip())
    lines.append("")
    if "prompts" in ds.attrs:
        lines.extend(_prompt_table(report))
    lines.extend(_phase_table(report))
    lines.append("")
    lines.append(f"VERDICT: {report.verdict.upper()} — {report.finding.reason}")
    where = report.where()
    if report.verdict == "non-finite":
        steps = report.nonfinite_timesteps()
        of = f"{len(steps)} distinct t" if probe else f"{len(steps)} of {ds.sizes['step']} steps"
        where_text = f" NaN/Inf first at timestep {_fmt(steps[0])} ({of})." if steps else ""
    elif verdict_record(report.verdict).located and where:
        where_text = f" It shows in the {', '.join(where)} {'thirds of t' if probe else 'steps'}."
    else:
        where_text = ""
    lines.extend(textwrap.wrap(report.explanation + where_text, width=100))
    lines.extend(textwrap.wrap("Suggested fix: " + report.suggestion, width=100))
    if report.borderline:
        lines.extend(textwrap.wrap(
            f"Borderline: the guided error ({_fmt(report.summary['rel_guided_error'].value)}) is within {BORDERLINE:.0%} of "
            f"its bar ({judged.max_rel_guided_error:g}), where most of the detector validation's misses lay (docs/design.md §6); compare samples at w "
            "with the teacher's before acting on this verdict.", width=100))
    if report.guidance_validated is False:
        lines.extend(textwrap.wrap(
            f"Guidance: the guided-error bar was fitted and validated at constant w = {VALIDATED_GUIDANCE_SCALE:g}; at "
            "DASH's TAG schedule it predicted the outcome markedly less often, and other schedules are not measured "
            "(docs/design.md §6): weigh this verdict accordingly.", width=100))
    return "\n".join(lines)
