"""Verdicts from audit summaries (docs/design.md §2): the first rule that holds, in a fixed order, decides.

=================  ===========================================================================
verdict            rule (defaults in :class:`Thresholds`, the ``evidence`` rule set)
=================  ===========================================================================
``non-finite``     any NaN/Inf in any recorded prediction, or on the student's own (free-running) path
``collapsed``      rho < 0.3
``miscalibrated``  rho outside [rho_low, rho_high] or mean gap_cos < min_cos (off by default; ``design``: [0.8, 1.25], 0.8)
``drifted``        cond_error or uncond_error relative to the teacher's branch RMS > max_rel_branch_error
                   (off by default; ``design``: 0.25)
``misguided``      guided error at w relative to the teacher's cond-branch RMS > 0.353 along trajectories,
                   > 0.189 in a data probe (``design``: off)
``healthy``        none of the above
=================  ===========================================================================

The defaults are the rule set that predicted on real students whether guidance acts as on the teacher
(docs/design.md §6, ``analyses/detector_validation.py``); ``design`` keeps the rules first set by design reachable.
rho and cos alone cannot see a student whose two branches drift together (its gap is intact); the
per-branch errors close that null space. A teacher whose gap (or a branch) is zero leaves rho undefined (0/0, or
x/0 when the student's is not) with every prediction finite: that is ``inconclusive``, not ``non-finite`` or
``miscalibrated``. Without a teacher only ``non-finite``,
``collapsed`` (a vanished gap) or ``inconclusive`` can be said. A guidance-distilled student (w is an input of the
model, LCM / Flux-dev) has no unconditional branch: it is ``guidance-distilled`` (or ``non-finite``), never
``collapsed`` (:func:`judge_guidance_distilled`).

Each verdict is one :class:`Verdict` record: its rule for a teacher-and-student audit (the reason when it holds),
its place among the rules (``precedence``), the explanation and the fix the report gives, and its colour in the
training-log figures. :func:`register_verdict` adds one; the report, the CLI's ``--fail-on``, the accessor and
the figures follow.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from guidegap._registry import Registry
from guidegap.errors import InputError
from guidegap.metrics.summary import Estimate

__all__ = ["VERDICTS", "VERDICT_RECORDS", "RULE_SETS", "BORDERLINE", "VALIDATED_GUIDANCE_SCALE", "validated_guidance", "borderline_guided_error", "Verdict", "Values", "Thresholds", "Finding", "register_verdict", "remove_verdict",
           "verdict_record", "parse_fail_on", "judge_pair", "judge_teacher_free", "judge_guidance_distilled", "judge_single"]


_UPPER_BARS = ("rho_high", "max_rel_branch_error")  # bars whose None (null in a report's JSON) means no bar
_GUIDED_BARS = {"max_rel_guided_error": "the misguided rule off",  # the misguided rule's bars, where None means something
                "max_rel_guided_error_probe": "a data probe takes max_rel_guided_error"}


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds. The defaults are the ``evidence`` rule set (docs/design.md §6): the collapse rule and the
    misguided rule, with the bars fitted on the Fashion-MNIST detector-validation population; the rho band, cosine and
    branch-error rules are off (at their floors). ``min_rel_gap``/``min_guidance_response`` are teacher-free."""

    collapsed_rho: float = 0.3
    rho_low: float = 0.3  # at collapsed_rho: the band's low side is off (the collapse rule decides there)
    rho_high: float = math.inf
    min_cos: float = -1.0
    max_rel_branch_error: float = math.inf
    max_rel_guided_error: float | None = 0.353  # the misguided rule; None turns it off (docs/design.md §2)
    # The misguided bar of a data-probe audit; None: the same as max_rel_guided_error, inf: off for probes. On noised
    # data at uniform t the guided error is on another scale than along guided trajectories (docs/design.md §6).
    max_rel_guided_error_probe: float | None = 0.189
    min_rel_gap: float = 1e-3
    min_guidance_response: float = 1e-3

    def __post_init__(self) -> None:
        # An upper bar of None (as a report's JSON writes an infinite one) is no bar; the misguided rule's None is "off".
        for name in _UPPER_BARS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, math.inf)
        if self.max_rel_guided_error == math.inf:  # an infinite bar never fires: the rule is off
            object.__setattr__(self, "max_rel_guided_error", None)
        unset = [name for name, value in asdict(self).items() if value is None and name not in _GUIDED_BARS]
        if unset:
            raise InputError(f"expected numbers for the thresholds, received None for {', '.join(unset)}; a lower bar is "
                             "switched off by its floor (rho_low=collapsed_rho, min_cos=-1), not by None.")
        nan = [name for name, value in asdict(self).items() if value is not None and value != value]
        if nan:
            raise InputError(f"expected numbers for the thresholds, received NaN for {', '.join(nan)}.")
        if self.min_rel_gap < 0 or self.min_guidance_response < 0:
            raise InputError(
                f"expected min_rel_gap >= 0 and min_guidance_response >= 0, received {self.min_rel_gap}, {self.min_guidance_response}."
            )
        # rho_low at or below collapsed_rho switches the band's low side off (the collapse rule, which runs first,
        # already decides there), so raising collapsed_rho alone never makes a set invalid.
        if not (0 <= self.collapsed_rho <= 1 and 0 <= self.rho_low <= 1 <= self.rho_high):
            raise InputError(
                f"expected 0 <= collapsed_rho <= 1 and 0 <= rho_low <= 1 <= rho_high, received {self.collapsed_rho}, "
                f"{self.rho_low}, {self.rho_high}."
            )
        if not -1 <= self.min_cos <= 1 or self.max_rel_branch_error <= 0:
            raise InputError(f"expected -1 <= min_cos <= 1 and max_rel_branch_error > 0, received {self.min_cos}, {self.max_rel_branch_error}.")
        for name in _GUIDED_BARS:
            bar = getattr(self, name)
            if bar is not None and not bar > 0:
                raise InputError(f"expected {name} > 0 (None: {_GUIDED_BARS[name]}), received {bar}.")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def for_probe(self) -> "Thresholds":
        """The thresholds a data-probe audit is judged by: the misguided rule takes ``max_rel_guided_error_probe``
        where that is set (the rest is the same)."""
        if self.max_rel_guided_error_probe is None:
            return self
        return replace(self, max_rel_guided_error=self.max_rel_guided_error_probe)

    @classmethod
    def named(cls, name: str | None, **overrides: float | None) -> "Thresholds":
        """A named rule set (:data:`RULE_SETS`; ``None``: the defaults) with ``overrides`` on top, e.g.
        ``Thresholds.named("design")``; an unknown set or threshold name is one-line refused."""
        if name is not None and name not in RULE_SETS:
            raise InputError(f"expected a rule set from {', '.join(RULE_SETS)}, received {name!r}.")
        known = sorted(f.name for f in fields(cls))
        unknown = [key for key in overrides if key not in known]
        if unknown:
            raise InputError(f"unknown threshold {unknown[0]!r}; expected one of {', '.join(known)}.")
        return cls(**{**(RULE_SETS[name] if name is not None else {}), **overrides})


