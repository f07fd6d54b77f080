"""Plain-text rendering of an audit report for the terminal (80 columns, no colour codes needed)."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guidegap.auditing.report import AuditReport

__all__ = ["render_report"]

# (summary key, label, healthy range text from thresholds)
_PAIR_ROWS = (
    ("rho", "rho (gap size, S/T)", lambda th: f"{th.rho_low} - {th.rho_high}"),
    ("cos_delta", "gap cosine", lambda th: f">= {th.min_cos}"),
    ("rel_cond_error", "cond error / teacher", lambda th: f"<= {th.max_rel_branch_error}"),
    ("rel_uncond_error", "uncond error / teacher", lambda th: f"<= {th.max_rel_branch_error}"),
    ("gap_mse", "gap MSE", lambda th: ""),
    ("guided_error", "guided error (RMS)", lambda th: ""),
    ("amplification", "amplification by w", lambda th: ""),
    ("divergence", "free-running divergence", lambda th: ""),
)
_SINGLE_ROWS = (
    ("rel_gap", "gap / eps_c", lambda th: f">= {th.min_rel_gap}"),
    ("gap_norm", "gap (RMS)", lambda th: ""),
    ("guidance_response", "sample response to w", lambda th: f">= {th.min_guidance_response}"),
    ("parallel_fraction", "parallel fraction", lambda th: ""),
)
_DISTILLED_ROWS = (
    ("response_to_w", "response to w / eps(w)", lambda th: f">= {th.min_guidance_response}"),
    ("gap_norm", "response to w (RMS)", lambda th: ""),
    ("probe_rel_gap", "true-CFG: null gap / eps", lambda th: ""),
)
_PHASE_ROWS_DISTILLED = (("rel_gap", "response to w / eps(w)"),)
_PHASE_ROWS_PAIR = (("rho", "rho"), ("cos_delta", "gap cosine"), ("rel_cond_error", "cond error / T"), ("rel_uncond_error", "uncond error / T"))
_PHASE_ROWS_SINGLE = (("rel_gap", "gap / eps_c"), ("guidance_response", "response to w at phase end"))


def _fmt(value: float) -> str:
    if value != value:
        return "nan"
    return f"{value:.3g}"


def _models(report: "AuditReport") -> list[str]:
    config = json.loads(report.dataset.attrs["config"])
    lines = []
    for role in ("student", "teacher"):
        source = report.dataset.attrs.get(role) or ""
        desc: dict[str, Any] = config["models"].get(role if report.has_teacher or role == "teacher" else "teacher", {})
        if role == "teacher" and not report.has_teacher:
            lines.append(f"  teacher  {source} (not compared: the student is guidance-distilled)" if source
                         else "  teacher  none (teacher-free audit)")
            continue
        desc = desc or config["models"].get(role, {})
        params = desc.get("num_parameters")
        name = desc.get("name", "?")
        details = ", ".join(([name] if source and source != name else []) + ([f"{params / 1e6:.2f}M parameters"] if params else []))
        lines.append(f"  {role:<8} {source or name}" + (f" ({details})" if details else ""))
    return lines


def _phase_table(report: "AuditReport") -> list[str]:
    """Per-phase numbers (and, with a teacher, the rules that fire in each phase), columns sized to fit."""
    keys = _PHASE_ROWS_PAIR if report.has_teacher else _PHASE_ROWS_SINGLE
    if "guidance_distilled" in report.dataset.attrs:
        keys = _PHASE_ROWS_DISTILLED
    table = [["along the trajectory", *(f"{p['phase']} (t {_fmt(p['timesteps'][0])}-{_fmt(p['timesteps'][1])})" for p in report.phases)]]
    table += [[f"  {label}", *(_fmt(p["summary"].get(key, float("nan"))) for p in report.phases)] for key, label in keys]
    if report.has_teacher:
        table.append(["  rules that fire", *(", ".join(p["fired"]) or "-" for p in report.phases)])
    widths = [max(len(row[i]) for row in table) + 3 for i in range(len(table[0]))]
    return ["  " + "".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]


_MAX_PROMPT_ROWS = 10  # the lowest and highest five of longer prompt sets


def _prompt_table(report: "AuditReport") -> list[str]:
    """One line per prompt, lowest value first: the report names prompts where class audits name classes."""
    from guidegap.pipelines.text_audit import per_prompt

    label = "rho" if report.has_teacher else "gap / eps_c"
    if "guidance_distilled" in report.dataset.attrs:
        label = "response to w / eps(w)"
    rows = sorted(per_prompt(report), key=lambda row: row[1])
    shown = rows if len(rows) <= _MAX_PROMPT_ROWS else rows[:_MAX_PROMPT_ROWS // 2] + [None] + rows[-(_MAX_PROMPT_ROWS // 2):]
    lines = [f"  by prompt ({label}, lowest first)"]
    lines += [f"    {_fmt(row[1]):>7}  {textwrap.shorten(row[0], 80)}" if row else
              f"    {'...':>7}  ({len(rows) - _MAX_PROMPT_ROWS} more)" for row in shown]
    return lines + [""]


def render_report(report: "AuditReport") -> str:
    ds, th = report.dataset, report.thresholds
    config = json.loads(ds.attrs["config"])
    guidance = config["guidance"]
    w = guidance.get("scale", guidance.get("kind"))
    sched = config["scheduler"]["class"].replace("Scheduler", "")
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
        how = "teacher-forced, with free-running divergence"
    lines.append(f"  {config['num_samples']} samples x {ds.sizes['step']} {sched} steps, w = {w}, seed {config['seed']}; {how}")
    if "prompts" in ds.attrs:
        nulls = json.loads(ds.attrs.get("null_condition", "{}"))
        lines.append(f"  {len(json.loads(ds.attrs['prompts']))} prompts; null branch: "
                     + "; ".join(f"{role} {text}" for role, text in nulls.items()))
    lines.append("")
    rows = _DISTILLED_ROWS if distilled else _PAIR_ROWS if report.has_teacher else _SINGLE_ROWS
    level = int(round(next(iter(report.summary.values())).level * 100))
    lines.append(f"  {'metric':<26}{'value':>9}  {f'{level}% CI':<20}healthy")
    for key, label, healthy in rows:
        if key not in report.summary:
            continue
        est = report.summary[key]
        ci = f"[{_fmt(est.low)}, {_fmt(est.high)}]"
        lines.append(f"  {label:<26}{_fmt(est.value):>9}  {ci:<20}{healthy(th)}".rstrip())
    lines.append("")
    if "prompts" in ds.attrs:
        lines.extend(_prompt_table(report))
    lines.extend(_phase_table(report))
    lines.append("")
    lines.append(f"VERDICT: {report.verdict.upper()} — {report.finding.reason}")
    where = report.where()
    if report.verdict == "non-finite":
        steps = report.nonfinite_timesteps()
        where_text = f" NaN/Inf first at timestep {_fmt(steps[0])} ({len(steps)} of {ds.sizes['step']} steps)." if steps else ""
    elif report.verdict not in ("healthy", "inconclusive") and where:
        where_text = f" It shows in the {', '.join(where)} steps."
    else:
        where_text = ""
    lines.extend(textwrap.wrap(report.explanation + where_text, width=100))
    lines.extend(textwrap.wrap("Suggested fix: " + report.suggestion, width=100))
    return "\n".join(lines)
