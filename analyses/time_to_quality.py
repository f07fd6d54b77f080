"""Time to quality of a cpu-tier ``dash`` student: the old recipe against the new default (issue 18).

Both recipes distil the shipped Fashion-MNIST teacher (``guidegap/examples/fashion_mnist/teacher.pt``) with the
same seed, batches and teacher cache, so they differ only by the recipe. Each run keeps its EMA student at a few
steps (guidegap checkpoints under ``runs/time_to_quality/<recipe>/``); every kept student is then audited against
the teacher with one fixed audit (float32). Wall time to a quality = steps needed x the recipe's seconds per step,
measured on a quiet machine by ``analyses/bench_training.py`` (step time does not depend on the weights).

    python analyses/time_to_quality.py run old          # float32, constant lr 5e-4, EMA 0.99: the reproduction's recipe
    python analyses/time_to_quality.py run new --steps 400
    python analyses/time_to_quality.py audit            # -> analyses/results/time_to_quality.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "time_to_quality"
TEACHER = REPO / "guidegap" / "examples" / "fashion_mnist" / "teacher.pt"
RESULTS = REPO / "analyses" / "results" / "time_to_quality.csv"
AUDIT = dict(num_samples=64, num_steps=25, guidance_scale=4.0, seed=0)
SEED = 0

# The recipes compared. ``old``: what the Fashion-MNIST reproduction trained its students with before issue 18.
RECIPES: dict[str, dict] = {
    "old": dict(lr=5e-4, lr_schedule="constant", lr_warmup_steps=0, lr_min=0.0, weight_decay=0.0, dropout=0.0,
                ema_decay=0.99, mixed_precision="no"),
    "new": dict(),  # the cpu tier's defaults (guidegap.training.config)
}


def _keep(out: Path, config, keep: set[int]):
    """A loop callback that stores the EMA student at the steps in ``keep`` as an auditable checkpoint."""
    from guidegap.checkpoints import save_checkpoint
    from guidegap.checkpoints.format import Checkpoint
    from guidegap.training.noise import noise_scheduler

    def callback(step: int, student) -> dict | None:
        if step not in keep:
            return None
        scheduler = noise_scheduler(config.schedule, config.num_train_timesteps)
        save_checkpoint(Checkpoint(model_class=config.model_class, model_config=config.model_config,
                                   state_dict=student.module.state_dict(),
                                   scheduler_config={"_class_name": type(scheduler).__name__, **scheduler.config},
                                   step=step, metadata={"config": config.to_dict(), "role": "student"}),
                        out / f"ema_step{step:05d}.pt")
        return {"kept": step}

    return callback


def run(recipe: str, steps: int, keep: list[int], objective: str) -> None:
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    out = RUNS / f"{objective}-{recipe}-{steps}"
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(out=str(out), role="student", objective=objective, teacher=str(TEACHER), tier="cpu", seed=SEED,
                         train_steps=steps, progress=False, checkpoint_every=50, audit_every=50,
                         teacher_cache=str(RUNS / "teacher_cache"), **RECIPES[recipe])
    started = time.perf_counter()
    train(config, callbacks=[_keep(out, config, set(keep) | {steps})], resume=True)
    print(f"{recipe}: {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)


def audit() -> pd.DataFrame:
    import guidegap
    from guidegap.denoisers import Memoized, as_denoiser

    teacher = Memoized(as_denoiser(guidegap.load_model(TEACHER).model))
    done = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame(columns=["run", "step"])
    rows = done.to_dict("records")
    for path in sorted(RUNS.glob("*/ema_step*.pt")):
        step = int(path.stem.removeprefix("ema_step"))
        if ((done.run == path.parent.name) & (done.step == step)).any():
            continue  # audited before (the audit is seeded: same file, same numbers)
        report = guidegap.audit(str(path), teacher, **AUDIT)
        s = report.summary
        rows.append({"run": path.parent.name, "step": int(path.stem.removeprefix("ema_step")), "verdict": report.verdict,
                     **{k: round(float(s[k].value), 4) for k in ("rho", "cos_delta", "rel_cond_error", "rel_uncond_error")}})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).sort_values(["run", "step"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS, index=False)
    header = ["# Time to quality of a cpu-tier dash student: old recipe vs the new default", "",
              f"Teacher: the shipped Fashion-MNIST teacher (linear schedule). Seed {SEED}, batch 64, shared teacher cache. "
              f"Audit: {AUDIT['num_samples']} samples x {AUDIT['num_steps']} DDIM steps at w = {AUDIT['guidance_scale']:g}, "
              "float32, of the EMA student kept at each step. `old`: constant lr 5e-4, EMA 0.99, float32. `new-S`: the cpu "
              "tier's defaults (lr 2e-3, 50 warm-up steps, cosine decay over S steps, wd 1e-3, EMA 0.995; mixed precision "
              "'auto'), a separate run per S; its intermediate rows are mid-schedule. Produced by "
              "`python analyses/time_to_quality.py audit`.", ""]
    RESULTS.with_suffix(".md").write_text("\n".join(header) + frame.to_markdown(index=False) + "\n")
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["run", "audit"])
    parser.add_argument("recipe", nargs="?", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keep", type=int, nargs="*", default=[100, 200, 300, 400, 500, 600, 700, 800, 900])
    parser.add_argument("--objective", default="dash")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    if args.stage == "run":
        run(args.recipe, args.steps, [k for k in args.keep if k < args.steps], args.objective)
    else:
        audit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