# Named rule sets, each the thresholds that differ from the dataclass defaults. "evidence": the defaults, chosen
# on the detector validation's training part and gated on its held-out part (docs/design.md §6). "design":
# docs/design.md §2 as first written (the rho band, cosine and branch-error bars set by design, the misguided rule
# off), reachable by name (--rules design).
RULE_SETS: dict[str, dict[str, float | None]] = {
    "evidence": dict(collapsed_rho=0.3, rho_low=0.3, rho_high=math.inf, min_cos=-1.0, max_rel_branch_error=math.inf,
                     max_rel_guided_error=0.353, max_rel_guided_error_probe=0.189),
    "design": dict(collapsed_rho=0.3, rho_low=0.8, rho_high=1.25, min_cos=0.8, max_rel_branch_error=0.25,
                   max_rel_guided_error=None, max_rel_guided_error_probe=None),
}


# How close to its bar a guided error leaves the misguided rule's verdict borderline (relative to the bar). A
# description of the detector validation, not a fitted rule (docs/design.md §6): within 15% of the data probe's bar
# lay 6 of its 7 misses on the 76 Fashion-MNIST models (there it agreed with the outcome for 79% of 29 models, beyond
# it for 98% of 47).
BORDERLINE = 0.15


# The guidance the guided-error bars were fitted and validated at: constant w = 4 (docs/design.md §6). At DASH's TAG
# schedule the same bars agreed with the outcome for 71% (probe) / 66% (trajectories) of 41 Fashion-MNIST students,
# against 93% / 90% at w = 4 (analyses/results/tag_validation.md); other schedules are not measured.
VALIDATED_GUIDANCE_SCALE = 4.0


