"""How many samples x steps does the collapse detector need for a stable verdict? (issue 7)

For every Fashion-MNIST student of the reproduction (``analyses/fashion_mnist.py``, exported checkpoints), audit
against the teacher at a grid of (num_samples, num_steps) with several seeds and compare each verdict with the
reference verdict of the reproduction table (64 samples x 50 steps, seed 0). Reports, per setting, how often the
verdict agrees and what the audit costs; the cheapest setting that agrees everywhere is the monitor's default.
The teacher's passes are shared across students (``guidegap.denoisers.Memoized``); ``divergence`` is off
(verdicts do not use it).

    python analyses/bench_detector.py                # writes analyses/results/bench_detector.{csv,md}
    python analyses/bench_detector.py --tables-only  # rebuilds the .md from the stored .csv

Agreement alone is a weak test when every student sits far from a threshold, so the table also reports how far each
setting's rho (relative) and gap cosine (absolute) move from the reference audit: a student closer than that to a
threshold can change verdict at that setting.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import guidegap
from guidegap.denoisers import Memoized, as_denoiser

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLE = HERE / "results" / "fashion_mnist.csv"
OUT = HERE / "results" / "bench_detector"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--runs", nargs="*", help="students to include (default: every student in the table)")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the .md from the stored .csv, no audits")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    if not TABLE.exists():
        sys.exit(f"{TABLE} is missing; run python analyses/fashion_mnist.py all first.")
    table = pd.read_csv(TABLE)
    if args.tables_only:
        frame = pd.read_csv(OUT.with_suffix(".csv"))
        write_tables(frame, table, "(tables rebuilt from the stored csv)")
        return 0
    students = table[table.run != "teacher"]
    if args.runs:
        students = students[students.run.isin(args.runs)]
    teacher_path = REPO / table.set_index("run").loc["teacher", "checkpoint"]
    teacher_model = as_denoiser(guidegap.load_model(teacher_path).model)
    models = {row.run: (REPO / row.checkpoint, row.verdict) for row in students.itertuples()}
    settings = [(n, s) for n in args.samples for s in args.steps]
    rows = []
    started = time.perf_counter()
    for num_samples, num_steps in settings:
        for seed in args.seeds:
            teacher = Memoized(teacher_model)  # fresh per (setting, seed): memory stays one audit's worth
            for name, (path, reference) in models.items():
                t0 = time.perf_counter()
                report = guidegap.audit(str(path), teacher, num_samples=num_samples, num_steps=num_steps, seed=seed,
                                        divergence=False, n_boot=200)
                rows.append({"num_samples": num_samples, "num_steps": num_steps, "seed": seed, "run": name,
                             "verdict": report.verdict, "reference": reference, "agrees": report.verdict == reference,
                             "rho": report.summary["rho"].value, "cos_delta": report.summary["cos_delta"].value,
                             "seconds": time.perf_counter() - t0})
            print(f"{num_samples:>3} samples x {num_steps:>2} steps, seed {seed}: "
                  f"{sum(r['agrees'] for r in rows[-len(models):])}/{len(models)} agree", flush=True)
    frame = pd.DataFrame(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT.with_suffix(".csv"), index=False)
    write_tables(frame, table, f"run took {time.perf_counter() - started:.0f} s")
    return 0


def write_tables(frame: pd.DataFrame, table: pd.DataFrame, timing: str) -> None:
    """Agreement, cost and the spread of rho / gap cosine around the reference audit, per setting."""
    reference = table.set_index("run")
    frame = frame.assign(rho_rel_dev=(frame.rho / frame.run.map(reference.rho) - 1).abs(),
                         cos_dev=(frame.cos_delta - frame.run.map(reference.cos_delta)).abs())
    summary = (frame.groupby(["num_samples", "num_steps"])
               .agg(agreement=("agrees", "mean"), audits=("agrees", "size"), seconds_per_student=("seconds", "median"),
                    rho_rel_dev_median=("rho_rel_dev", "median"), rho_rel_dev_max=("rho_rel_dev", "max"),
                    cos_dev_median=("cos_dev", "median"), cos_dev_max=("cos_dev", "max"))
               .reset_index())
    disagreements = frame[~frame.agrees][["num_samples", "num_steps", "seed", "run", "verdict", "reference", "rho", "cos_delta"]]
    lines = [
        "# Collapse-detector stability on the Fashion-MNIST students",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; {timing}. "
        f"Students: {', '.join(frame.run.unique())}. Seeds {sorted(frame.seed.unique().tolist())}; reference: the verdict, rho "
        "and gap cosine in analyses/results/fashion_mnist.csv (64 samples x 50 steps, seed 0). Teacher passes shared "
        "across students, so seconds per student exclude most of the teacher's cost. `rho_rel_dev` = |rho / rho_ref - 1|, "
        "`cos_dev` = |cos - cos_ref|, over students and seeds.",
        "",
        summary.to_markdown(index=False, floatfmt=".3g"),
        "",
        "Disagreements:",
        "",
        disagreements.to_markdown(index=False, floatfmt=".3g") if len(disagreements) else "none",
    ]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
