"""The ``guidegap`` command line. Bad input never produces a traceback: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from guidegap._version import __version__

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; keep it to one line, exit 2
        print(f"guidegap: error: {message} (see guidegap {self.prog.split()[-1]} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="guidegap", description="Find and fix guidance collapse in compact diffusion models.")
    parser.add_argument("--version", action="version", version=f"guidegap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    trace = commands.add_parser("trace", help="record both guidance branches along sampling trajectories")
    trace.add_argument("--example", action="store_true", required=True,
                       help="the built-in oracle example: exact Gaussian-mixture teacher vs. a collapsed student")
    trace.add_argument("--num-samples", type=int, default=64)
    trace.add_argument("--num-steps", type=int, default=50)
    trace.add_argument("--guidance-scale", default="4.0", help="a number (1 = no guidance) or 'tag' (DASH's schedule)")
    trace.add_argument("--scheduler", default="ddim", help="ddim, dpm++, euler, ddpm, ... or a diffusers class name")
    trace.add_argument("--mode", default="teacher-forced", choices=["teacher-forced", "free-running"])
    trace.add_argument("--seed", type=int, default=0)
    trace.add_argument("--out", help="write the Dataset to this .nc file (atomically)")
    trace.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def _run_trace(args: argparse.Namespace) -> int:
    from guidegap.metrics import summarize
    from guidegap.oracle import GaussianMixture, collapsed_student
    from guidegap.recording import trace
    from guidegap.recording.schedulers import make_scheduler
    from guidegap.results import save_dataset

    scheduler = make_scheduler(args.scheduler)
    teacher = GaussianMixture.random(seed=0).denoiser(scheduler)
    student = collapsed_student(teacher, 4.0)
    ds = trace(teacher, student, num_samples=args.num_samples, num_steps=args.num_steps,
               guidance_scale=args.guidance_scale, scheduler=scheduler, mode=args.mode, seed=args.seed,
               progress=not args.json and sys.stderr.isatty())
    if args.out:
        save_dataset(ds, args.out)
    summary = summarize(ds)
    if args.json:
        print(json.dumps({name: estimate.to_dict() for name, estimate in summary.items()}))
        return EXIT_OK
    print("oracle teacher (exact Gaussian-mixture eps) vs. a student that outputs the guided prediction for both branches")
    print(f"{args.num_samples} samples x {ds.sizes['step']} steps, {args.mode}, {type(scheduler).__name__}")
    for name, estimate in summary.items():
        print(f"  {name:<18} {estimate}")
    if args.out:
        print(f"wrote {args.out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from guidegap.errors import GuidegapError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "trace":
            return _run_trace(args)
    except GuidegapError as error:
        print(f"guidegap: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("guidegap: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