def validated_guidance(guidance: dict | None) -> bool | None:
    """Whether an audit's guidance (its config's ``guidance`` record) is the constant w the bars were validated at;
    ``None`` where the record is missing (older results, pipelines that do not store it)."""
    if not isinstance(guidance, dict) or "kind" not in guidance:
        return None
    return guidance["kind"] == "constant" and guidance.get("scale") == VALIDATED_GUIDANCE_SCALE


def borderline_guided_error(rel_guided_error: float, verdict: str, thresholds: Thresholds) -> bool:
    """Whether a ``healthy`` or ``misguided`` verdict rests on a guided error within :data:`BORDERLINE` of its bar
    (``thresholds`` as the audit's mode judges: :meth:`Thresholds.for_probe` for a data probe); False with the
    misguided rule off or the value undefined."""
    bar = thresholds.max_rel_guided_error
    if verdict not in ("healthy", "misguided") or bar is None or not math.isfinite(rel_guided_error):
        return False
    return abs(rel_guided_error - bar) < BORDERLINE * bar


@dataclass
class Finding:
    """A verdict with the rule that decided it and every rule that fired (the evidence)."""

    verdict: str
    reason: str
    fired: list[str] = field(default_factory=list)


class Values(dict):
    """Summary values by name (a float each) for the rules; a name the summary lacks reads as NaN."""

    def __missing__(self, name: str) -> float:
        return float("nan")


# A pair rule: the reason (one line) when it holds for these values and thresholds, else None. NaN compares False.
Rule = Callable[[Values, "Thresholds"], "str | None"]


@dataclass(frozen=True)
class Verdict:
    """One verdict: what the report says about it and, for teacher-and-student audits, when it holds.

    ``rule`` / ``precedence``: the pair rules run in ascending precedence and the first that holds decides (every
    rule that holds is listed as evidence); a verdict without a rule is given by the judge itself (``healthy`` when
    none holds, ``inconclusive``, ``guidance-distilled``). ``explanation`` / ``fix``: the report's text;
    ``with_teacher``: other text for an audit with a teacher (``inconclusive``: the teacher is no reference).
    ``colour``: index into seaborn's ``"colorblind"`` palette. ``located``: the report says in which phases it fires.
    """

    name: str
    explanation: str
    fix: str
    colour: int = 7
    rule: Rule | None = None
    precedence: float = 100.0
    with_teacher: tuple[str, str] | None = None
    located: bool = True

    def text(self, has_teacher: bool) -> tuple[str, str]:
        """``(explanation, fix)`` for an audit with or without a teacher."""
        return self.with_teacher if has_teacher and self.with_teacher else (self.explanation, self.fix)


def _undefined(v: Values) -> list[str]:
    """The judged ratios without a reference, by their report names: 0/0 (NaN), or x/0 (inf: rho and the branch
    errors over a teacher whose gap or branch is zero)."""
    return [label for label, name in (("rho", "rho"), ("gap cosine", "cos_delta"), ("cond error", "rel_cond_error"),
                                      ("uncond error", "rel_uncond_error")) if not math.isfinite(v[name])]


