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

from guidegap.auditing.judge import PHASES, Judgement, guidance_response_estimate, judge, phase_findings, thresholds_for, thresholds_of
from guidegap.auditing.verdicts import Finding, Thresholds, borderline_guided_error, parse_fail_on, validated_guidance, verdict_record
from guidegap.errors import InputError
from guidegap.metrics.summary import Estimate
from guidegap.results.schema import is_probe

__all__ = ["AuditReport", "phase_findings", "parse_fail_on", "guidance_response_estimate", "PHASES"]


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
        return verdict_record(self.verdict).text(self.has_teacher)[0]

    @property
    def suggestion(self) -> str:
        return verdict_record(self.verdict).text(self.has_teacher)[1]

    def passes(self, fail_on: str | Iterable[str] | None = None) -> bool:
        return self.verdict not in parse_fail_on(fail_on)

    def where(self, verdict: str | None = None) -> list[str]:
        """Phases in which the rule of ``verdict`` (default: the overall verdict) fires."""
        verdict = verdict or self.verdict
        return [p["phase"] for p in self.phases if verdict in p["fired"]]

    @property
    def is_probe(self) -> bool:
        """A data-probe audit (:func:`guidegap.probe`): samples at their own t, no trajectory."""
        return is_probe(self.dataset)

    @property
    def borderline(self) -> bool:
        """The verdict rests on a guided error within 15% of its bar (:data:`guidegap.auditing.verdicts.BORDERLINE`),
        where the detector validation's data-probe misses lay (docs/design.md §6)."""
        estimate = self.summary.get("rel_guided_error")
        return estimate is not None and borderline_guided_error(float(estimate.value), self.verdict,
                                                                thresholds_for(self.dataset, self.thresholds))

    @property
    def guidance_validated(self) -> bool | None:
        """Whether the verdict's guided-error bar was validated at the guidance this audit ran at (constant w = 4,
        docs/design.md §6; at DASH's TAG schedule the same bars predicted the outcome markedly less often); ``None``
        where the bar does not apply (rule off, no teacher) or the audit did not record its guidance."""
        if not self.has_teacher or thresholds_for(self.dataset, self.thresholds).max_rel_guided_error is None:
            return None
        return validated_guidance(json.loads(self.dataset.attrs.get("config", "{}")).get("guidance"))

    def nonfinite_timesteps(self) -> list[float]:
        """The timesteps with a NaN/Inf prediction: steps of the trajectory, or (a probe) the noisiest first."""
        axis = "sample" if self.is_probe else "step"
        flagged = self.dataset["nonfinite"].any([d for d in self.dataset["nonfinite"].dims if d != axis])
        found = [float(t) for t in self.dataset["timestep"].values[flagged.values]]
        return sorted(set(found), reverse=True) if self.is_probe else found

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``verdict``, the recording ``mode``, the summary values (``rho``, ``cos_delta``, ``gap_mse``, ...), CIs and phases."""
        out: dict[str, Any] = {"verdict": self.verdict, "reason": self.finding.reason, "fired": self.finding.fired,
                               "student": self.dataset.attrs.get("student", ""), "teacher": self.dataset.attrs.get("teacher", ""),
                               "mode": self.dataset.attrs.get("mode", "")}  # teacher-forced, data-probe, ...
        if "mode_reason" in self.dataset.attrs:  # why this mode judged (audit(prefer_probe=True))
            out["mode_reason"] = self.dataset.attrs["mode_reason"]
        out["borderline"] = self.borderline  # a healthy / misguided verdict within 15% of the guided-error bar
        out["guidance_validated"] = self.guidance_validated  # the bar was validated at this guidance (constant w = 4)
        out.update({name: _finite_or_none(est.value) for name, est in self.summary.items()})
        out["ci"] = {name: [_finite_or_none(est.low), _finite_or_none(est.high)] for name, est in self.summary.items()}
        out["ci_level"] = next(iter(self.summary.values())).level if self.summary else None
        out["phases"] = [{**p, "summary": {k: _finite_or_none(v) for k, v in p["summary"].items()}} for p in self.phases]
        out["explanation"], out["suggestion"] = self.explanation, self.suggestion
        # an infinite bar (a rule switched off, e.g. rho_high=inf) is written as null, like an unset one
        out["thresholds"] = _strict(self.thresholds.to_dict())
        out["config"] = _strict(json.loads(self.dataset.attrs["config"]))  # e.g. a scheduler's lambda_min_clipped = -inf
        for key in ("prompts", "null_condition"):  # text-to-image audits name their prompts and null branches
            if key in self.dataset.attrs:
                out[key] = _strict(json.loads(self.dataset.attrs[key]))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the Dataset (verdict and summary in its attrs) to a netCDF file, atomically."""
        from guidegap.results import save_dataset

        return save_dataset(self.dataset, path)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The collapse-curve figure; written to ``path`` when given. Returns the matplotlib Figure."""
        from guidegap.auditing.figure import plot_collapse

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


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float, however deep, as ``None`` (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


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
