"""Is the reproduction's verdict a matter of budget? Continue one student past the table's budget and audit it.

The table of ``analyses/fashion_mnist.py`` gives every student the same 400 steps. This script copies one trained
run (default ``dash-no-tirt``, the best DASH variant there) to ``runs/fashion_mnist/<run>-long``, resumes it on the
same recipe (same seed, data stream, lr, EMA and teacher cache) to each requested step count, keeps a copy of the
checkpoint at each, and audits it against the teacher exactly as the table does (64 samples x 50 DDIM steps at
w = 4, teacher-forced; the EMA weights in float32, not the float16 export). Writes
``analyses/results/fashion_mnist_scaling.csv`` (one block of rows per run, the others kept); every stage is resumable.

    python analyses/fashion_mnist_scaling.py --steps 700 1000 1300 2000        # train + audit
    python analyses/fashion_mnist_scaling.py --steps 700 1000 1300 --audit-only # re-audit kept checkpoints
    python analyses/fashion_mnist_scaling.py --run dash --steps 1000 2000       # the same for DASH as specified
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist as repro  # noqa: E402

import guidegap  # noqa: E402
from guidegap.checkpoints import read_checkpoint  # noqa: E402
from guidegap.denoisers import Memoized, as_denoiser  # noqa: E402
from guidegap.training.config import TrainConfig  # noqa: E402
from guidegap.training.loop import train  # noqa: E402

OUT = repro.HERE / "results" / "fashion_mnist_scaling.csv"
METRICS = ("rho", "cos_delta", "gap_mse", "rel_cond_error", "rel_uncond_error")  # columns of the table and the audit summary


def continued(run: str) -> Path:
    return repro.RUNS / f"{run}-long"


def extend(run: str, steps: int) -> Path:
    """Resume the copy of ``run`` to ``steps`` on the table's recipe; returns the kept checkpoint of that step."""
    folder = continued(run)
    kept = folder / f"step{steps}.pt"
    if kept.exists():
        return kept
    if not folder.exists():
        source = repro.RUNS / run
        if not (source / "checkpoint.pt").exists():
            raise SystemExit(f"{source}/checkpoint.pt is missing; run python analyses/fashion_mnist.py train --only {run} first.")
        shutil.copytree(source, folder)
    stored = TrainConfig.from_dict(read_checkpoint(folder / "checkpoint.pt").metadata["config"])
    config = dataclasses.replace(stored, out=str(folder), train_steps=steps, progress=False,
                                 teacher_cache=str(repro.RUNS / "teacher_cache"))
    started = time.perf_counter()
    train(config, resume=True)
    repro.log(f"{run}: trained to step {steps} ({time.perf_counter() - started:.0f} s)")
    shutil.copy(folder / "checkpoint.pt", kept)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="dash-no-tirt", choices=repro.STUDENTS)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--audit-only", action="store_true", help="audit the kept checkpoints, train nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    teacher = Memoized(as_denoiser(guidegap.load_model(repro.exported("teacher")).model))
    table = pd.read_csv(repro.TABLE).set_index("run")
    rows = [{"run": args.run, "steps": repro.STUDENT["steps"], "weights": "float16 export (table row)",
             **{name: table.loc[args.run, name] for name in METRICS}, "verdict": table.loc[args.run, "verdict"]}]
    for steps in sorted(args.steps):
        kept = continued(args.run) / f"step{steps}.pt"
        if not args.audit_only:
            kept = extend(args.run, steps)
        if not kept.exists():
            raise SystemExit(f"{kept} is missing; run without --audit-only first.")
        report = guidegap.audit(str(kept), teacher, **repro.AUDIT)
        summary = {k: v.value for k, v in report.summary.items()}
        rows.append({"run": args.run, "steps": steps, "weights": "float32 EMA (training checkpoint)",
                     **{name: summary[name] for name in METRICS}, "verdict": report.verdict})
        repro.log(f"{args.run} @ {steps}: {report.verdict} rho {summary['rho']:.3f} cos {summary['cos_delta']:.3f}")
    frame = pd.DataFrame(rows)
    if OUT.exists():  # keep the other runs' rows
        kept_rows = pd.read_csv(OUT)
        frame = pd.concat([kept_rows[kept_rows.run != args.run], frame], ignore_index=True)
    from guidegap.atomic import atomic_path

    with atomic_path(OUT) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    repro.log(f"wrote {OUT.relative_to(repro.REPO)}")
    print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