def _nonfinite_rule(v: Values, th: Thresholds) -> str | None:
    if v["nonfinite"] > 0 or (bool(_undefined(v)) and "nonfinite" not in v):
        return "some predictions contain NaN or Inf"
    if "divergence" in v and not math.isfinite(v["divergence"]):
        return "the student's own (free-running) path turns NaN or Inf"
    return None


def _collapsed_rule(v: Values, th: Thresholds) -> str | None:
    if v["rho"] < th.collapsed_rho:
        return f"rho = {v['rho']:.3g} < {th.collapsed_rho}: the student's guidance gap has (nearly) vanished"
    return None


def _miscalibrated_rule(v: Values, th: Thresholds) -> str | None:
    rho, cos = v["rho"], v["cos_delta"]
    if rho < th.rho_low or rho > th.rho_high or cos < th.min_cos:
        return f"rho = {rho:.3g} (healthy {th.rho_low}-{th.rho_high}), gap cosine = {cos:.3g} (healthy >= {th.min_cos})"
    return None


def _drifted_rule(v: Values, th: Thresholds) -> str | None:
    rel_c, rel_u = v["rel_cond_error"], v["rel_uncond_error"]
    if max(rel_c, rel_u) > th.max_rel_branch_error:
        return (f"branch errors relative to the teacher: cond {rel_c:.3g}, uncond {rel_u:.3g} "
                f"(healthy <= {th.max_rel_branch_error})")
    return None


def _misguided_rule(v: Values, th: Thresholds) -> str | None:
    rel_g = v["rel_guided_error"]
    if th.max_rel_guided_error is not None and rel_g > th.max_rel_guided_error:
        return (f"guided-prediction error at w relative to the teacher's cond branch = {rel_g:.3g} "
                f"(healthy <= {th.max_rel_guided_error})")
    return None


