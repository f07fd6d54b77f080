"""``guidegap train-teacher`` and ``guidegap distill``: thin wrappers over :func:`guidegap.training.loop.train`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from guidegap.cli.exit_codes import EXIT_OK
from guidegap.errors import InputError
from guidegap.training.config import LR_SCHEDULES, MIXED_PRECISION, RECIPES, SCHEDULES, TIER_DEFAULTS

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


def _export_steps(text: str) -> list[int] | str:
    """``--export-steps 250,500,1000`` or ``--export-steps log:250`` (250, 500, 1000, ... up to --train-steps)."""
    first = text.removeprefix("log:")
    try:
        steps = [int(first)] if text.startswith("log:") else [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps like 250,500,1000 or log:250, received {text!r}") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected training steps >= 1, received {text!r}")
    return f"log:{steps[0]}" if text.startswith("log:") else steps


def log_spaced_steps(first: int, last: int) -> list[int]:
    """``first``, twice that, four times ..., up to ``last``, and ``last`` itself."""
    steps = []
    while first < last:
        steps.append(first)
        first *= 2
    return [*steps, last]


def _describe(settings: dict[str, object]) -> str:
    return ", ".join(f"{name.replace('_', '-')} {value}" for name, value in settings.items())


def _given_once(parser: argparse.ArgumentParser, namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    """Refuse a setting given under its new and its old flag (the API refuses both keywords alike)."""
    given, new = getattr(namespace, f"_given_{dest}", None), "--" + dest.replace("_", "-")
    if given is not None and given != option_string:
        parser.error(f"pass {new} only ({option_string if option_string != new else given} is its old name), received both.")
    setattr(namespace, f"_given_{dest}", option_string)


class _New(argparse.Action):
    """A flag that has an old name (:class:`_Renamed`): stores its value and notes it was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        _given_once(parser, namespace, self.dest, option_string)
        setattr(namespace, self.dest, values)


