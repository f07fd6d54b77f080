"""``guidegap train-teacher`` and ``guidegap distill``: thin wrappers over :func:`guidegap.training.loop.train`."""

from __future__ import annotations

import argparse
import json
import sys

from guidegap.cli.main import EXIT_OK
from guidegap.errors import InputError

__all__ = ["add_training_commands", "run_training"]


def _options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"expected --objective-option NAME=VALUE, received {pair!r}.")
        try:
            out[name.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip().replace("-", "_")] = value
    return out


def add_training_commands(commands: argparse._SubParsersAction, positive_int) -> None:
    for name, role in (("train-teacher", "teacher"), ("distill", "student")):
        p = commands.add_parser(name, help="train a class-conditional teacher with label dropout and TIRT" if role == "teacher"
                                else "distil a student from a teacher with an objective chosen by name (dash, cond-only, ...)")
        p.set_defaults(role=role)
        p.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.jsonl, train.log, config.json")
        p.add_argument("--tier", default="cpu", choices=["oracle", "cpu", "paper"], help="model sizes and default data (DESIGN.md §4)")
        p.add_argument("--arch", default="unet", choices=["unet", "dit"], help="UNet2DModel (default) or DiTTransformer2DModel")
        p.add_argument("--data", help="fashion-mnist (cpu tier default), oracle[:SEED] (oracle tier default), or "
                                       "cifar10:PATH / cifar100:PATH (paper tier; binary version or class folders)")
        if role == "student":
            p.add_argument("--teacher", required=True, help="teacher checkpoint (or 'oracle' on the oracle tier)")
            p.add_argument("--teacher-cache", metavar="DIR",
                           help="store the teacher's branches per step in DIR and reuse them in later runs with the same "
                                "teacher, seed, data and batch size (pays the teacher's cost once per comparison)")
            p.add_argument("--objective", default="dash",
                           help="dash, dash-no-uncond, dash-no-anchor, dash-no-tirt, cond-only, composite, multi-w, gap, pdm, scratch")
        p.add_argument("--objective-option", action="append", default=[], metavar="NAME=VALUE",
                       help="objective option, e.g. guidance_scale=3 or w_anchor=0.2 (repeatable)")
        p.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
        p.add_argument("--steps", type=positive_int, default=1000)
        p.add_argument("--batch-size", type=positive_int, help="default per tier: oracle 512, cpu 64, paper 128")
        p.add_argument("--lr", type=float, help="AdamW learning rate; default per tier: oracle 2e-3, cpu 2e-4, paper 1e-4")
        p.add_argument("--ema-decay", type=float, default=0.999)
        p.add_argument("--grad-clip", type=float, default=1.0)
        p.add_argument("--tirt", choices=["learned", "teacher", "uniform", "loss-moment"],
                       help="timestep weights (default: learned for teachers, the teacher's frozen TIRT for dash)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--checkpoint-every", type=positive_int, default=200)
        p.add_argument("--log-every", type=positive_int, default=10)
        p.add_argument("--audit-every", type=int, default=0, help="light audit of the EMA student every N steps (0: off)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        p.add_argument("--no-progress", action="store_true")


def run_training(args: argparse.Namespace) -> int:
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    config = TrainConfig(
        out=args.out, role=args.role, objective=getattr(args, "objective", "scratch") if args.role == "student" else "scratch",
        objective_options=_options(args.objective_option), teacher=getattr(args, "teacher", None), tier=args.tier, arch=args.arch,
        data=args.data, schedule=args.schedule, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        ema_decay=args.ema_decay, grad_clip=args.grad_clip, tirt=args.tirt, seed=args.seed,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, audit_every=args.audit_every,
        progress=not args.no_progress and sys.stderr.isatty(), teacher_cache=getattr(args, "teacher_cache", None),
    )
    callbacks = []
    if args.audit_every and config.teacher:
        from guidegap.training.callbacks import LightAudit

        from pathlib import Path

        callbacks.append(LightAudit(config.teacher, schedule=config.schedule, store=Path(config.out) / "guidance.zarr"))
    result = train(config, callbacks=callbacks, resume=args.resume)
    ratio = f" ({result.teacher_parameters / result.num_parameters:.2f}x fewer than the teacher)" if result.teacher_parameters else ""
    print(f"{config.role}: {result.num_parameters:,} parameters{ratio}; step {result.step}; checkpoint {result.checkpoint}")
    print(json.dumps(result.last_log))
    return EXIT_OK
