"""Verdicts from audit summaries (docs/design.md §2): the first rule that holds, in a fixed order, decides.

=================  ===========================================================================
verdict            rule (defaults in :class:`Thresholds`)
=================  ===========================================================================
``non-finite``     any NaN/Inf in any recorded prediction
``collapsed``      rho < 0.3
``miscalibrated``  rho outside [0.8, 1.25] or mean gap_cos < 0.8
``drifted``        gap fine, but cond_error or uncond_error relative to the teacher's branch RMS > 0.25
``healthy``        none of the above
=================  ===========================================================================

rho and cos alone cannot see a student whose two branches drift together (its gap is intact); the
per-branch errors close that null space. A teacher whose gap is zero leaves rho undefined (0/0) with every
prediction finite: that is ``inconclusive``, not ``non-finite``. Without a teacher only ``non-finite``,
``collapsed`` (a vanished gap) or ``inconclusive`` can be said. A guidance-distilled student (w is an input of the
model, LCM / Flux-dev) has no unconditional branch: it is ``guidance-distilled`` (or ``non-finite``), never
``collapsed`` (:func:`judge_guidance_distilled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from guidegap.errors import InputError
from guidegap.metrics.summary import Estimate

__all__ = ["VERDICTS", "Thresholds", "Finding", "judge_pair", "judge_single", "judge_guidance_distilled"]

VERDICTS = ("healthy", "miscalibrated", "collapsed", "drifted", "non-finite", "inconclusive", "guidance-distilled")


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds; defaults are docs/design.md §2's. ``min_rel_gap``/``min_guidance_response`` are teacher-free."""

    collapsed_rho: float = 0.3
    rho_low: float = 0.8
    rho_high: float = 1.25
    min_cos: float = 0.8
    max_rel_branch_error: float = 0.25
    min_rel_gap: float = 1e-3
    min_guidance_response: float = 1e-3

    def __post_init__(self) -> None:
        nan = [name for name, value in asdict(self).items() if value != value]
        if nan:
            raise InputError(f"expected numbers for the thresholds, received NaN for {', '.join(nan)}.")
        if self.min_rel_gap < 0 or self.min_guidance_response < 0:
            raise InputError(
                f"expected min_rel_gap >= 0 and min_guidance_response >= 0, received {self.min_rel_gap}, {self.min_guidance_response}."
            )
        if not 0 <= self.collapsed_rho <= self.rho_low <= 1 <= self.rho_high:
            raise InputError(
                f"expected 0 <= collapsed_rho <= rho_low <= 1 <= rho_high, received {self.collapsed_rho}, "
                f"{self.rho_low}, {self.rho_high}."
            )
        if not -1 <= self.min_cos <= 1 or self.max_rel_branch_error <= 0:
            raise InputError(f"expected -1 <= min_cos <= 1 and max_rel_branch_error > 0, received {self.min_cos}, {self.max_rel_branch_error}.")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Finding:
    """A verdict with the rule that decided it and every rule that fired (the evidence)."""

    verdict: str
    reason: str
    fired: list[str] = field(default_factory=list)


def _value(summary: Mapping[str, Estimate], name: str) -> float:
    estimate = summary.get(name)
    return float("nan") if estimate is None else float(estimate.value)


