"""Time to quality of a cpu-tier ``dash`` student: the old recipe against the new default (issue 18).

Both recipes distil the cpu-tier Fashion-MNIST teacher (3.46M, linear schedule; ``analyses/cpu_tier_teacher.py``)
with the same seed, batches and teacher cache, so they differ only by the recipe (and its precision). Each run keeps its EMA student at a few
steps (guidegap checkpoints under ``runs/time_to_quality/<recipe>/``); every kept student is then audited against
the teacher with one fixed audit (float32). Wall time to a quality = steps needed x the recipe's seconds per step,
measured on a quiet machine by ``analyses/bench_training.py`` (step time does not depend on the weights).

The quality to reach is fixed before any new-recipe run is read: the old recipe's gap cosine and its larger relative
branch error at ``--target-step`` (1,000, the issue's example). The old recipe's time is its first kept step that
reaches both; the new recipe's is the shortest run (cosine decay over S steps, one run per S) whose final student
does: a mid-schedule student of a longer run is not what a user who asks for S steps gets.

    python analyses/time_to_quality.py run old          # float32, constant lr 5e-4, EMA 0.99: the reproduction's recipe
    python analyses/time_to_quality.py run new --steps 400
    python analyses/time_to_quality.py audit            # -> analyses/results/time_to_quality.{csv,md}
    python analyses/time_to_quality.py report           # time_to_quality.md again from the csv
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from bench_training import PATHS
from cpu_tier_teacher import cpu_tier_teacher

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "time_to_quality"
RESULTS = REPO / "analyses" / "results" / "time_to_quality.csv"
BENCH = REPO / "analyses" / "results" / "bench_training.json"
PRECISION_OF_PATH = {path: label for label, path in PATHS.items()}  # bench_training's labels of its paths
AUDIT = dict(num_samples=64, num_steps=25, guidance_scale=4.0, seed=0)
SEED = 0

# The recipes compared. ``old``: what the Fashion-MNIST reproduction trained its students with before issue 18.
RECIPES: dict[str, dict] = {
    "old": dict(lr=5e-4, lr_schedule="constant", lr_warmup_steps=0, lr_min=0.0, weight_decay=0.0, dropout=0.0,
                ema_decay=0.99, mixed_precision="no"),
    "new": dict(),  # the cpu tier's defaults (guidegap.training.config)
    # candidates for those defaults, each the defaults with one or two settings changed (names without '-')
    "lr4e3": dict(lr=4e-3),
    "ema099": dict(ema_decay=0.99),
    "lr4e3ema099": dict(lr=4e-3, ema_decay=0.99),
    "lr1e3": dict(lr=1e-3),
    "lr1e3warm100": dict(lr=1e-3, lr_warmup_steps=100),
}


def _keep(out: Path, config, keep: set[int]):
    """A loop callback that stores the EMA student at the steps in ``keep`` as an auditable checkpoint."""
    from guidegap.checkpoints import save_checkpoint
    from guidegap.checkpoints.format import Checkpoint
    from guidegap.training.loop import resolve_mixed_precision
    from guidegap.training.noise import noise_scheduler

    def callback(step: int, student) -> dict | None:
        if step not in keep:
            return None
        scheduler = noise_scheduler(config.schedule, config.num_train_timesteps)
        precision = resolve_mixed_precision(config.mixed_precision, torch.cuda.is_available())
        save_checkpoint(Checkpoint(model_class=config.model_class, model_config=config.model_config,
                                   state_dict=student.module.state_dict(),
                                   scheduler_config={"_class_name": type(scheduler).__name__, **scheduler.config},
                                   step=step, metadata={"config": config.to_dict(), "role": "student",
                                                 "mixed_precision_resolved": precision}),
                        out / f"ema_step{step:05d}.pt")
        return {"kept": step}

    return callback


def run(recipe: str, steps: int, keep: list[int], objective: str) -> None:
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    out = RUNS / f"{objective}-{recipe}-{steps}"
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(out=str(out), role="student", objective=objective, teacher=str(cpu_tier_teacher()), tier="cpu", seed=SEED,
                         train_steps=steps, progress=False, checkpoint_every=50, audit_every=50,
                         teacher_cache=str(RUNS / "teacher_cache"), **RECIPES[recipe])
    started = time.perf_counter()
    train(config, callbacks=[_keep(out, config, set(keep) | {steps})], resume=True)
    print(f"{recipe}: {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)


def audit() -> pd.DataFrame:
    import guidegap
    from guidegap.checkpoints.loading import read_checkpoint
    from guidegap.denoisers import Memoized, as_denoiser

    teacher = Memoized(as_denoiser(guidegap.load_model(cpu_tier_teacher()).model))
    done = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame(columns=["run", "step"])
    rows = done.to_dict("records")
    for path in sorted(RUNS.glob("*/ema_step*.pt")):
        step = int(path.stem.removeprefix("ema_step"))
        if ((done.run == path.parent.name) & (done.step == step)).any():
            continue  # audited before (the audit is seeded: same file, same numbers)
        report = guidegap.audit(str(path), teacher, **AUDIT)
        s = report.summary
        precision = read_checkpoint(path).metadata.get("mixed_precision_resolved", "")
        rows.append({"run": path.parent.name, "step": step, "precision": PRECISION_OF_PATH.get(precision, precision), "verdict": report.verdict,
                     **{k: round(float(s[k].value), 4) for k in ("rho", "cos_delta", "rel_cond_error", "rel_uncond_error")}})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).sort_values(["run", "step"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS, index=False)
    return frame


def _recipe(run: str) -> tuple[str, str, int]:
    """(objective, recipe, planned steps) of a run folder named ``<objective>-<recipe>-<steps>``."""
    objective, recipe, steps = run.rsplit("-", 2)
    return objective, recipe, int(steps)


def time_to_quality(frame: pd.DataFrame, seconds_per_step: dict[str, float], target_step: int = 1000,
                    objective: str = "dash") -> list[str]:
    """The comparison's lines: the target (the old recipe at ``target_step``), each recipe's steps and wall time to it."""
    frame = frame.assign(**dict(zip(("objective", "recipe", "planned"), zip(*frame.run.map(_recipe)))))
    frame = frame[frame.objective == objective].assign(
        branch_error=lambda f: f[["rel_cond_error", "rel_uncond_error"]].max(axis=1))
    old = frame[frame.recipe == "old"].sort_values("step")
    target = old[old.step == target_step]
    if target.empty:
        raise SystemExit(f"expected the old recipe's student at step {target_step} in {RESULTS}, received steps "
                         f"{sorted(old.step)}; fix: python analyses/time_to_quality.py run old --steps {target_step}, then audit.")
    cos_target, error_target = float(target.cos_delta.iloc[0]), float(target.branch_error.iloc[0])

    def reached(rows: pd.DataFrame) -> pd.DataFrame:
        return rows[(rows.cos_delta >= cos_target) & (rows.branch_error <= error_target)]

    old_steps = int(reached(old).step.min())
    old_seconds = old_steps * seconds_per_step["float32"]
    lines = ["", "## Time to quality", "",
             f"Target, fixed as the old recipe's student at step {target_step}: gap cosine >= {cos_target:.4f} and larger "
             f"relative branch error <= {error_target:.4f}. Seconds per step: `analyses/results/bench_training.json` "
             f"({', '.join(f'{k} {v:.3f} s' for k, v in seconds_per_step.items())}), the dash step of each path on the cpu tier with the teacher cached, one quiet run. "
             "A recipe's steps to the target: its shortest run whose final student reaches it.", "",
             "| recipe | path | steps to target | s/step | wall time to target | vs old | runs that miss it (steps: cos / error) |",
             "|---|---|---:|---:|---:|---:|---|",
             f"| old | float32 | {old_steps} | {seconds_per_step['float32']:.3f} | {old_seconds:.0f} s | 1.00x | |"]
    trained = set(frame.recipe)
    for recipe in [r for r in RECIPES if r != "old" and r in trained]:
        finals = frame[(frame.recipe == recipe) & (frame.step == frame.planned)].sort_values("step")
        hits = reached(finals)
        hit_steps = int(hits.step.iloc[0]) if not hits.empty else None
        misses = ", ".join(f"{int(r.step)}: {r.cos_delta:.4f} / {r.branch_error:.4f}"
                           for r in finals.itertuples() if hit_steps is None or r.step < hit_steps)
        if hit_steps is None:
            lines.append(f"| {recipe} | {finals.precision.iloc[0]} | not reached | | | | {misses} |")
            continue
        path = hits.precision.iloc[0]  # bench_training's label of the path the run trained in
        seconds = hit_steps * seconds_per_step[path]
        lines.append(f"| {recipe} | {path} | {hit_steps} | {seconds_per_step[path]:.3f} | {seconds:.0f} s | "
                     f"**{old_seconds / seconds:.2f}x less** ({old_steps / hit_steps:.2f}x from steps, "
                     f"{seconds_per_step['float32'] / seconds_per_step[path]:.2f}x per step) | {misses} |")
    return lines


def report(frame: pd.DataFrame, target_step: int, objective: str) -> None:
    """time_to_quality.md: the audited students' table and the time-to-quality section, both from ``frame``."""
    section = time_to_quality(frame, json.loads(BENCH.read_text())["dash_seconds_per_step"], target_step, objective)
    write_markdown(frame, section)
    print("\n".join(section))


