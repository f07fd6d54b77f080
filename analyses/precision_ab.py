"""Does bf16 training cost gap accuracy? An A/B at equal seeds and steps, audited in float32 (issue 18, item 3).

``dash`` and ``cond-only`` students of the cpu-tier Fashion-MNIST teacher (3.46M, linear schedule;
``analyses/cpu_tier_teacher.py``), seeds 0 and 1, trained with the cpu tier's
default recipe for the same number of steps, once in float32 and once under bf16 autocast (everything else equal:
batches, teacher targets from one cache per seed, LR schedule, EMA). Each final EMA student is audited against the
teacher in float32 (64 samples x 25 DDIM steps at w = 4, teacher-forced). The table puts rho, gap cosine and the
relative branch errors side by side; the seed-to-seed spread of the same precision is the yardstick.

    python analyses/precision_ab.py --steps 300     # -> analyses/results/precision_ab.{csv,md}
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import torch
from cpu_tier_teacher import cpu_tier_teacher

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "precision_ab"
RESULTS = REPO / "analyses" / "results" / "precision_ab"
AUDIT = dict(num_samples=64, num_steps=25, guidance_scale=4.0, seed=0)
METRICS = ("rho", "cos_delta", "rel_cond_error", "rel_uncond_error")


def run(objective: str, seed: int, precision: str, steps: int) -> Path:
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    out = RUNS / f"{objective}-seed{seed}-{precision}-{steps}"
    config = TrainConfig(out=str(out), role="student", objective=objective, teacher=str(cpu_tier_teacher()), tier="cpu", seed=seed,
                         train_steps=steps, progress=False, checkpoint_every=50, mixed_precision=precision,
                         teacher_cache=str(RUNS / f"teacher_cache_seed{seed}"))
    return train(config, resume=True).checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--objectives", nargs="*", default=["dash", "cond-only"])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    import guidegap
    from guidegap.denoisers import Memoized, as_denoiser

    teacher = Memoized(as_denoiser(guidegap.load_model(cpu_tier_teacher()).model))
    rows = []
    for seed in args.seeds:
        for objective in args.objectives:
            for precision in ("no", "bf16"):
                checkpoint = run(objective, seed, precision, args.steps)
                report = guidegap.audit(str(checkpoint), teacher, **AUDIT)
                rows.append({"objective": objective, "seed": seed, "precision": "float32" if precision == "no" else "bf16",
                             "steps": args.steps, "verdict": report.verdict,
                             **{m: round(float(report.summary[m].value), 4) for m in METRICS}})
                print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS.with_suffix(".csv"), index=False)
    wide = frame.pivot_table(index=["objective", "seed"], columns="precision", values=list(METRICS))
    lines = ["# bf16 vs float32 training: gap accuracy at equal seeds and steps", "",
             f"cpu-tier students of the cpu-tier teacher (3.46M, linear schedule), {args.steps} steps, default recipe; audit {AUDIT['num_samples']} x "
             f"{AUDIT['num_steps']} DDIM at w = {AUDIT['guidance_scale']:g}, float32. Produced by `python analyses/precision_ab.py "
             f"--steps {args.steps}`.", "",
             "| objective | seed | " + " | ".join(f"{m} fp32 | {m} bf16 | diff" for m in METRICS) + " |",
             "|---|---:|" + "---:|---:|---:|" * len(METRICS)]
    for (objective, seed), row in wide.iterrows():
        cells = [f"{row[m, 'float32']:.4f} | {row[m, 'bf16']:.4f} | {row[m, 'bf16'] - row[m, 'float32']:+.4f}" for m in METRICS]
        lines.append(f"| {objective} | {seed} | " + " | ".join(cells) + " |")
    spread = frame.groupby(["objective", "precision"])[list(METRICS)].agg(lambda v: v.max() - v.min())
    lines += ["", "Seed-to-seed spread (max - min over seeds) at the same precision, the yardstick for the differences:", "",
              "| objective | precision | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    lines += [f"| {o} | {p} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for (o, p), row in spread.iterrows()]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