def judge_pair(summary: Mapping[str, Estimate], thresholds: Thresholds = Thresholds()) -> Finding:
    """Verdict for a teacher + student summary (from :func:`guidegap.metrics.summarize`)."""
    th = thresholds
    rho, cos = _value(summary, "rho"), _value(summary, "cos_delta")
    rel_c, rel_u = _value(summary, "rel_cond_error"), _value(summary, "rel_uncond_error")
    undefined = [name for name, v in (("rho", rho), ("gap cosine", cos), ("cond error", rel_c), ("uncond error", rel_u)) if v != v]
    recorded = "nonfinite" in summary
    if recorded and undefined and not _value(summary, "nonfinite") > 0:
        # Every prediction is finite, yet a ratio is 0/0: the teacher has no gap (or a zero branch) to compare with.
        return Finding(
            "inconclusive",
            f"{', '.join(undefined)} undefined although every prediction is finite: the teacher's guidance gap (or a "
            "branch) is zero, so there is nothing to compare the student with; check that the teacher is class-conditional "
            "and was trained with label dropout",
            ["inconclusive"],
        )
    # NaN compares False, so with undefined metrics only the non-finite rule can fire.
    rules: list[tuple[str, bool, str]] = [
        ("non-finite", _value(summary, "nonfinite") > 0 or (bool(undefined) and not recorded),
         "some predictions contain NaN or Inf"),
        ("collapsed", rho < th.collapsed_rho,
         f"rho = {rho:.3g} < {th.collapsed_rho}: the student's guidance gap has (nearly) vanished"),
        ("miscalibrated", rho < th.rho_low or rho > th.rho_high or cos < th.min_cos,
         f"rho = {rho:.3g} (healthy {th.rho_low}-{th.rho_high}), gap cosine = {cos:.3g} (healthy >= {th.min_cos})"),
        ("drifted", max(rel_c, rel_u) > th.max_rel_branch_error,
         f"branch errors relative to the teacher: cond {rel_c:.3g}, uncond {rel_u:.3g} (healthy <= {th.max_rel_branch_error})"),
    ]
    fired = [name for name, holds, _ in rules if holds]
    for name, holds, reason in rules:
        if holds:
            return Finding(name, reason, fired)
    return Finding("healthy", f"rho = {rho:.3g}, gap cosine = {cos:.3g}, branch errors cond {rel_c:.3g} / uncond {rel_u:.3g}", fired)


def judge_single(summary: Mapping[str, Estimate], guidance_response: float, thresholds: Thresholds = Thresholds()) -> Finding:
    """Teacher-free verdict: only a vanished gap (or NaN/Inf) can be called; the rest is ``inconclusive``."""
    th = thresholds
    rel_gap = _value(summary, "rel_gap")
    if _value(summary, "nonfinite") > 0 or rel_gap != rel_gap:
        return Finding("non-finite", "some predictions contain NaN or Inf", ["non-finite"])
    vanished = rel_gap < th.min_rel_gap
    inert = guidance_response < th.min_guidance_response
    if vanished or inert:
        fired = ["collapsed"]
        return Finding("collapsed", f"gap / eps_c = {rel_gap:.3g} (< {th.min_rel_gap}) or the samples' response to w = "
                       f"{guidance_response:.3g} (< {th.min_guidance_response}): guidance does nothing", fired)
    return Finding(
        "inconclusive",
        f"the gap is present (gap / eps_c = {rel_gap:.3g}) and samples respond to w ({guidance_response:.3g}), "
        "but without a teacher neither its size nor its direction can be checked",
    )


def judge_guidance_distilled(reason: str, summary: Mapping[str, Estimate], guidance_scale: float,
                             thresholds: Thresholds = Thresholds()) -> Finding:
    """Verdict for a model that takes w as an input: ``non-finite``, else ``guidance-distilled`` with what was measured.

    ``summary`` is that of its response recording: ``rel_gap`` = RMS(eps(w) - eps(w=1)) / RMS(eps(w)) and, with the
    true-CFG probe, ``probe_rel_gap`` = RMS(eps(prompt) - eps(null)) / RMS(eps(prompt)) at the same w embedding.
    """
    if _value(summary, "nonfinite") > 0:
        return Finding("non-finite", "some predictions contain NaN or Inf", ["non-finite"])
    response = _value(summary, "rel_gap")
    text = f"{reason}; its prediction at w = {guidance_scale:g} differs from that at w = 1 by {response:.3g} of its RMS"
    if response < thresholds.min_guidance_response:
        text += f" (< {thresholds.min_guidance_response}: the guidance embedding has almost no effect)"
    probe = _value(summary, "probe_rel_gap")
    if probe == probe:
        text += f"; true-CFG probe: the null-prompt branch differs by {probe:.3g} of the prediction's RMS"
    return Finding("guidance-distilled", text, ["guidance-distilled"])