def write_markdown(frame: pd.DataFrame, section: list[str]) -> None:
    header = ["# Time to quality of a cpu-tier dash student: old recipe vs the new default", "",
              f"Teacher: the cpu-tier Fashion-MNIST teacher (3.46M, linear schedule; `analyses/cpu_tier_teacher.py`). Seed "
              f"{SEED}, batch 64, shared teacher cache. "
              f"Audit: {AUDIT['num_samples']} samples x {AUDIT['num_steps']} DDIM steps at w = {AUDIT['guidance_scale']:g}, "
              "float32, of the EMA student kept at each step. `old`: constant lr 5e-4, EMA 0.99, float32. `new-S`: the cpu "
              "tier's defaults (lr 2e-3, 50 warm-up steps, cosine decay over S steps, wd 1e-3, EMA 0.995; mixed precision "
              "'auto', resolved as the precision column says), a separate run per S; its intermediate rows are mid-schedule. "
              "`lr4e3`, `ema099`, `lr4e3ema099`, `lr1e3`, `lr1e3warm100`: candidates for those defaults, with lr 4e-3 and / or "
              "EMA 0.99, or lr 1e-3 (with 100 warm-up steps) (the EMA's "
              "warm-up min(decay, (1 + n) / (10 + n)) reaches 0.99 only at n = 890 and 0.995 at n = 1,790, so at "
              "600 steps `ema099` keeps the student of `new` exactly). "
              "Produced by `python analyses/time_to_quality.py audit`.", ""]
    RESULTS.with_suffix(".md").write_text("\n".join(header) + frame.to_markdown(index=False) + "\n" + "\n".join(section) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["run", "audit", "report"])
    parser.add_argument("recipe", nargs="?", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keep", type=int, nargs="*", default=[100, 200, 300, 400, 500, 600, 700, 800, 900])
    parser.add_argument("--objective", default="dash")
    parser.add_argument("--target-step", type=int, default=1000, help="the old recipe's step whose quality is the target")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    if args.stage == "run":
        run(args.recipe, args.steps, [k for k in args.keep if k < args.steps], args.objective)
    else:  # the audit stage reports too, so the Markdown's table and its section never disagree
        report(audit() if args.stage == "audit" else pd.read_csv(RESULTS), args.target_step, args.objective)
    return 0


if __name__ == "__main__":
    sys.exit(main())
