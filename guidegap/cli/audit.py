"""``guidegap audit`` and ``guidegap plot``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from guidegap.cli.exit_codes import EXIT_FAILED, EXIT_OK
from guidegap.errors import InputError

__all__ = ["run_audit", "run_plot", "PROBE_BY_DEFAULT", "TRAJECTORY_OPTIONS"]

# docs/design.md §6 (3): whether a pair that declares its training data is audited by the data probe when that data is
# installed and no trajectory option is given; set from analyses/results/detector_validation_decision.json.
PROBE_BY_DEFAULT = True
TRAJECTORY_OPTIONS = (("--num-steps", "num_steps"), ("--labels", "labels"), ("--scheduler", "scheduler"),
                      ("--figure", "figure"), ("--no-divergence", "no_divergence"))


def _thresholds(pairs: list[tuple[str, float]], rules: str | None = None):
    """The thresholds of the rule set ``rules`` (default: the defaults) with each ``--threshold NAME=VALUE`` on top."""
    from guidegap.auditing.verdicts import Thresholds

    return Thresholds.named(rules, **dict(pairs))


def _oracle_example():
    """A seconds-fast example: the exact Gaussian-mixture teacher and a student whose gap has collapsed."""
    from guidegap.oracle import GaussianMixture, collapsed_student
    from guidegap.recording.schedulers import default_scheduler

    teacher = GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(default_scheduler())
    return collapsed_student(teacher, 4.0), teacher


def _check_outputs(out: str | None, figure: str | None) -> None:
    """Refuse output paths that cannot be written before the (long) run, not after it."""
    from pathlib import Path

    for path in (out, figure):
        if path:
            if not Path(path).resolve().parent.is_dir():
                raise InputError(f"the folder of {path!r} does not exist; create it or choose another path.")
            if Path(path).is_dir():
                raise InputError(f"{path!r} is a folder; pass a file name inside it.")
    if out and not out.endswith(".nc"):
        raise InputError(f"expected --out to end in .nc (netCDF), received {out!r}.")
    _check_writable(out, figure)
    if figure and Path(figure).suffix:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if Path(figure).suffix[1:].lower() not in formats:
            raise InputError(f"cannot write a figure as {Path(figure).suffix!r} ({figure!r}); use .png, .pdf or .svg.")


def _check_writable(*paths: str | None) -> None:
    """Write (and remove) a probe beside each output: a read-only folder or a full disk fails now, in one line."""
    from guidegap.atomic import check_writable

    for path in paths:
        if path:
            try:
                check_writable(path)
            except OSError as error:
                raise InputError(f"cannot write {path!r}: {error.strerror or type(error).__name__}; free some space or "
                                 "choose a writable folder (checked before the audit runs).") from None


def run_audit(args: argparse.Namespace) -> int:
    from guidegap.auditing.api import audit
    from guidegap.auditing.report import parse_fail_on

    fail_on = parse_fail_on(args.fail_on)  # validate before the (long) run
    thresholds = _thresholds(args.threshold, args.rules)
    defaults = {"num_samples": 64, "num_steps": 50}
    if args.example:
        if args.student or args.teacher:
            raise InputError("--example audits the built-in models; drop STUDENT/--teacher, or drop --example.")
        if args.example == "oracle":
            student, teacher = _oracle_example()
        else:
            from guidegap.examples import EXAMPLE_AUDIT, example_pair

            student, teacher = (str(p) for p in example_pair(args.example))
            defaults = dict(EXAMPLE_AUDIT)
    elif not args.student:
        raise InputError("expected a STUDENT checkpoint or folder (or --example); e.g. guidegap audit student.pt --teacher teacher.pt.")
    else:
        student, teacher = args.student, args.teacher
    _check_outputs(args.out, args.figure)
    from guidegap.cli.text_audit import text_report, wants_text_audit

    if args.probe_data:
        if args.trajectories:
            raise InputError("--trajectories and --probe-data ask for the two audit modes at once; keep one.")
        return _finish(args, _probe_audit(args, student, teacher, thresholds), fail_on)
    if not args.example and wants_text_audit(args):
        report = text_report(args, thresholds)
    else:
        prefer_probe = PROBE_BY_DEFAULT and not (args.trajectories or any(getattr(args, n) for _, n in TRAJECTORY_OPTIONS))
        report = audit(  # where the probe may run, an unset --num-samples is the chosen mode's default (images or 64)
            student, teacher, num_samples=args.num_samples or (None if prefer_probe else defaults["num_samples"]),
            num_steps=args.num_steps or defaults["num_steps"], guidance_scale=args.guidance_scale or 4.0,
            labels=args.labels, scheduler=args.scheduler, seed=args.seed, chunk_size=args.chunk_size,
            thresholds=thresholds, factory=args.factory, trust_pickle=args.trust_pickle or False,
            progress=not args.no_progress and not args.json and sys.stderr.isatty(), divergence=not args.no_divergence,
            prefer_probe=prefer_probe,
        )
    return _finish(args, report, fail_on)


def _probe_audit(args: argparse.Namespace, student: Any, teacher: Any, thresholds: Any) -> Any:
    """``--probe-data``: DASH's data probe on held-out images; options that only a trajectory has are refused."""
    from guidegap.auditing.api import audit
    from guidegap.cli.text_audit import wants_text_audit

    given = [flag for flag, name in TRAJECTORY_OPTIONS if getattr(args, name)]
    if given:
        raise InputError(f"{', '.join(given)} describe a sampling trajectory, which a data-probe audit (--probe-data) does "
                         "not run; drop them, or drop --probe-data.")
    text = [flag for flag, value in (("--prompts", args.prompts), ("--true-cfg", args.true_cfg), ("--base", args.base),
                                     ("--negative-prompt", args.negative_prompt), ("--device", args.device)) if value]
    if text or (not args.example and wants_text_audit(args)):
        raise InputError("a data-probe audit (--probe-data) takes class-conditional models; text-to-image pipelines are "
                         "audited along their sampling trajectories: drop --probe-data.")
    if args.example == "oracle":
        raise InputError("the oracle example's mixture is its own, not the oracle tier's that --probe-data oracle draws "
                         "from; probe a Fashion-MNIST example instead: guidegap audit --example --probe-data fashion-mnist.")
    return audit(student, teacher, data=args.probe_data, num_samples=args.num_samples,  # the API reads the probe set
                 guidance_scale=args.guidance_scale or 4.0, seed=args.seed, chunk_size=args.chunk_size,
                 thresholds=thresholds, factory=args.factory, trust_pickle=args.trust_pickle or False)


def _finish(args: argparse.Namespace, report, fail_on: set[str]) -> int:
    """Write, print and gate on the report as the flags ask."""
    if args.out:
        report.save(args.out)
    if args.figure:
        report.plot(args.figure)
    if args.json:
        print(report.to_json())
    else:
        print(report)
        written = [p for p in (args.out, args.figure) if p]
        if written:
            print("wrote " + ", ".join(written))
    return EXIT_OK if report.verdict not in fail_on else EXIT_FAILED


def run_plot(args: argparse.Namespace) -> int:
    from guidegap.auditing.report import AuditReport
    from guidegap.results import load_dataset

    from guidegap.errors import printable

    _check_writable(args.figure)
    report = AuditReport.from_dataset(load_dataset(args.dataset))
    report.plot(args.figure)
    print(f"wrote {args.figure} ({printable(report.verdict)})")
    return EXIT_OK
