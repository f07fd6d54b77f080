"""How many samples x steps does the collapse detector need for a stable verdict? (issue 7)

For every Fashion-MNIST student of the reproduction (``analyses/fashion_mnist.py``, exported checkpoints), audit
against the teacher at a grid of (num_samples, num_steps) with several seeds and compare each verdict with the
reference verdict of the reproduction table (64 samples x 50 steps, seed 0). Reports, per setting, how often the
verdict agrees and what the audit costs; the cheapest setting that agrees everywhere is the monitor's default.
The teacher's passes are shared across students (``guidegap.denoisers.Memoized``); ``divergence`` is off
(verdicts do not use it).

    python analyses/bench_detector.py                # writes analyses/results/bench_detector.{csv,md}
    python analyses/bench_detector.py --tables-only  # rebuilds the .md from the stored .csv
    python analyses/bench_detector.py --population --threshold max_rel_guided_error=0.35 --threshold min_cos=-1
        # the detector validation's members (analyses/results/detector_validation.csv, after its `analyze`), each
        # reference verdict re-judged under the given thresholds from its stored 64 x 50 seed-0 summary
    python analyses/bench_detector.py --population --probe --threshold max_rel_guided_error_probe=0.19 ...
        # data-probe audits (guidegap audit --probe-data fashion-mnist) of N test images, against each member's
        # 10,000-image probe: how many images a stable probe verdict needs (writes bench_detector_population_probe.*)

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
from guidegap.auditing.verdicts import Thresholds
from guidegap.denoisers import Memoized, as_denoiser

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLE = HERE / "results" / "fashion_mnist.csv"
OUT = HERE / "results" / "bench_detector"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", help="trajectories (default 8 16 32 64), or with --probe test "
                        "images (default 250 500 1000 2000)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--runs", nargs="*", help="students to include (default: every student in the table)")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the .md from the stored .csv, no audits")
    parser.add_argument("--population", action="store_true",
                        help="the detector validation's members instead of the reproduction table's students")
    parser.add_argument("--probe", action="store_true", help="data-probe audits on Fashion-MNIST test images instead of "
                        "trajectories (--steps does not apply); the reference is each member's 10,000-image probe")
    parser.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                        help="judge every audit and reference under these verdict thresholds (repeatable)")
    args = parser.parse_args(argv)
    if args.probe and not args.population:
        parser.error("--probe needs --population: the reproduction table stores no per-student probe reference to re-judge")
    args.samples = args.samples or ([250, 500, 1000, 2000] if args.probe else [8, 16, 32, 64])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    thresholds = Thresholds(**{k: float(v) for k, v in (item.split("=", 1) for item in args.threshold)})
    table = reference_table(args.population, thresholds, "probe" if args.probe else "tf")
    out = OUT.with_name(OUT.name + "_population" + ("_probe" if args.probe else "")) if args.population else OUT
    if args.tables_only:
        frame = pd.read_csv(out.with_suffix(".csv"))
        write_tables(frame, table, "(tables rebuilt from the stored csv)", out, thresholds)
        return 0
    students = table[table.run != "teacher"]
    if args.runs:
        students = students[students.run.isin(args.runs)]
    teacher_path = REPO / pd.read_csv(TABLE).set_index("run").loc["teacher", "checkpoint"]
    teacher_model = as_denoiser(guidegap.load_model(teacher_path).model)
    missing = [row.checkpoint for row in students.itertuples() if not (REPO / row.checkpoint).exists()]
    if missing:
        sys.exit(f"{len(missing)} checkpoint(s) missing, e.g. {missing[0]}; constructed members are re-made by "
                 "python analyses/detector_validation.py construct.")
    models = {row.run: (REPO / row.checkpoint, row.verdict) for row in students.itertuples()}
    settings = [(n, 0) for n in args.samples] if args.probe else [(n, s) for n in args.samples for s in args.steps]
    rows = []
    started = time.perf_counter()
    for num_samples, num_steps in settings:
        for seed in args.seeds:
            teacher = Memoized(teacher_model)  # fresh per (setting, seed): memory stays one audit's worth
            for name, (path, reference) in models.items():
                t0 = time.perf_counter()
                if args.probe:
                    report = guidegap.audit(str(path), teacher, data="fashion-mnist", num_samples=num_samples, seed=seed,
                                            n_boot=200, thresholds=thresholds)
                else:
                    report = guidegap.audit(str(path), teacher, num_samples=num_samples, num_steps=num_steps, seed=seed,
                                            divergence=False, n_boot=200, thresholds=thresholds)
                rows.append({"num_samples": num_samples, "num_steps": num_steps, "seed": seed, "run": name,
                             "verdict": report.verdict, "reference": reference, "agrees": report.verdict == reference,
                             "rho": report.summary["rho"].value, "cos_delta": report.summary["cos_delta"].value,
                             "rel_guided_error": report.summary["rel_guided_error"].value,
                             "seconds": time.perf_counter() - t0})
            print(f"{num_samples:>3} {'images' if args.probe else f'samples x {num_steps:>2} steps'}, seed {seed}: "
                  f"{sum(r['agrees'] for r in rows[-len(models):])}/{len(models)} agree", flush=True)
    frame = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    write_tables(frame, table, f"run took {time.perf_counter() - started:.0f} s", out, thresholds)
    return 0


def reference_table(population: bool, thresholds: Thresholds, mode: str = "tf") -> pd.DataFrame:
    """Per student (``run``): its checkpoint and its reference audit's (64 x 50, seed 0; with ``mode="probe"`` the
    10,000-image data probe) rho, gap cosine, relative guided error and verdict under ``thresholds`` — re-judged by
    guidegap's own judge from the stored summary, so a threshold change moves the reference and the cheap audits alike."""
    sys.path.insert(0, str(HERE))
    import detector_validation as validation

    source = validation.TABLE if population else TABLE
    if not source.exists():
        sys.exit(f"{source} is missing; run python analyses/{'detector_validation.py analyze' if population else 'fashion_mnist.py all'} first.")
    frame = pd.read_csv(source)
    if population:
        return frame.copy().assign(run=frame.member, rho=frame[f"{mode}_rho"], cos_delta=frame[f"{mode}_cos_delta"],
                                   rel_guided_error=frame[f"{mode}_all_rel_guided_error"],
                                   verdict=validation.library_verdicts(frame, mode, thresholds))
    # the table's students: each reference audit Dataset (step_N_audit.nc) judged again by guidegap itself
    import xarray as xr

    from guidegap.auditing.judge import judge

    for i, row in frame[frame.run != "teacher"].iterrows():
        audits = sorted((HERE / "results" / "fashion_mnist" / row.run).glob("step_*_audit.nc"))
        if not audits:
            sys.exit(f"{row.run} has no reference audit (step_N_audit.nc); run python analyses/fashion_mnist.py evaluate.")
        with xr.open_dataset(audits[-1], engine="h5netcdf") as ds:
            judgement = judge(ds.load(), thresholds, phases=False)
        frame.loc[i, "verdict"] = judgement.verdict
        for name in ("rho", "cos_delta", "rel_guided_error"):
            frame.loc[i, name] = judgement.summary[name].value
    return frame


