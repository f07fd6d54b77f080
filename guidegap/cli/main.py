"""The ``guidegap`` command line (docs/design.md §3).

Exit codes: 0 the verdict passes ``--fail-on``; 1 it fails; 2 bad input or usage — one line on stderr,
never a traceback (set ``GUIDEGAP_DEBUG=1`` to see one for an unexpected error). Third-party warnings and log
records are silenced (``GUIDEGAP_DEBUG=1`` shows them), and the hub is offline: the CLI reads local files only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence

from guidegap._version import __version__
from guidegap.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the whole usage)
        swallowed = re.match(r"argument --trust-pickle: invalid choice: '([^']*)'", message)
        if swallowed:  # the optional value took the STUDENT path: `audit --trust-pickle sd.pt`
            message += (f"; to trust the student's file write the bare flag after it: "
                        f"guidegap audit {swallowed.group(1)} --trust-pickle")
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _labels(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class ids such as 0,3,7, received {text!r}") from None


def _guidance_scale(text: str) -> str:
    """A finite number or a named schedule ('tag'); passed on as text (guidegap.audit parses it)."""
    if text.strip().lower() in ("tag", "dash"):
        return text.strip()
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a guidance scale such as 4 (1 = no guidance) or 'tag', received {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite guidance scale such as 4 (1 = no guidance) or 'tag', received {text!r}")
    return text


def _threshold(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip().replace("-", "_"), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as collapsed_rho=0.2, received {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="guidegap", description="Find and fix guidance collapse in compact diffusion models.")
    parser.add_argument("--version", action="version", version=f"guidegap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    audit = commands.add_parser(
        "audit", help="does the student's classifier-free guidance still work?",
        description="Audit a student's classifier-free guidance against its teacher (or teacher-free). "
                    "Exit 0 when the verdict passes --fail-on, 1 when it fails, 2 for bad input.",
    )
    audit.add_argument("student", nargs="?", help="student: diffusers model folder, guidegap checkpoint, or state dict (with --factory)")
    audit.add_argument("--example", nargs="?", const="cond-only", choices=["cond-only", "dash", "oracle"],
                       help="audit a built-in example instead of STUDENT/--teacher (no download): the Fashion-MNIST "
                            "cond-only student (default, broken) or dash student against their shipped teacher, "
                            "or 'oracle' (a collapsed student of the exact Gaussian-mixture teacher, seconds)")
    audit.add_argument("--teacher", help="the teacher the student was distilled from (same formats)")
    audit.add_argument("--num-samples", type=_positive_int, help="trajectories to record (default 64; 32 for --example)")
    audit.add_argument("--num-steps", type=_positive_int, help="sampling steps (default 50; 25 for --example)")
    audit.add_argument("--guidance-scale", type=_guidance_scale,
                       help="w (1 = no guidance) or 'tag' (DASH's schedule); default 4 (text-to-image: the pipeline's default)")
    audit.add_argument("--labels", type=_labels, help="class ids, comma-separated (one, or one per sample); default: classes in turn")
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--scheduler", help="ddim (default; text-to-image: the folder's scheduler), dpm++, euler, ddpm, unipc, "
                                           "pndm, heun, or a diffusers class name, on the stored noise schedule")
    audit.add_argument("--chunk-size", type=_positive_int, default=64, help="samples per forward batch (memory bound)")
    audit.add_argument("--out", help="write the audit Dataset to FILE.nc (netCDF, atomic)")
    audit.add_argument("--figure", help="write the collapse-curve figure to FILE.png (or .pdf/.svg)")
    audit.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the report")
    audit.add_argument("--fail-on", help="comma-separated verdicts that fail (exit 1); default: all but healthy; 'none' never fails")
    audit.add_argument("--threshold", type=_threshold, action="append", default=[], metavar="NAME=VALUE",
                       help="override a verdict threshold, e.g. collapsed_rho=0.2 (repeatable)")
    audit.add_argument("--rules", metavar="NAME",
                       help="a named rule set instead of the default thresholds ('evidence': the defaults, chosen on "
                            "outcomes, docs/design.md §6; 'design': §2's rules as first written); --threshold overrides "
                            "apply on top")
    audit.add_argument("--factory", help="package.module:function building the model for plain state dicts "
                                         "(imports that module and runs the function: only name code you trust)")
    audit.add_argument("--trust-pickle", nargs="?", const="student", choices=["student", "teacher", "both"],
                       help="allow arbitrary unpickling of the student's file (bare flag: write it after STUDENT), the "
                            "teacher's, or both; this runs code from the file: only for files you trust")
    audit.add_argument("--no-divergence", action="store_true",
                       help="skip the student's own free-running path (faster; the figure then shows branch errors)")
    audit.add_argument("--no-progress", action="store_true", help="no progress bar")
    audit.add_argument("--probe-data", metavar="SOURCE",
                       help="a data-probe audit instead of trajectories (DASH's protocol): held-out images noised at "
                            "uniform t; 'fashion-mnist' or 'cifar10:FOLDER' / 'cifar100:FOLDER' (test split), "
                            "'oracle[:SEED]', FILE.npz with 'images' and 'labels', or 'auto': the held-out split of the "
                            "data the teacher's guidegap checkpoint was trained on (--num-samples: images, default 1000)")
    audit.add_argument("--trajectories", action="store_true",
                       help="audit along sampling trajectories even where the data probe is the default (a pair of "
                            "guidegap checkpoints whose declared training data is installed; docs/design.md §6)")
    text = audit.add_argument_group("text-to-image pipelines (STUDENT / --teacher: diffusers pipeline folders)")
    text.add_argument("--prompts", help="prompts file, one per line (default: guidegap's built-in prompt set)")
    text.add_argument("--negative-prompt", help="null branch: this prompt, encoded, instead of the pipeline's own "
                                                "convention (the empty prompt, or zeros for SDXL)")
    text.add_argument("--base", help="pipeline folder that a bare unet/ STUDENT goes into (default: --teacher), BK-SDM style")
    text.add_argument("--true-cfg", action="store_true",
                      help="guidance-distilled students: also probe the empty-prompt branch (likely never trained)")
    text.add_argument("--device", help="run both pipelines on this torch device, e.g. cuda (default: cpu)")

    from guidegap.cli.train import add_training_commands

    add_training_commands(commands, _positive_int)

    plot = commands.add_parser("plot", help="redraw the collapse curves of a stored audit (.nc)")
    plot.add_argument("dataset", help="an audit Dataset written with --out")
    plot.add_argument("--figure", required=True, help="output image (.png, .pdf, .svg)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from guidegap.checkpoints.offline import set_offline

    set_offline()
    args = build_parser().parse_args(argv)
    if os.environ.get("GUIDEGAP_DEBUG"):
        return _run(args)
    with _quiet_libraries():
        return _run(args)


_LIBRARIES = ("diffusers", "transformers", "huggingface_hub", "accelerate", "h5py", "h5netcdf", "torch", "matplotlib")


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Third-party warnings and log records would break the one-line promise: drop them while a command runs."""
    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(name, "error")  # read when those libraries are first imported
    loggers = [logging.getLogger(name) for name in _LIBRARIES]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from guidegap.errors import GuidegapError, first_line, printable

    try:
        if args.command == "audit":
            from guidegap.cli.audit import run_audit

            return run_audit(args)
        if args.command == "plot":
            from guidegap.cli.audit import run_plot

            return run_plot(args)
        if args.command in ("train-teacher", "distill"):
            from guidegap.cli.train import run_training

            return run_training(args)
    except GuidegapError as error:
        print(f"guidegap: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("guidegap: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a model that fails on its inputs, an unreadable file type, ...
        if os.environ.get("GUIDEGAP_DEBUG"):
            raise
        first = printable(first_line(error, 300))
        print(f"guidegap: error: {type(error).__name__}: {first} (set GUIDEGAP_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
