"""The audit report: verdict, evidence (summaries with CIs, per-phase findings), explanation and fix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from guidegap.auditing.judge import PHASES, Judgement, guidance_response_estimate, judge, phase_findings, thresholds_of
from guidegap.auditing.verdicts import VERDICTS, Finding, Thresholds
from guidegap.errors import InputError
from guidegap.metrics.summary import Estimate

__all__ = ["AuditReport", "phase_findings", "parse_fail_on", "guidance_response_estimate", "PHASES"]

_EXPLANATIONS = {
    "healthy": (
        "The student's guidance gap matches the teacher's in size (rho) and direction (gap cosine), and both "
        "branches track the teacher's, so classifier-free guidance should act on the student as it does on the teacher."
    ),
    "collapsed": (
        "The student's conditional and unconditional predictions have collapsed together: its guidance gap is a "
        "small fraction of the teacher's, so raising w barely changes its samples. Distillation that supervises only "
        "the conditional branch, or only the guided output at one w, leaves the unconditional branch unsupervised "
        "and produces exactly this (guidance collapse, DASH arXiv 2606.00798)."
    ),
    "miscalibrated": (
        "The student has a guidance gap, but its size or direction differs from the teacher's: at a given w the "
        "student is guided too weakly, too strongly or towards the wrong features, and the error is multiplied by w "
        "at every sampling step."
    ),
    "drifted": (
        "The gap between the student's branches looks right, but both branches are off from the teacher's by a large "
        "fraction of their size, drifting together. rho and the gap cosine cannot see this; the per-branch errors do. "
        "The student's samples will differ from the teacher's at every w."
    ),
    "non-finite": (
        "Some predictions contain NaN or Inf, so no other metric can be trusted. Typical causes: a diverged training "
        "run (NaN weights), fp16 overflow, or inputs on the wrong scale."
    ),
    "inconclusive": (
        "Without a teacher, guidegap can only see whether the student has a guidance gap at all and whether its samples "
        "respond to w. It cannot judge whether the gap has the right size or direction, or whether either branch is "
        "accurate: audit against the teacher (--teacher) for that."
    ),
    "guidance-distilled": (
        "The student takes the guidance scale w as an input (a guidance embedding) instead of running a conditional and "
        "an unconditional branch: classifier-free guidance was distilled into it, so there is no guidance gap to audit and "
        "raising a CFG scale or adding a negative prompt is not how it is meant to be steered. Reported instead: how much "
        "its prediction changes between w = 1 and the audited w along its own trajectory, and, with --true-cfg, the gap "
        "to an empty-prompt branch — a branch such students were likely never trained on, so that number is a probe, "
        "not a calibration check."
    ),
}

# A pair audit is inconclusive only when the teacher gives nothing to compare with (its gap is zero).
_EXPLANATION_NO_REFERENCE = (
    "The teacher's own guidance gap (or one of its branches) is zero, so rho, the gap cosine and the relative branch "
    "errors are undefined: there is nothing to compare the student with. The teacher is not a usable reference."
)
_FIX_NO_REFERENCE = ("Check that TEACHER is the class-conditional model the student was distilled from, trained with label "
                     "dropout so that its null label differs from the classes.")

_FIXES = {
    "healthy": "Nothing to fix.",
    "collapsed": "Re-distill with both branches supervised: guidegap distill --teacher TEACHER --objective dash "
                 "(L_cond + L_uncond + 0.1 L_anchor, TIRT-weighted).",
    "miscalibrated": "Supervise the unconditional branch directly (--objective dash) or match the gap (--objective gap / pdm); "
                     "if only the size is off (cosine fine), sampling at w' = 1 + (w - 1) / rho is a stopgap.",
    "drifted": "Distill longer or with the anchor term (--objective dash supervises each branch and anchors eps_c to the true noise); "
               "check that the student was distilled from this teacher and with the same noise schedule.",
    "non-finite": "Check the checkpoint for NaN weights, run in float32, and check the data scale and the noise schedule.",
    "inconclusive": "Pass --teacher TEACHER to judge calibration; use --fail-on collapsed,non-finite to gate on what a teacher-free audit can decide.",
    "guidance-distilled": "Nothing to fix in its guidance: steer it through its w input. Gate on it with --fail-on "
                          "non-finite; audit the CFG teacher it was distilled from to check the guidance it learned.",
}


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


@dataclass
class AuditReport:
    """What :func:`guidegap.audit` returns: the verdict, its evidence, and the recorded Dataset."""

    finding: Finding
    summary: dict[str, Estimate]
    phases: list[dict[str, Any]]
    dataset: xr.Dataset
    thresholds: Thresholds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, n_boot: int = 1000) -> "AuditReport":
        """Rebuild a report from a stored audit Dataset (its thresholds; the verdict is recomputed)."""
        if "verdict" not in ds.attrs or "thresholds" not in ds.attrs:
            raise InputError("expected an audit Dataset (attrs 'verdict' and 'thresholds'), received a plain recording; write it with guidegap audit --out.")
        thresholds = thresholds_of(ds)
        judgement = judge(ds, thresholds, n_boot=n_boot, seed=int(json.loads(ds.attrs["config"]).get("seed", 0)))
        return cls.of(judgement, ds, thresholds)

    @classmethod
    def of(cls, judgement: Judgement, ds: xr.Dataset, thresholds: Thresholds) -> "AuditReport":
        """The report of ``ds`` as :func:`guidegap.auditing.judge.judge` judged it."""
        return cls(judgement.finding, judgement.summary, judgement.phases, ds, thresholds)

    @property
    def verdict(self) -> str:
        return self.finding.verdict

    @property
    def has_teacher(self) -> bool:
        return self.dataset.sizes.get("model", 1) > 1

    @property
    def explanation(self) -> str:
        if self.verdict == "inconclusive" and self.has_teacher:
            return _EXPLANATION_NO_REFERENCE
        return _EXPLANATIONS[self.verdict]

    @property
    def suggestion(self) -> str:
        if self.verdict == "inconclusive" and self.has_teacher:
            return _FIX_NO_REFERENCE
        return _FIXES[self.verdict]

    def passes(self, fail_on: str | Iterable[str] | None = None) -> bool:
        return self.verdict not in parse_fail_on(fail_on)

    def where(self, verdict: str | None = None) -> list[str]:
        """Phases in which the rule of ``verdict`` (default: the overall verdict) fires."""
        verdict = verdict or self.verdict
        return [p["phase"] for p in self.phases if verdict in p["fired"]]

    def nonfinite_timesteps(self) -> list[float]:
        flagged = self.dataset["nonfinite"].any([d for d in self.dataset["nonfinite"].dims if d != "step"])
        return [float(t) for t in self.dataset["timestep"].values[flagged.values]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``verdict``, the summary values (``rho``, ``cos_delta``, ``gap_mse``, ...), CIs and phases."""
        out: dict[str, Any] = {"verdict": self.verdict, "reason": self.finding.reason, "fired": self.finding.fired,
                               "student": self.dataset.attrs.get("student", ""), "teacher": self.dataset.attrs.get("teacher", "")}
        out.update({name: _finite_or_none(est.value) for name, est in self.summary.items()})
        out["ci"] = {name: [_finite_or_none(est.low), _finite_or_none(est.high)] for name, est in self.summary.items()}
        out["ci_level"] = next(iter(self.summary.values())).level if self.summary else None
        out["phases"] = [{**p, "summary": {k: _finite_or_none(v) for k, v in p["summary"].items()}} for p in self.phases]
        out["explanation"], out["suggestion"] = self.explanation, self.suggestion
        out["thresholds"] = self.thresholds.to_dict()
        out["config"] = json.loads(self.dataset.attrs["config"])
        for key in ("prompts", "null_condition"):  # text-to-image audits name their prompts and null branches
            if key in self.dataset.attrs:
                out[key] = json.loads(self.dataset.attrs[key])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the Dataset (verdict and summary in its attrs) to a netCDF file, atomically."""
        from guidegap.results import save_dataset

        return save_dataset(self.dataset, path)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The collapse-curve figure; written to ``path`` when given. Returns the matplotlib Figure."""
        from guidegap.plots import plot_collapse

        title = "guidegap audit (guidance-distilled: gap = eps(w) - eps(w=1))" if "guidance_distilled" in self.dataset.attrs else None
        fig = plot_collapse(self.dataset, self.thresholds, title)
        if path is not None:
            _save_figure(fig, Path(path))
        return fig

    def __str__(self) -> str:
        from guidegap.auditing.render import render_report

        return render_report(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(str(self))


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from guidegap.atomic import atomic_path

    try:
        if not path.parent.is_dir():
            raise InputError(f"the folder {str(path.parent)!r} does not exist; create it or choose another --figure path.")
        with atomic_path(path, path.suffix or ".png") as tmp:
            fig.savefig(tmp, dpi=130)
    except ValueError as error:  # unknown image format
        raise InputError(f"cannot write a figure to {str(path)!r} ({error}); use .png, .pdf or .svg.") from None
    except OSError as error:  # permissions, a full disk
        raise InputError(f"could not write {str(path)!r}: {error.strerror or type(error).__name__}; check the folder is writable.") from None
    finally:
        plt.close(fig)