# In the order the verdicts are listed (VERDICTS); the rules run in precedence order.
VERDICT_RECORDS: Registry[Verdict] = Registry("verdict", ((v.name, v) for v in (
    Verdict(
        "healthy",
        "No rule fired: the student's guidance gap has not collapsed and what the sampler consumes at w, the guided "
        "prediction, stays close to the teacher's (as do the gap's size and direction and each branch, under rule sets "
        "that bar them), so classifier-free guidance should act on the student as it does on the teacher.",
        "Nothing to fix.",
        colour=2, located=False,
    ),
    Verdict(
        "miscalibrated",
        "The student has a guidance gap, but its size or direction differs from the teacher's: at a given w the "
        "student is guided too weakly, too strongly or towards the wrong features, and the error is multiplied by w "
        "at every sampling step.",
        "Supervise the unconditional branch directly (--objective dash) or match the gap (--objective gap / pdm); "
        "if only the size is off (cosine fine), sampling at w' = 1 + (w - 1) / rho is a stopgap.",
        colour=1, rule=_miscalibrated_rule, precedence=30,
    ),
    Verdict(
        "collapsed",
        "The student's conditional and unconditional predictions have collapsed together: its guidance gap is a "
        "small fraction of the teacher's, so raising w barely changes its samples. Distillation that supervises only "
        "the conditional branch, or only the guided output at one w, leaves the unconditional branch unsupervised "
        "and produces exactly this (guidance collapse, DASH arXiv 2606.00798).",
        "Re-distill with both branches supervised: guidegap distill --teacher TEACHER --objective dash "
        "(L_cond + L_uncond + 0.1 L_anchor, TIRT-weighted).",
        colour=3, rule=_collapsed_rule, precedence=20,
    ),
    Verdict(
        "drifted",
        "The gap between the student's branches looks right, but both branches are off from the teacher's by a large "
        "fraction of their size, drifting together. rho and the gap cosine cannot see this; the per-branch errors do. "
        "The student's samples will differ from the teacher's at every w.",
        "Distill longer or with the anchor term (--objective dash supervises each branch and anchors eps_c to the true noise); "
        "check that the student was distilled from this teacher and with the same noise schedule.",
        colour=4, rule=_drifted_rule, precedence=40,
    ),
    Verdict(
        "misguided",
        "What the sampler consumes at w, the guided prediction eps_u + w (eps_c - eps_u), is off from the teacher's by "
        "a large fraction of the teacher's prediction: the branches' errors add up under guidance (amplified by w), so "
        "guided samples will differ from the teacher's. On real students this predicted what guidance does better "
        "than the gap's size, its direction or a single branch (docs/design.md §6).",
        "Distill longer, or supervise both branches and the guided output (--objective dash); compare the amplification "
        "row (guided error at w over that at w = 1) to see how much of the error guidance itself adds.",
        colour=6, rule=_misguided_rule, precedence=45,
    ),
    Verdict(
        "non-finite",
        "Some predictions contain NaN or Inf, so no other metric can be trusted. Typical causes: a diverged training "
        "run (NaN weights), fp16 overflow, or inputs on the wrong scale.",
        "Check the checkpoint for NaN weights, run in float32, and check the data scale and the noise schedule.",
        colour=7, rule=_nonfinite_rule, precedence=10,
    ),
    Verdict(
        "inconclusive",
        "Without a teacher, guidegap can only see whether the student has a guidance gap at all and whether its samples "
        "respond to w. It cannot judge whether the gap has the right size or direction, or whether either branch is "
        "accurate: audit against the teacher (--teacher) for that.",
        "Pass --teacher TEACHER to judge calibration; use --fail-on collapsed,non-finite to gate on what a teacher-free "
        "audit can decide.",
        colour=5, located=False,
        # A pair audit is inconclusive only when the teacher gives nothing to compare with (its gap is zero).
        with_teacher=(
            "The teacher's own guidance gap (or one of its branches) is zero, so rho, the gap cosine and the relative branch "
            "errors are undefined: there is nothing to compare the student with. The teacher is not a usable reference.",
            "Check that TEACHER is the class-conditional model the student was distilled from, trained with label "
            "dropout so that its null label differs from the classes.",
        ),
    ),
    Verdict(
        "guidance-distilled",
        "The student takes the guidance scale w as an input (a guidance embedding) instead of running a conditional and "
        "an unconditional branch: classifier-free guidance was distilled into it, so there is no guidance gap to audit and "
        "raising a CFG scale or adding a negative prompt is not how it is meant to be steered. Reported instead: how much "
        "its prediction changes between w = 1 and the audited w along its own trajectory, and, with --true-cfg, the gap "
        "to an empty-prompt branch — a branch such students were likely never trained on, so that number is a probe, "
        "not a calibration check.",
        "Nothing to fix in its guidance: steer it through its w input. Gate on it with --fail-on "
        "non-finite; audit the CFG teacher it was distilled from to check the guidance it learned.",
    ),
)))


class _VerdictNames(Sequence[str]):
    """The names of the registered verdicts, in their listed order (a live view: registered ones are included)."""

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return tuple(VERDICT_RECORDS)[index]

    def __len__(self) -> int:
        return len(VERDICT_RECORDS)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


VERDICTS: Sequence[str] = _VerdictNames()


def verdict_record(name: str) -> Verdict:
    """The record of a registered verdict."""
    try:
        return VERDICT_RECORDS[name]
    except KeyError:
        raise InputError(f"expected a verdict from {', '.join(VERDICTS)}, received {name!r}.") from None


def register_verdict(record: Verdict) -> Verdict:
    """Add a verdict (see :class:`Verdict`); a name that is taken (or ``none``, which ``--fail-on`` reserves) is refused."""
    if getattr(record, "name", None) == "none":
        raise InputError("register_verdict: 'none' means no verdict in --fail-on; choose another name.")
    return VERDICT_RECORDS.add(getattr(record, "name", ""), record, Verdict)


def remove_verdict(name: str) -> None:
    """Remove a verdict added with :func:`register_verdict`; the built-in verdicts stay."""
    VERDICT_RECORDS.remove(name)