def write_tables(frame: pd.DataFrame, table: pd.DataFrame, timing: str, out: Path, thresholds: Thresholds) -> None:
    """Agreement, cost and the spread of rho / gap cosine / relative guided error around the reference audit, per setting."""
    reference = table.set_index("run")
    if "rel_guided_error" not in frame:  # a csv from before the statistic existed
        frame = frame.assign(rel_guided_error=float("nan"))
    frame = frame.assign(reference=frame.run.map(reference.verdict))
    frame = frame.assign(agrees=frame.verdict == frame.reference,
                         rho_rel_dev=(frame.rho / frame.run.map(reference.rho) - 1).abs(),
                         cos_dev=(frame.cos_delta - frame.run.map(reference.cos_delta)).abs(),
                         guided_rel_dev=(frame.rel_guided_error / frame.run.map(reference.rel_guided_error) - 1).abs())
    summary = (frame.groupby(["num_samples", "num_steps"])
               .agg(agreement=("agrees", "mean"), audits=("agrees", "size"), seconds_per_student=("seconds", "median"),
                    rho_rel_dev_median=("rho_rel_dev", "median"), rho_rel_dev_max=("rho_rel_dev", "max"),
                    cos_dev_median=("cos_dev", "median"), cos_dev_max=("cos_dev", "max"),
                    guided_rel_dev_median=("guided_rel_dev", "median"), guided_rel_dev_max=("guided_rel_dev", "max"))
               .reset_index())
    disagreements = frame[~frame.agrees][["num_samples", "num_steps", "seed", "run", "verdict", "reference", "rho", "cos_delta",
                                          "rel_guided_error"]]
    changed = {k: v for k, v in thresholds.to_dict().items() if v != getattr(Thresholds(), k)}
    lines = [
        "# Collapse-detector stability on the Fashion-MNIST students",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; {timing}. "
        f"Students: {', '.join(frame.run.unique())}. Seeds {sorted(frame.seed.unique().tolist())}; reference: each student's "
        + ("10,000-image data probe (num_samples: test images of the cheap probes; num_steps 0: no trajectory)"
           if bool((frame.num_steps == 0).all()) else "64 samples x 50 steps, seed 0 audit")
        + ", judged by guidegap under the same thresholds "
        f"({', '.join(f'{k}={v}' for k, v in changed.items()) or 'the defaults'}). Teacher passes shared "
        "across students, so seconds per student exclude most of the teacher's cost. `rho_rel_dev` = |rho / rho_ref - 1|, "
        "`cos_dev` = |cos - cos_ref|, `guided_rel_dev` = |rel_guided_error / its reference - 1|, over students and seeds.",
        "",
        summary.to_markdown(index=False, floatfmt=".3g"),
        "",
        "Disagreements:",
        "",
        disagreements.to_markdown(index=False, floatfmt=".3g") if len(disagreements) else "none",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