class _Renamed(argparse.Action):
    """An old flag that still works: it sets the new one's value and says once, on stderr, which flag to use."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        _given_once(parser, namespace, self.dest, option_string)
        new = "--" + self.dest.replace("_", "-")
        warnings.warn(f"{option_string} is deprecated; use {new}.", DeprecationWarning, stacklevel=2)
        print(f"guidegap: note: {option_string} is deprecated; use {new}.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_training_commands(commands: argparse._SubParsersAction, positive_int) -> None:
    for name, role in (("train-teacher", "teacher"), ("distill", "student")):
        p = commands.add_parser(name, help="train a class-conditional teacher with label dropout and TIRT" if role == "teacher"
                                else "distil a student from a teacher with an objective chosen by name (dash, cond-only, ...)")
        p.set_defaults(role=role)
        p.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.jsonl, train.log, config.json")
        p.add_argument("--tier", default="cpu", choices=["oracle", "cpu", "paper"], help="model sizes and default data (docs/design.md §4)")
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
        recipe = p.add_argument_group(
            "recipe", "every setting left out comes from --recipe, else from the tier's defaults (printed in train.log; "
                      "on --resume, from the stored run)")
        recipe.add_argument("--recipe", choices=sorted(RECIPES),
                            help="dash: the DASH paper's recipe: " + _describe(RECIPES["dash"][role]))
        recipe.add_argument("--schedule", choices=list(SCHEDULES),
                            help="noise schedule: dash-cosine (Nichol & Dhariwal cosine, betas clipped to [1e-4, 0.9999], as DASH), "
                                 "cosine (diffusers' squaredcos_cap_v2), linear (DDPM); "
                                 + ("a student takes its teacher's" if role == "student" else "cpu/paper tier default dash-cosine"))
        p.add_argument("--train-steps", type=positive_int, default=1000, action=_New, help="training steps of the run (default 1000)")
        p.add_argument("--steps", type=positive_int, dest="train_steps", action=_Renamed, help=argparse.SUPPRESS)
        recipe.add_argument("--batch-size", type=positive_int, help="default per tier: oracle 512, cpu 64, paper 128")
        recipe.add_argument("--lr", type=float, help="peak AdamW learning rate; cpu tier default: "
                            + f"{TIER_DEFAULTS['cpu'][role]['lr']:g}")
        recipe.add_argument("--lr-schedule", choices=list(LR_SCHEDULES),
                            help="diffusers get_scheduler shape after --lr-warmup-steps (cpu tier default: cosine)")
        recipe.add_argument("--lr-warmup-steps", type=int, metavar="N", help="linear warm-up steps")
        recipe.add_argument("--lr-min", type=float, help="floor the schedule decays to (DASH: 1e-6)")
        recipe.add_argument("--lr-decay-steps", type=positive_int, metavar="N",
                            help="steps the schedule decays over (default: --train-steps of the first run; past them the lr stays at the floor; "
                                 "a larger value with --resume extends the schedule from the resumed step, a warm restart)")
        recipe.add_argument("--weight-decay", type=float, help="AdamW weight decay (DASH: 0.01 teacher, 1e-3 student)")
        recipe.add_argument("--dropout", type=float, help="ResBlock / transformer dropout of the trained model (DASH: 0.1)")
        recipe.add_argument("--ema-decay", type=float, help="EMA decay (with warm-up min(decay, (1+n)/(10+n)); DASH: 0.9999 teacher, 0.9995 student)")
        recipe.add_argument("--grad-clip", type=float, help="gradient-norm clip (default 1.0, as DASH)")
        recipe.add_argument("--mixed-precision", choices=list(MIXED_PRECISION),
                            help="accelerate autocast; auto = fp16 + GradScaler on CUDA, bf16 on a CPU with AMX or AVX-512 BF16 units, "
                                 "float32 on other CPUs; weights, loss and "
                                 "outputs stay float32 (cpu tier default: auto; oracle: no)")
        if role == "teacher":
            recipe.add_argument("--label-dropout-per-batch", action="store_true", default=None,
                                help="drop the labels of a whole batch with probability 0.1 (DASH's one coin per batch) "
                                     "instead of each sample's")
        p.add_argument("--tirt", choices=["learned", "teacher", "uniform", "loss-moment"],
                       help="timestep weights (default: learned for teachers, the teacher's frozen TIRT for the weighted dash objectives, uniform otherwise)")
        p.add_argument("--tirt-lr", type=float,
                       help="a separate lr (no weight decay) for a learned TIRT's lambda; default: lambda in the model's "
                            "AdamW group, as DASH")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--checkpoint-every", type=positive_int, default=200)
        p.add_argument("--log-every", type=positive_int, default=10)
        p.add_argument("--audit-every", type=int, default=0, help="light audit of the EMA student every N steps (0: off)")
        p.add_argument("--audit-data", default=None, metavar="SOURCE",
                       help="make the light audit a data probe on these held-out images (as audit's --probe-data: 'auto', "
                            "'fashion-mnist', FILE.npz, ...; its verdict predicts outcomes better, docs/design.md §6); "
                            "default: 16 x 50 trajectories")
        p.add_argument("--export-steps", type=_export_steps, default=[],
                       help="also write the EMA weights (float16, audit-ready) to OUT/exports/ at these steps: "
                            "250,500,1000, or log:250 for 250, 500, 1000, ... up to --train-steps")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        p.add_argument("--no-progress", action="store_true")


def _teacher_schedule(teacher: str) -> str:
    from guidegap.checkpoints import resolve_model
    from guidegap.recording.noise_schedules import schedule_name

    return schedule_name(resolve_model(teacher).scheduler_config) or "linear"


def run_training(args: argparse.Namespace) -> int:
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    if args.audit_data is not None and not (args.audit_every and getattr(args, "teacher", None)):
        raise InputError(f"--audit-data {args.audit_data} sets the light audit's images, but no light audit runs; add "
                         "--audit-every N (a student with --teacher), or drop --audit-data.")
    config = TrainConfig(
        out=args.out, role=args.role, objective=getattr(args, "objective", "scratch") if args.role == "student" else "scratch",
        objective_options=_options(args.objective_option), teacher=getattr(args, "teacher", None), tier=args.tier, arch=args.arch,
        data=args.data, recipe=args.recipe, schedule=args.schedule, train_steps=args.train_steps, batch_size=args.batch_size, lr=args.lr,
        lr_schedule=args.lr_schedule, lr_warmup_steps=args.lr_warmup_steps, lr_min=args.lr_min,
        lr_decay_steps=args.lr_decay_steps, weight_decay=args.weight_decay, dropout=args.dropout,
        ema_decay=args.ema_decay, grad_clip=args.grad_clip, mixed_precision=args.mixed_precision,
        label_dropout_per_batch=getattr(args, "label_dropout_per_batch", None), tirt=args.tirt, tirt_lr=args.tirt_lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, audit_every=args.audit_every,
        progress=not args.no_progress and sys.stderr.isatty(), teacher_cache=getattr(args, "teacher_cache", None),
        export_steps=(log_spaced_steps(int(args.export_steps[4:]), args.train_steps) if isinstance(args.export_steps, str)
                      else args.export_steps),
    )
    callbacks = []
    if args.audit_every and config.teacher:
        from guidegap.training.callbacks import LightAudit

        from pathlib import Path

        callbacks.append(LightAudit(config.teacher, schedule=config.schedule or _teacher_schedule(config.teacher),
                                    store=Path(config.out) / "guidance.zarr", num_train_timesteps=config.num_train_timesteps,
                                    data=args.audit_data))
    result = train(config, callbacks=callbacks, resume=args.resume)
    ratio = f" ({result.teacher_parameters / result.num_parameters:.2f}x fewer than the teacher)" if result.teacher_parameters else ""
    print(f"{config.role}: {result.num_parameters:,} parameters{ratio}; step {result.step}; checkpoint {result.checkpoint}")
    print(json.dumps(result.last_log))
    return EXIT_OK