def parse_fail_on(spec: str | Iterable[str] | None) -> set[str]:
    """Verdicts that fail an audit; ``None`` means every verdict but ``healthy`` (docs/design.md §3)."""
    if spec is None:
        return set(VERDICTS) - {"healthy"}
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:  # an empty --fail-on would silently turn the gate off; 'none' says so explicitly
        raise InputError(f"expected --fail-on verdicts from {', '.join(VERDICTS)} (comma-separated) or 'none', received {spec!r}.")
    if names == ["none"]:
        return set()
    unknown = sorted(set(names) - set(VERDICTS))
    if unknown:
        raise InputError(f"expected --fail-on verdicts from {', '.join(VERDICTS)} (comma-separated) or 'none', received {', '.join(unknown)}.")
    return set(names)


def _value(summary: Mapping[str, Estimate], name: str) -> float:
    estimate = summary.get(name)
    return float("nan") if estimate is None else float(estimate.value)


def judge_pair(summary: Mapping[str, Estimate], thresholds: Thresholds = Thresholds()) -> Finding:
    """Verdict for a teacher + student summary (from :func:`guidegap.metrics.summarize`): the first pair rule that holds."""
    values = Values({name: float(estimate.value) for name, estimate in summary.items()})
    undefined = _undefined(values)
    if "nonfinite" in summary and undefined and not values["nonfinite"] > 0:
        # Every prediction is finite, yet a ratio is 0/0: the teacher has no gap (or a zero branch) to compare with.
        return Finding(
            "inconclusive",
            f"{', '.join(undefined)} undefined although every prediction is finite: the teacher's guidance gap (or a "
            "branch) is zero, so there is nothing to compare the student with; check that the teacher is class-conditional "
            "and was trained with label dropout",
            ["inconclusive"],
        )
    rules = sorted((r for r in VERDICT_RECORDS.values() if r.rule is not None), key=lambda r: r.precedence)
    holding = [(r.name, reason) for r in rules if (reason := r.rule(values, thresholds)) is not None]
    fired = [name for name, _ in holding]
    if holding:
        return Finding(holding[0][0], holding[0][1], fired)
    rho, cos, rel_c, rel_u, rel_g = (values[n] for n in ("rho", "cos_delta", "rel_cond_error", "rel_uncond_error", "rel_guided_error"))
    guided = f"guided error {rel_g:.3g} of the teacher's cond branch, " if rel_g == rel_g else ""
    return Finding("healthy", f"{guided}rho = {rho:.3g}, gap cosine = {cos:.3g}, branch errors cond {rel_c:.3g} / uncond {rel_u:.3g}", fired)


def judge_teacher_free(summary: Mapping[str, Estimate], guidance_response: float, thresholds: Thresholds = Thresholds()) -> Finding:
    """Teacher-free verdict: only a vanished gap (or NaN/Inf) can be called; the rest is ``inconclusive``."""
    th = thresholds
    rel_gap = _value(summary, "rel_gap")
    if _value(summary, "nonfinite") > 0 or (rel_gap != rel_gap and "nonfinite" not in summary):
        return Finding("non-finite", "some predictions contain NaN or Inf", ["non-finite"])
    if not math.isfinite(guidance_response):
        return Finding("non-finite", "the model's unguided (w = 1) path turns NaN or Inf", ["non-finite"])
    if rel_gap != rel_gap:  # 0/0 with every prediction finite: eps_c is zero, and so is the gap
        return Finding("collapsed", "every prediction is zero (gap / eps_c = 0/0): guidance does nothing", ["collapsed"])
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


def judge_single(summary: Mapping[str, Estimate], guidance_response: float, thresholds: Thresholds = Thresholds()) -> Finding:
    """Deprecated name of :func:`judge_teacher_free`."""
    warnings.warn("judge_single is deprecated; use judge_teacher_free.", DeprecationWarning, stacklevel=2)
    return judge_teacher_free(summary, guidance_response, thresholds)
