"""How much of the Fashion-MNIST reproduction is the seed? (docs/design.md §6, "Seed spread of the reproduction")

The reproduction's table trains each student once, at seed 0. This measures `dash` at seeds 0, 1 and 2 and
`dash-no-tirt` at seeds 0, 1 and 2 (same teacher, recipe and budget; another initialisation and batch order): each run's
last export evaluated as the campaign evaluates its students (FD at w = 1, 4 and DASH's TAG, fidelity, the
teacher-forced audit and the data probe), issue 13's bars for `dash` per seed, and the spread.

    python analyses/seed_spread.py train      # dash and dash-no-tirt at seed 2 (resumable; ~65 min each on the 2-core CPU)
    python analyses/seed_spread.py evaluate   # the seed replicates' evaluations with TAG sets (~4 min each)
    python analyses/seed_spread.py report     # analyses/results/seed_spread.{csv,md}
    python analyses/seed_spread.py all        # the three in order
    python analyses/seed_spread.py status     # which runs are trained (or at which step) and evaluated
    python analyses/seed_spread.py snapshot   # pack a run still training (a new machine resumes it)

Seed 0 is the campaign's own run and evaluation; seed 1 the detector validation's replicate
(``detector_validation.EXTRA_STUDENTS``), whose FD at w = 1 and 4 this evaluation must reproduce exactly (the same
checkpoint, sampler and seeds); seed 2 trains here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_validation as validation  # noqa: E402
import fashion_mnist as campaign  # noqa: E402
import tag_validation  # noqa: E402

from guidegap.atomic import write_bytes_atomic  # noqa: E402
from guidegap.auditing.verdicts import Thresholds  # noqa: E402

RESULTS = campaign.HERE / "results" / "seed_spread"
TABLE = campaign.HERE / "results" / "seed_spread.csv"
REPORT = TABLE.with_suffix(".md")
# issue 13's bars for `dash` ("Done when"): healthy, rho >= 0.85, FD within 1.6x the teacher's (FD at TAG, the table's)
DASH_BARS = {"rho_min": 0.85, "fd_over_teacher_max": 1.6}


@dataclass(frozen=True)
class SeedRun:
    """One training of an objective at one seed, and where it comes from."""

    objective: str
    seed: int
    name: str  # the run's folder and checkpoint folder name
    source: str  # "campaign", "detector validation" or "seed spread" (trained here)

    @property
    def run(self) -> campaign.Run:
        return campaign.Run(self.name, self.objective, campaign.BUDGET)

    @property
    def evaluation(self) -> Path:
        """The campaign's evaluation of its own runs (with TAG sets); this script's for the replicates."""
        return campaign.evaluation_path(self.run) if self.source == "campaign" else RESULTS / f"{self.name}.nc"


SEED_RUNS = (
    SeedRun("dash", 0, "dash", "campaign"),
    SeedRun("dash", 1, "dash-seed1", "detector validation"),
    SeedRun("dash", 2, "dash-seed2", "seed spread"),
    SeedRun("dash-no-tirt", 0, "dash-no-tirt", "campaign"),
    SeedRun("dash-no-tirt", 1, "dash-no-tirt-seed1", "detector validation"),
    # added 2026-12-08 after the five above were measured, before it trained: a third seed-matched pair
    SeedRun("dash-no-tirt", 2, "dash-no-tirt-seed2", "seed spread"),
)


# -- training ----------------------------------------------------------------------------------------------------
def trained_here() -> list[SeedRun]:
    return [r for r in SEED_RUNS if r.source == "seed spread"]


def train() -> None:
    """The runs this script trains: the campaign's student recipe at another seed, without the shared teacher cache
    (it holds seed 0's batches), its light audit and exports as every campaign student's."""
    for entry in trained_here():
        campaign.train_run(entry.run, validation.extra_student_config(entry.run, {}, entry.seed))


def status() -> None:
    """Each run: trained (and to which step, while training), evaluated."""
    for entry in SEED_RUNS:
        if entry.run.checkpoint().exists():
            trained = "trained"
        else:
            folder = campaign.RUNS / entry.name / "checkpoint.pt"
            step = campaign.read_checkpoint(folder).step if folder.exists() else 0
            trained = f"training {step}/{entry.run.steps}" if step else "not started"
        print(f"{entry.objective:14s} seed {entry.seed}  {entry.name:20s} {entry.source:20s} {trained:22s} "
              f"{'evaluated' if entry.evaluation.exists() else 'not evaluated'}")


def snapshot() -> None:
    for entry in trained_here():
        campaign.snapshot_run(entry.run, campaign.exported(entry.run))


# -- evaluation --------------------------------------------------------------------------------------------------
REPRODUCED = ("fd", "fd_accuracy", "fidelity_accuracy")  # what a seed-1 evaluation must reproduce (w = 1 and 4)


def evaluate() -> None:
    """The replicates' last exports, evaluated as the campaign evaluates its students (with TAG sets)."""
    context = convention = None
    for entry in SEED_RUNS:
        if entry.source == "campaign" or entry.evaluation.exists():
            continue
        if not entry.run.checkpoint().exists():
            campaign.log(f"{entry.name}: no export at step {campaign.BUDGET} yet (python analyses/seed_spread.py train)")
            continue
        context = context or campaign.make_context()
        convention = convention or campaign.sampling_convention()
        campaign.evaluate_checkpoint(entry.run.checkpoint(), name=entry.name, objective=entry.objective, step=campaign.BUDGET,
                                     teacher=False, grids=False, context=context, convention=convention, out=entry.evaluation)
        campaign.log(f"{entry.name}: evaluated ({campaign._read(entry.evaluation).attrs['evaluation_seconds']:.0f} s)")


def validation_evaluation(entry: SeedRun) -> Path | None:
    """The detector validation's evaluation of the same export (w = 1 and 4 only), where it has that member."""
    member = {m.name: m for m in validation.extra_members()}.get(f"{entry.name}@{campaign.BUDGET}")
    return member.evaluation if member is not None else None


def reproduction_gap(entry: SeedRun, ev: xr.Dataset) -> float | None:
    """Largest absolute difference between this evaluation and the detector validation's at w = 1 and 4 (``None``
    where the validation has none): the same checkpoint, sampler and seeds, so it should be 0."""
    path = validation_evaluation(entry)
    if entry.source != "detector validation" or path is None or not path.exists():
        return None
    other = campaign._read(path)
    shared = [g for g in other.guidance.values if g in ev.guidance.values]
    def at_shared(ds: xr.Dataset, name: str) -> xr.DataArray:
        return ds[name].sel(guidance=shared) if "guidance" in ds[name].dims else ds[name]

    return max(float(np.abs(at_shared(ev, v) - at_shared(other, v)).max()) for v in REPRODUCED)


# -- report ------------------------------------------------------------------------------------------------------
def verdicts(entry: SeedRun, ev: xr.Dataset, population: pd.DataFrame) -> dict[str, str]:
    """The library's default verdict in both modes, judged as the detector validation judges its members: from the
    evaluation's own summary where it stores the guided error, else from the validation's table (older evaluations)."""
    out = {}
    row = population[population.member == f"{entry.name}@{campaign.BUDGET}"]
    for mode, attr in (("tf", "audit"), ("probe", "probe")):
        summary = json.loads(ev.attrs[attr])
        if "rel_guided_error" in summary:
            out[mode], out[f"{mode}_rel_guided_error"] = tag_validation.verdict(summary, mode), summary["rel_guided_error"]["value"]
        elif len(row):
            out[mode] = validation.library_verdicts(row, mode, Thresholds())[0]
            out[f"{mode}_rel_guided_error"] = float(row[f"{mode}_all_rel_guided_error"].iloc[0])
        else:
            out[mode], out[f"{mode}_rel_guided_error"] = "unjudged", np.nan
    return out


def teacher_evaluation() -> xr.Dataset:
    return campaign._read(campaign.evaluation_path(campaign.find("teacher")))


def table(teacher: xr.Dataset | None = None) -> pd.DataFrame:
    """One row per evaluated run (``teacher``: the campaign teacher's evaluation, read when not given)."""
    teacher = teacher_evaluation() if teacher is None else teacher
    population = pd.read_csv(validation.TABLE) if validation.TABLE.exists() else pd.DataFrame({"member": []})
    fd_teacher = {g: float(teacher.fd.sel(guidance=g)) for g in ("4", "tag")}
    rows = []
    for entry in SEED_RUNS:
        if not entry.evaluation.exists():
            continue
        ev = campaign._read(entry.evaluation)
        audit, probe = json.loads(ev.attrs["audit"]), json.loads(ev.attrs["probe"])
        judged = verdicts(entry, ev, population)
        stats = validation.trajectory_statistics(ev, "tf")  # per phase of t, from the evaluation's per-step means
        row = {"objective": entry.objective, "seed": entry.seed, "run": entry.name, "source": entry.source,
               "fd_tag": float(ev.fd.sel(guidance="tag")), "fd4": float(ev.fd.sel(guidance="4")),
               "fd1": float(ev.fd.sel(guidance="1")),
               "fd_tag_over_teacher": float(ev.fd.sel(guidance="tag")) / fd_teacher["tag"],
               "fd4_over_teacher": float(ev.fd.sel(guidance="4")) / fd_teacher["4"],
               **{f"fidelity_w{w:g}": float(ev.fidelity_accuracy.sel(w=w)) for w in campaign.FIDELITY_SCALES},
               "a_tag": float(ev.fd_accuracy.sel(guidance="tag")),
               "rho": audit["rho"]["value"], "cos_delta": audit["cos_delta"]["value"],
               "probe_rho": probe["rho"]["value"], "probe_cos_delta": probe["cos_delta"]["value"],
               "tf_rel_guided_error": judged["tf_rel_guided_error"], "probe_rel_guided_error": judged["probe_rel_guided_error"],
               "verdict": judged["tf"], "verdict_probe": judged["probe"],
               "guides_like_teacher_w4": bool(validation.outcome_row(ev, teacher)["guides_like_teacher"]),
               "guides_like_teacher_tag": tag_validation.outcome(ev, teacher, "tag"),
               "divergence": audit["divergence"]["value"], "probe_rel_cond_error": probe["rel_cond_error"]["value"],
               **{f"tf_{phase}_rel_cond_error": stats[f"tf_{phase}_rel_cond_error"] for phase in validation.PHASES},
               "reproduction_gap": reproduction_gap(entry, ev),
               "evaluation_seconds": float(ev.attrs["evaluation_seconds"]), "checkpoint": campaign.relative(entry.run.checkpoint())}
        row["meets_dash_bars"] = bool(row["verdict"] == "healthy" and row["rho"] >= DASH_BARS["rho_min"]
                                      and row["fd_tag_over_teacher"] <= DASH_BARS["fd_over_teacher_max"])
        rows.append(row)
    return pd.DataFrame(rows)


def spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Per objective: how many seeds, and each measure's smallest and largest value and their ratio (FD) or range."""
    rows = []
    for objective, group in frame.groupby("objective", sort=False):
        for column in ("fd_tag", "fd4", "fd1", "fidelity_w1", "fidelity_w4", "a_tag", "rho", "cos_delta",
                       "probe_rel_guided_error"):
            low, high = float(group[column].min()), float(group[column].max())
            rows.append({"objective": objective, "seeds": len(group), "measure": column, "min": low, "max": high,
                         "max_over_min": high / low if low > 0 else np.nan, "range": high - low})
    return pd.DataFrame(rows)


def training_line(entry: SeedRun) -> str:
    """``name minutes (steps)`` from the run's log, recorded beside its evaluations (``campaign.recorded_training``)."""
    recorded = campaign.recorded_training(entry.run)
    return f"{entry.name} not recorded" if recorded is None else f"{entry.name} {recorded[0] / 60:.1f} min ({recorded[1]} steps)"


def report() -> None:
    teacher = teacher_evaluation()
    frame = table(teacher)
    if frame.empty:
        raise SystemExit("no evaluations yet: python analyses/seed_spread.py evaluate")
    campaign._save_csv(frame, TABLE)
    lines = ["# Seed spread of the Fashion-MNIST reproduction (measured)", "",
             "Written down before it ran: docs/design.md §6, \"Seed spread of the reproduction\". Each run is the campaign's "
             f"student recipe at {campaign.BUDGET} steps from the same teacher; only the seed (initialisation, batch order) "
             "differs. Evaluation as the campaign's (FD: 1,000 samples, clamped 25-step ancestral DDPM, project-classifier "
             "features; audit 64 x 50 teacher-forced at w = 4; data probe on the 10,000 test images). Verdicts: the library's "
             "default rules (trajectories, the table's column; data probe beside it). Produced by `python analyses/seed_spread.py all`.", "",
             f"Teacher: FD (TAG) {float(teacher.fd.sel(guidance='tag')):.2f}, FD (w = 4) {float(teacher.fd.sel(guidance='4')):.2f}, "
             f"fidelity w = 1 / 4 {float(teacher.fidelity_accuracy.sel(w=1.0)):.2f} / {float(teacher.fidelity_accuracy.sel(w=4.0)):.2f}.", "",
             "| objective | seed | FD (TAG) | x teacher | FD w=1 / 4 | fidelity w=1 / 4 | a(TAG) | rho | cos | guided error tf / probe | verdict tf / probe | guides like teacher w=4 / TAG |",
             "|---|---:|---:|---:|---|---|---:|---:|---:|---|---|---|"]
    for r in frame.itertuples(index=False):
        lines.append(f"| {r.objective} | {r.seed} | {r.fd_tag:.2f} | {r.fd_tag_over_teacher:.2f} | {r.fd1:.1f} / {r.fd4:.1f} | "
                     f"{r.fidelity_w1:.3f} / {r.fidelity_w4:.3f} | {r.a_tag:.3f} | {r.rho:.3f} | {r.cos_delta:.3f} | "
                     f"{r.tf_rel_guided_error:.3f} / {r.probe_rel_guided_error:.3f} | {r.verdict} / {r.verdict_probe} | "
                     f"{'yes' if r.guides_like_teacher_w4 else 'no'} / {'yes' if r.guides_like_teacher_tag else 'no'} |")
    dash = frame[frame.objective == "dash"]
    lines += ["", f"Issue 13's bars for `dash` (`healthy` along trajectories, rho >= {DASH_BARS['rho_min']}, FD at TAG within "
              f"{DASH_BARS['fd_over_teacher_max']}x the teacher's): met at {int(dash.meets_dash_bars.sum())} of {len(dash)} seeds "
              f"({', '.join(f'seed {r.seed}: ' + ('met' if r.meets_dash_bars else 'missed') for r in dash.itertuples())}).", "",
              "Spread over seeds (smallest, largest, and their ratio for FD or their range otherwise):", ""]
    for r in spread(frame).itertuples(index=False):
        size = f"{r.max_over_min:.2f}x" if r.measure.startswith("fd") else f"range {r.range:.3f}"
        lines.append(f"- {r.objective} ({r.seeds} seeds), {r.measure}: {r.min:.3f} to {r.max:.3f} ({size})")
    phases = list(validation.PHASES)
    lines += ["", "Where the seeds differ: the cond branch's error relative to the teacher's, along the teacher's guided "
              "trajectories per phase of t (teacher-forced audit), in the data probe (all t), and how far the student's own "
              "path drifts from the teacher's (free-running divergence):", "",
              "| objective | seed | tf cond error " + " / ".join(phases) + " | probe cond error | divergence |", "|---|---:|---|---:|---:|"]
    for r in frame.itertuples(index=False):
        per_phase = " / ".join(f"{getattr(r, f'tf_{phase}_rel_cond_error'):.3f}" for phase in phases)
        lines.append(f"| {r.objective} | {r.seed} | {per_phase} | {r.probe_rel_cond_error:.3f} | {r.divergence:.2f} |")
    checked = frame.dropna(subset=["reproduction_gap"])
    lines += ["", "Reproduction check (the seed-1 exports' FD, FD-set accuracy and fidelity at w = 1 and 4 against the detector "
              "validation's evaluation of the same files): largest absolute difference "
              + (", ".join(f"{r.run} {r.reproduction_gap:.2g}" for r in checked.itertuples()) if len(checked) else "not checked") + ".", "",
              "Evaluation seconds: " + ", ".join(f"{r.run} {r.evaluation_seconds:.0f}" for r in frame.itertuples()) + "; training "
              "of the runs trained here: " + ", ".join(training_line(entry) for entry in trained_here()) + "."]
    write_bytes_atomic(REPORT, ("\n".join(lines) + "\n").encode())
    campaign.log(f"wrote {campaign.relative(REPORT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "evaluate", "report", "all", "status", "snapshot"])
    args = parser.parse_args(argv)
    if args.command in ("train", "all"):
        train()
    if args.command in ("evaluate", "all"):
        evaluate()
    if args.command in ("report", "all"):
        report()
    if args.command == "status":
        status()
    if args.command == "snapshot":
        snapshot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
