"""Does the verdict predict what guidance does? Validation on real trained students (issue 17).

The population: every checkpoint the Fashion-MNIST campaign kept along training (``analyses/fashion_mnist.py``,
log-spaced EMA exports of ten objectives, two of them at twice the budget), students distilled at another guidance
scale, failures constructed from the trained teacher (its null embedding set to the mean of the class embeddings,
its class embeddings shrunk toward the null one, noise in one embedding branch only), and a peer teacher (the same
recipe, another seed). Every member is scored twice, independently:

- **outcome** (samples only, no gap metric; docs/design.md §6): does it guide like its teacher?
- **evidence**: the audit's statistics, teacher-forced and free-running along 50-step DDIM at w = 4, and DASH's
  data probe: rho, mean gap cosine, a gap-weighted cosine, the relative gap error, branch errors and the relative
  error of the guided prediction, overall and per phase (training-timestep thirds; for the probe, of the samples' t).

Each statistic's power to separate the two outcomes is its ROC AUC; thresholds and rules are chosen on one part of
the population and reported on the held-out part, split by objective (family), never by row.

    python analyses/detector_validation.py construct   # teacher-derived failures (runs/, seconds)
    python analyses/detector_validation.py train       # peer teacher and extra students (resumable)
    python analyses/detector_validation.py evaluate    # outcomes + audits of every member not yet evaluated
    python analyses/detector_validation.py analyze     # analyses/results/detector_validation.{csv,md}, figure
    python analyses/detector_validation.py all         # construct, evaluate what exists, train, evaluate, analyze
    python analyses/detector_validation.py status      # members planned / evaluated, extra runs' step, ETA
    python analyses/detector_validation.py snapshot    # pack runs still training, to commit when a session ends
    python analyses/detector_validation.py compute     # its own compute per stage (detector_validation_compute.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist as campaign  # noqa: E402

import guidegap  # noqa: E402
from guidegap.auditing.verdicts import Thresholds, judge_pair  # noqa: E402
from guidegap.checkpoints import load_scheduler, read_checkpoint, save_checkpoint  # noqa: E402
from guidegap.evaluation.outcome import (  # noqa: E402  (§6, at w = 4)
    DEGRADED_FACTOR, FAITHFUL_MARGIN, GUIDED_SHARE, GuidanceOutcome, guides_like)
from guidegap.metrics.summary import Estimate  # noqa: E402

RUNS = campaign.REPO / "runs" / "detector_validation"
CONSTRUCTED = RUNS / "constructed"
RESULTS = campaign.HERE / "results" / "detector_validation"
TABLE = campaign.HERE / "results" / "detector_validation.csv"
FIGURE = campaign.FIGURES / "detector_validation.png"

# -- the outcome (docs/design.md §6, written before any campaign student existed) ---------------------------
OUTCOME_FD_GUIDANCE = ("1", "4")  # the outcome needs FD at w = 4 and its change from w = 1; TAG's is the table's

# -- constructed failures from the trained teacher ------------------------------------------------------------
SHRINK_FACTORS = (0.1, 0.3, 0.5, 0.7, 0.9)  # class embeddings: e_null + s (e_y - e_null)
NOISE_SCALES = (0.1, 0.3, 1.0)  # Gaussian noise on one embedding branch, relative to that branch's RMS
CONSTRUCTION_SEED = 0

# -- extra trained members -------------------------------------------------------------------------------------
PEER_SEED = 1
PEER_RUN = "teacher-seed1"
EXTRA_STUDENTS = (  # (name, objective, objective options, steps, seed)
    ("composite-w2", "composite", {"guidance_scale": 2.0}, campaign.BUDGET, 0),
    # seed replicates (added 2026-12-04, before either trained; with pdm, gap's seed replicate, and the peer, "a few
    # more seeds"): dash, the reference method, near the outcome's boundary at 2k-4k steps; dash-no-tirt, held out.
    # Every export step is a member, as for the campaign's runs; another seed trains without the shared teacher cache.
    ("dash-seed1", "dash", {}, campaign.BUDGET, 1),
    ("dash-no-tirt-seed1", "dash-no-tirt", {}, campaign.BUDGET, 1),
)

# -- campaign exports left out: every student at 250 and 1,000 steps is far from guiding like its teacher (FD 45-160 at
# w = 4 against its 12), so the 500-step exports would add only certain negatives at 7 min each; decided for compute
# before any of them was evaluated, and the population stays >= 60 without them
SKIPPED_EXPORT_STEPS = (500,)

# -- held-out split, by family (fixed before the analysis ran) --------------------------------------------------
HELD_OUT = ("cond-only", "dash-no-tirt", "gap", "dash-no-anchor", "null-mean", "class-noise", "composite-w2", "peer")
FAMILY = {"pdm": "gap", "dash-x2": "dash", "cond-only-x2": "cond-only"}  # pdm's loss is gap's (README)

AUDIT = campaign.AUDIT
PHASES = {"early": (667, 1000), "middle": (333, 667), "late": (0, 333)}  # training timestep ranges [low, high)


@dataclass(frozen=True)
class Member:
    """One model of the population: where its file is, what produced it, and where its evaluation goes."""

    name: str
    family: str
    checkpoint: Path
    evaluation: Path
    step: int | None = None


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


# -- the population ----------------------------------------------------------------------------------------------
def campaign_members() -> list[Member]:
    return [m for m, *_ in planned_members()["campaign exports"] if m.checkpoint.exists()]


def constructed_members() -> list[Member]:
    names = ["null-mean", *(f"shrink-{s:g}" for s in SHRINK_FACTORS), *(f"null-noise-{s:g}" for s in NOISE_SCALES),
             *(f"class-noise-{s:g}" for s in NOISE_SCALES)]
    family = {"null-mean": "null-mean", **{n: n.rsplit("-", 1)[0] for n in names if n != "null-mean"}}
    return [Member(n, family[n], CONSTRUCTED / f"{n}.pt", RESULTS / "constructed" / f"{n}.nc") for n in names]


def extra_members() -> list[Member]:
    """The peer, and every student of :data:`EXTRA_STUDENTS`: a seed replicate at each export step (in its objective's
    family), a student distilled at another scale at its last (a family of its own)."""
    out = [Member("peer", "peer", campaign.CHECKPOINTS / "teacher-seed1.pt", RESULTS / "peer.nc")]
    for (run, _), (name, objective, _options, steps, seed) in zip(extra_runs()[1:], EXTRA_STUDENTS):
        replicate = seed != campaign.SEED
        kept = [k for k in run.export_steps if k not in SKIPPED_EXPORT_STEPS] if replicate else [steps]
        family = FAMILY.get(objective, objective) if replicate else name
        out += [Member(f"{name}@{k}" if replicate else name, family, run.checkpoint(k), RESULTS / name / f"step_{k:07d}.nc", k)
                for k in kept]
    return out


def members() -> list[Member]:
    return [m for m in (*campaign_members(), *constructed_members(), *extra_members()) if m.checkpoint.exists()]


# -- constructed failures ----------------------------------------------------------------------------------------
def _embedding_key(state: dict[str, torch.Tensor]) -> str:
    keys = [k for k in state if k.endswith("class_embedding.weight")]
    if len(keys) != 1:
        raise SystemExit(f"expected one class-embedding table in the teacher, found {keys}")
    return keys[0]


def construct() -> None:
    """Teacher-derived students, each a checkpoint file with one change to the class-embedding table (rows 0..9 the
    classes, row 10 the null label): what guidance then does is known only by measuring it."""
    teacher = read_checkpoint(campaign.TEACHER_FILE)
    key = _embedding_key(teacher.state_dict)
    table = teacher.state_dict[key].float()
    classes, null = table[:-1], table[-1]
    generator = torch.Generator().manual_seed(CONSTRUCTION_SEED)
    variants: dict[str, torch.Tensor] = {"null-mean": torch.cat([classes, classes.mean(0, keepdim=True)])}
    for s in SHRINK_FACTORS:
        variants[f"shrink-{s:g}"] = torch.cat([null + s * (classes - null), null[None]])
    for s in NOISE_SCALES:
        null_noise = torch.randn(null.shape, generator=generator) * s * null.pow(2).mean().sqrt()
        variants[f"null-noise-{s:g}"] = torch.cat([classes, (null + null_noise)[None]])
        class_noise = torch.randn(classes.shape, generator=generator) * s * classes.pow(2).mean().sqrt()
        variants[f"class-noise-{s:g}"] = torch.cat([classes + class_noise, null[None]])
    CONSTRUCTED.mkdir(parents=True, exist_ok=True)
    for name, rows in variants.items():
        state = {**teacher.state_dict, key: rows.to(teacher.state_dict[key].dtype)}
        metadata = {**teacher.metadata, "run": name, "constructed": f"the teacher with its class embeddings changed: {name}"}
        save_checkpoint(dataclasses.replace(teacher, state_dict=state, metadata=metadata), CONSTRUCTED / f"{name}.pt")
    log(f"constructed {len(variants)} teacher-derived students under {campaign.relative(CONSTRUCTED)}")


# -- extra training ------------------------------------------------------------------------------------------
def extra_runs() -> list[tuple[campaign.Run, bool]]:
    """The runs this validation trains itself, each with whether it is finished and exported."""
    peer = campaign.Run(PEER_RUN, "scratch", campaign.find("teacher").steps)
    runs = [(peer, (campaign.CHECKPOINTS / "teacher-seed1.pt").exists())]
    for name, objective, _options, steps, _seed in EXTRA_STUDENTS:
        run = campaign.Run(name, objective, steps)
        runs.append((run, campaign.exported(run)))
    return runs


def snapshot() -> None:
    """Pack the extra students still training (``fashion_mnist.py snapshot`` packs the campaign's). The peer teacher
    is not packed: its resumable state (weights, EMA, AdamW moments of 0.87M parameters) is ~14 MB per session, too
    large to commit as it goes, so it resumes from runs/ on the same machine and starts again on a new one."""
    for run, done in extra_runs():
        if run.name == PEER_RUN:
            log(f"{run.name}: not packed (about 14 MB of optimizer state; it resumes from runs/ on this machine only)")
            continue
        campaign.snapshot_run(run, done)


def train_students() -> None:
    """The extra students: another guidance scale, seed replicates."""
    for (run, _), (_, _, options, _, seed) in zip(extra_runs()[1:], EXTRA_STUDENTS):
        campaign.train_run(run, extra_student_config(run, options, seed))


def train_peer() -> None:
    """The peer teacher: the campaign's recipe and segments, seed 1."""
    peer, peer_done = extra_runs()[0]
    config = campaign.config_for(campaign.find("teacher"))  # the campaign teacher's steps and segments
    config.out, config.seed = str(campaign.RUNS / peer.name), PEER_SEED
    if not peer_done:
        log("peer teacher: training (resumes when a checkpoint exists)")
        campaign.restore_run(peer)  # packed by `snapshot` when a session ended mid-run
        campaign.train_teacher(config)  # the campaign teacher's path (its segments), another seed
        campaign.export_final(peer, campaign.CHECKPOINTS / "teacher-seed1.pt")


def extra_student_config(run: campaign.Run, options: dict, seed: int):
    """The campaign's student recipe for ``run`` with its objective options and seed, without the shared teacher
    cache: another seed draws other batches than it holds, and at the campaign's seed, filling it again where a
    machine change lost it (it lives under runs/) costs more than the one run it would serve (the cache is
    float32-exact, so the student is the same either way)."""
    config = campaign.config_for(run)
    config.objective_options = dict(options)
    config.seed, config.teacher_cache = seed, None
    return config


# -- evaluation ----------------------------------------------------------------------------------------------
def own_audits_path(member: Member) -> Path:
    """The validation's own audits of a member, beside its evaluation: free-running per-step means, probe per phase."""
    return member.evaluation.with_name(member.evaluation.stem + "_own_audits.nc")


def probe_as_trajectory(probe: xr.Dataset) -> xr.Dataset:
    """A data-probe Dataset (one timestep per sample) in the shape :func:`trajectory_statistics` reads: every sample
    a "step" of its own, variables prefixed ``audit_``. Phase means over samples are then DASH's probe statistics
    restricted to the phase's timesteps (rho as a ratio of means, as ``summarize`` computes it)."""
    names = ("gap_norm", "gap_cos", "gap_mse", "cond_norm", "uncond_norm", "cond_error", "uncond_error", "guided_error")
    present = [n for n in names if n in probe]
    return probe[present].rename({n: f"audit_{n}" for n in present}).rename({"sample": "step"})


@torch.no_grad()
def own_audits(member: Member, context: campaign.Context) -> xr.Dataset:
    """The audits the campaign's evaluation does not keep: the free-running trajectory (the student on its own path,
    50-step DDIM at w = 4 on its stored schedule) and DASH's data probe per phase (the campaign's probe, same images,
    seed and schedule, so its "all" phase reproduces the stored overall numbers; the memoized teacher answers the
    teacher's half from memory)."""
    loaded = guidegap.load_model(member.checkpoint)
    loaded.model.to(context.device)
    started = time.perf_counter()
    free = guidegap.trace(context.teacher, loaded, mode="free-running", **AUDIT)  # DDIM on the stored schedule
    probe = guidegap.probe(context.teacher, guidegap.as_denoiser(loaded.model), context.probe_data,
                           guidance_scale=AUDIT["guidance_scale"], scheduler=load_scheduler(loaded.scheduler_config),
                           seed=0)
    return campaign._per_step_means(free).assign_attrs(
        summary=json.dumps({k: v.to_dict() for k, v in guidegap.summarize(free).items()}),
        probe_phases=json.dumps(trajectory_statistics(probe_as_trajectory(probe), "probe")),
        evaluation_seconds=round(time.perf_counter() - started, 1))


def evaluate(only: list[str] | None = None) -> None:
    """Outcomes, teacher-forced audit and data probe (the campaign's evaluation, reused as is) for members that have
    none yet, and the validation's own audits (free-running, probe per phase) of every member."""
    context, convention = None, None
    for member in members():
        if only and member.name not in only:
            continue
        if not member.evaluation.exists():
            context = context or campaign.make_context()
            convention = convention or campaign.sampling_convention()
            started = time.perf_counter()
            campaign.evaluate_checkpoint(member.checkpoint, name=member.name, objective=member.family, step=member.step or 0,
                                         teacher=False, grids=False, context=context, convention=convention, out=member.evaluation,
                                         fd_guidance=OUTCOME_FD_GUIDANCE)
            log(f"{member.name}: evaluated ({time.perf_counter() - started:.0f} s)")
        if not own_audits_path(member).exists():
            context = context or campaign.make_context()
            ds = own_audits(member, context)
            campaign._write(ds, own_audits_path(member))
            log(f"{member.name}: free-running audit and probe per phase ({ds.attrs['evaluation_seconds']:.0f} s)")


# -- status ----------------------------------------------------------------------------------------------------
OWN_AUDIT_SECONDS = {"student": 150.0, "teacher-sized": 300.0}  # free-running + probe, until one of each is measured here


def planned_members() -> dict[str, list[tuple[Member, bool, bool]]]:
    """Every member the validation will have once the campaign, :func:`train_students` and :func:`train_peer` finish,
    by group, each with whether it is teacher-sized (constructed failures, the peer) and whether the campaign
    evaluates it itself."""
    exports = [(Member(f"{run.name}@{k}", FAMILY.get(run.name, run.objective), run.checkpoint(k), campaign.evaluation_path(run, k), k),
                False, k in run.evaluated_steps)
               for run in campaign.plan() if run.role == "student" for k in run.export_steps if k not in SKIPPED_EXPORT_STEPS]
    return {"campaign exports": exports, "constructed": [(m, True, False) for m in constructed_members()],
            "extra": [(m, m.family == "peer", False) for m in extra_members()]}


def status() -> None:
    """Members planned / trained / evaluated / own-audited, the extra runs' training, and the time left at
    this machine's measured pace (medians of the evaluations done; labelled where a default stands in). Evaluations
    the campaign makes itself are counted in its own ``status``, not here."""
    groups = planned_members()
    every = [entry for group in groups.values() for entry in group]
    kinds = ("student", "teacher-sized")
    done = {kind: campaign.recorded_seconds([m.evaluation for m, big, _ in every if big == (kind == "teacher-sized")]) for kind in kinds}
    teacher = campaign.find("teacher")
    teacher_evaluations = campaign.recorded_seconds(sorted((campaign.RESULTS / teacher.name).glob("step_*.nc")))
    speeds, campaign_evaluation = campaign.measured_speeds()
    evaluation = {"student": float(np.median(done["student"])) if done["student"] else campaign_evaluation,
                  "teacher-sized": float(np.median(done["teacher-sized"] or teacher_evaluations or [1800.0]))}
    own = {kind: campaign.recorded_seconds([own_audits_path(m) for m, big, _ in every if big == (kind == "teacher-sized")]) for kind in kinds}
    own_pace = {k: float(np.median(v)) if v else OWN_AUDIT_SECONDS[k] for k, v in own.items()}
    remaining, lines = 0.0, []
    for label, group in groups.items():
        seconds = sum(evaluation[kinds[big]] for m, big, by_campaign in group if not by_campaign and not m.evaluation.exists())
        seconds += sum(own_pace[kinds[big]] for m, big, _ in group if not own_audits_path(m).exists())
        remaining += seconds
        lines.append(f"{label:17s} {len(group):3d} planned  {sum(m.checkpoint.exists() for m, *_ in group):3d} exist  "
                     f"{sum(m.evaluation.exists() for m, *_ in group):3d} evaluated  "
                     f"{sum(own_audits_path(m).exists() for m, *_ in group):3d} own-audited  ETA {seconds / 3600:5.2f} h")
    record = campaign.RESULTS / teacher.name / campaign.TRAINING_RECORD
    stored = json.loads(record.read_text()) if record.exists() else None
    teacher_pace = stored["seconds"] / stored["step"] if stored else campaign.DEFAULT_SECONDS_PER_STEP["teacher"]
    for run, finished in extra_runs():
        step, rate = campaign._progress(run)
        pace = rate or (teacher_pace if run.name == PEER_RUN else speeds["other"])
        seconds = 0.0 if finished else (run.steps - step) * pace
        remaining += seconds
        state = "done" if finished else (f"training, step {step}" if step else "pending")
        shown = run.steps if finished else step
        lines.append(f"{run.name:17s} {state:22s} {shown:6d}/{run.steps:<6d} {pace:.2f} s/step  ETA {seconds / 3600:5.2f} h")
    teacher_sized_note = "" if done["teacher-sized"] else " (the teacher evaluations' median until one is measured)"
    own_note = "" if all(own.values()) else " (defaults until one of each is measured)"
    lines.append(f"time left (estimate, this machine, after the campaign): {remaining / 3600:.1f} h; evaluation "
                 f"{evaluation['student']:.0f} s per student, {evaluation['teacher-sized']:.0f} s per teacher-sized "
                 f"member{teacher_sized_note}; own audits (free-running, probe per phase) {own_pace['student']:.0f} / "
                 f"{own_pace['teacher-sized']:.0f} s{own_note}")
    print("\n".join(lines))


COMPUTE = TABLE.with_name("detector_validation_compute.md")


def compute_report() -> pd.DataFrame:
    """The validation's own compute, beside the campaign's (``fashion_mnist.py compute`` counts only the campaign's
    training and its own evaluations): the extra runs' training (their records, as the campaign keeps them), the
    evaluations of members the campaign does not evaluate, and the own audits of every member, from each Dataset's
    ``evaluation_seconds`` (``analyses/results/detector_validation_compute.md``, cited by PERFORMANCE.md)."""
    rows = []
    for run, _ in extra_runs():
        trained = campaign.recorded_training(run)
        if trained is not None and trained[1] > 0:
            rows.append({"stage": "extra runs' training", "item": f"{run.name}, steps 1-{trained[1]} of {run.steps}",
                         "seconds": trained[0]})
    for group, entries in planned_members().items():
        for member, big, by_campaign in entries:
            for stage, path, counted in (("evaluation (outcomes, teacher-forced audit, data probe)", member.evaluation, not by_campaign),
                                         ("own audits (free-running, probe per phase)", own_audits_path(member), True)):
                seconds = campaign.recorded_seconds([path]) if counted else []
                if seconds:
                    rows.append({"stage": stage, "item": f"{member.name} ({group})", "seconds": seconds[0]})
    frame = pd.DataFrame(rows, columns=["stage", "item", "seconds"])
    campaign.write_compute_table(
        frame, COMPUTE, "# Compute of the detector validation (measured)",
        "Wall time (2 torch threads) of what `analyses/detector_validation.py` ran beyond the Fashion-MNIST campaign "
        "(`fashion_mnist_compute.md`): the extra runs' training, summed from their logs over resumed segments, and "
        "each evaluation Dataset's `evaluation_seconds`. Not recorded, so not counted: the oracle population "
        "(`analyze`, minutes) and the teacher-sample probe (`teacher_sample_probe.py`). Produced by "
        "`python analyses/detector_validation.py compute`.")
    return frame


# -- statistics ------------------------------------------------------------------------------------------------
def trajectory_statistics(ds: xr.Dataset, prefix: str) -> dict[str, float]:
    """Candidate statistics from per-step sample means (``audit_*`` variables, ``timestep`` and ``model`` coords):
    rho (ratio of mean gap norms), mean gap cosine, teacher-gap-weighted cosine, relative gap error
    ``sqrt(mean gap_mse) / mean |Delta_T|``, relative branch errors and the relative error of the guided prediction
    ``g = eps_u + w (eps_c - eps_u)`` (what the sampler consumes), over the whole trajectory and per phase."""
    t = ds.timestep.values
    gap = ds["audit_gap_norm"]
    student, teacher = gap.sel(model="student").values, gap.sel(model="teacher").values
    cos, mse = ds["audit_gap_cos"].values, ds["audit_gap_mse"].values
    cond_t, uncond_t = ds["audit_cond_norm"].sel(model="teacher").values, ds["audit_uncond_norm"].sel(model="teacher").values
    cond_e, uncond_e = ds["audit_cond_error"].values, ds["audit_uncond_error"].values
    guided_e = ds["audit_guided_error"].values if "audit_guided_error" in ds else None
    out = {}
    for phase, (low, high) in {"all": (0, 10_000), **PHASES}.items():
        k = (t >= low) & (t < high)
        if not k.any():
            continue
        tag = f"{prefix}_{phase}"
        out[f"{tag}_abs_log_rho"] = abs(float(np.log(student[k].mean() / teacher[k].mean())))
        out[f"{tag}_one_minus_cos"] = 1.0 - float(cos[k].mean())
        out[f"{tag}_one_minus_weighted_cos"] = 1.0 - float((teacher[k] * cos[k]).sum() / teacher[k].sum())
        out[f"{tag}_rel_gap_error"] = float(np.sqrt(mse[k].mean()) / teacher[k].mean())
        out[f"{tag}_rel_cond_error"] = float(cond_e[k].mean() / cond_t[k].mean())
        out[f"{tag}_rel_uncond_error"] = float(uncond_e[k].mean() / uncond_t[k].mean())
        if guided_e is not None:  # what the sampler consumes at w: RMS(g_S - g_T) over the teacher's cond-branch RMS
            out[f"{tag}_rel_guided_error"] = float(guided_e[k].mean() / cond_t[k].mean())
    return out


def guidance_outcome(ds: xr.Dataset, guidance: str = "4") -> GuidanceOutcome:
    """What guidance does in one evaluation, at ``guidance`` ("4", or "tag" where it drew TAG sets): the
    1,000-sample accuracies of its FD sets at w = 1 and at ``guidance``, and the FD there (docs/design.md §6)."""
    def a(w: str) -> float:
        return float(ds.fd_accuracy.sel(guidance=w))

    return GuidanceOutcome(a("1"), a(guidance), float(ds.fd.sel(guidance=guidance)))


def outcome_row(ds: xr.Dataset, teacher: xr.Dataset) -> dict[str, float | bool]:
    """docs/design.md §6 on one member against the teacher's own outcomes."""
    def a(d: xr.Dataset, w: str) -> float:  # the 1,000-sample accuracies of the FD sets
        return float(d.fd_accuracy.sel(guidance=w))

    student_outcome, teacher_outcome = guidance_outcome(ds), guidance_outcome(teacher)
    gain_s, gain_t = student_outcome.gain, teacher_outcome.gain
    fd_s, fd_t = student_outcome.fd_guided, teacher_outcome.fd_guided
    faithful = a(ds, "4") >= a(teacher, "4") - FAITHFUL_MARGIN  # the three criteria, shown apart; guides_like decides
    guided = gain_s >= GUIDED_SHARE * gain_t
    not_degraded = fd_s <= DEGRADED_FACTOR * fd_t
    # Sensitivity only, never the outcome (docs/design.md §6, added 2026-12-03 after audit numbers were seen): the
    # gain as a share of the headroom 1 - a(1), so that a student whose unguided samples already carry their label
    # is not failed by the ceiling alone.
    headroom_s, headroom_t = 1.0 - a(ds, "1"), 1.0 - a(teacher, "1")
    guided_headroom = headroom_s > 0 and headroom_t > 0 and gain_s / headroom_s >= GUIDED_SHARE * gain_t / headroom_t
    return {"a1": a(ds, "1"), "a4": a(ds, "4"), "gain": gain_s, "relative_gain": gain_s / gain_t if gain_t else np.nan,
            "fd1": float(ds.fd.sel(guidance="1")), "fd4": fd_s, "fd4_over_teacher": fd_s / fd_t,
            "faithful": faithful, "guided": guided, "not_degraded": not_degraded,
            "guides_like_teacher": guides_like(student_outcome, teacher_outcome),
            "guided_of_headroom": bool(guided_headroom),
            "guides_like_teacher_of_headroom": bool(faithful and guided_headroom and not_degraded)}


def population_table() -> pd.DataFrame:
    teacher = campaign._read(campaign.evaluation_path(campaign.find("teacher")))
    rows = []
    for member in members():
        if not member.evaluation.exists():
            continue
        ds = campaign._read(member.evaluation)
        row = {"member": member.name, "family": member.family, "step": member.step,
               "held_out": member.family in HELD_OUT, "checkpoint": campaign.relative(member.checkpoint),
               "verdict": ds.attrs.get("verdict"), **outcome_row(ds, teacher)}
        audit, probe = json.loads(ds.attrs["audit"]), json.loads(ds.attrs["probe"])
        row.update({f"tf_{k}": v["value"] for k, v in audit.items()})
        row.update({f"probe_{k}": v["value"] for k, v in probe.items()})
        row["probe_abs_log_rho"] = abs(float(np.log(probe["rho"]["value"])))
        row["probe_one_minus_cos"] = 1.0 - probe["cos_delta"]["value"]
        row.update(trajectory_statistics(ds, "tf"))
        own = own_audits_path(member)
        if own.exists():
            own_ds = campaign._read(own)
            row.update(trajectory_statistics(own_ds, "fr"))
            row.update(json.loads(own_ds.attrs["probe_phases"]))
            if abs(row["probe_all_abs_log_rho"] - row["probe_abs_log_rho"]) > 1e-6:  # same images, seed and models
                log(f"warning: {member.name}: the probe per phase does not reproduce the evaluation's probe rho "
                    f"(|log rho| {row['probe_all_abs_log_rho']:.6f} vs {row['probe_abs_log_rho']:.6f})")
        rows.append(row)
    return pd.DataFrame(rows)


# -- analysis ------------------------------------------------------------------------------------------------
def roc_auc(score: np.ndarray, bad: np.ndarray) -> float:
    """P(score of a member that does not guide like the teacher > score of one that does), ties counted half."""
    pos, neg = score[bad], score[~bad]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def best_threshold(score: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    """The threshold (flag when score > it) with the best balanced accuracy, and that accuracy. The threshold sits
    halfway between the two neighbouring scores the split falls between, not on a training member's own score,
    which would put the boundary against the training part's last accepted member."""
    candidates = np.unique(score)
    best = (float("nan"), -1.0)
    for i, c in enumerate(candidates):
        flagged = score > c
        tpr = flagged[bad].mean() if bad.any() else 0.0
        tnr = (~flagged[~bad]).mean() if (~bad).any() else 0.0
        balanced = 0.5 * (tpr + tnr)
        if balanced > best[1]:
            threshold = 0.5 * (c + candidates[i + 1]) if i + 1 < len(candidates) else c
            best = (float(threshold), float(balanced))
    return best


def best_pair_rule(frame: pd.DataFrame, columns: list[str], bad: np.ndarray, train: np.ndarray) -> dict:
    """The best evidence-based rule of the verdict's shape, fitted on the training part: flag a member when one
    statistic, or either of two, exceeds its threshold (each threshold from that statistic's best single split on the training part)."""
    thresholds = {c: best_threshold(frame[c].to_numpy(float)[train], bad[train])[0] for c in columns}
    best = {"balanced_accuracy_train": -1.0}
    # singles first, so that a pair replaces a single statistic only by doing strictly better
    for chosen in [(c,) for c in columns] + list(itertools.combinations(columns, 2)):
        flagged = np.logical_or.reduce([frame[c].to_numpy(float) > thresholds[c] for c in chosen])
        tpr, tnr = flagged[train & bad].mean(), (~flagged[train & ~bad]).mean()
        balanced = 0.5 * (tpr + tnr)
        if balanced > best["balanced_accuracy_train"]:
            best = {"rule": " or ".join(f"{c} > {thresholds[c]:.4g}" for c in chosen),
                    "balanced_accuracy_train": float(balanced), "flagged": flagged}
    return best


STATISTIC_PREFIXES = tuple(f"{mode}_{phase}_" for mode in ("tf", "fr", "probe") for phase in ("all", *PHASES))


def candidate_columns(frame: pd.DataFrame) -> list[str]:
    """Every per-mode, per-phase statistic, the gap MSEs, and the default audit's free-running divergence (the RMS
    distance of the student's own guided path from the teacher's from the same noise; a candidate since 2026-12-04)."""
    columns = [c for c in frame.columns if c.startswith(STATISTIC_PREFIXES)]
    overall = ("probe_gap_mse", "tf_gap_mse") if "probe_all_abs_log_rho" in frame else (
        "probe_abs_log_rho", "probe_one_minus_cos", "probe_gap_mse", "tf_gap_mse")  # probe_all_* are the first two
    return columns + [c for c in (*overall, "tf_divergence") if c in frame]


# The library's own verdict (guidegap's judge_pair, `healthy` or not) under threshold sets whose one free bar, the
# misguided rule's max_rel_guided_error, is fitted on the training part: what each would do as the default. The
# design rules (the library's "design" set: docs/design.md §2 as first written, the defaults when issue 17 was filed)
# have no free bar; the others switch rules off (a bar of inf never fires; rho_low at collapsed_rho and rho_high inf
# leave only the collapse rule of the rho band). "design rules" is the design set, whatever the defaults are.
RULE_SETS = {
    "design rules": None,
    "rho band + guided error (cosine and branch rules off)": dict(min_cos=-1.0, max_rel_branch_error=math.inf),
    "collapse + guided error (rho band, cosine and branch rules off)": dict(min_cos=-1.0, max_rel_branch_error=math.inf,
                                                                           rho_low=0.3, rho_high=math.inf),
}


def rule_set_thresholds(overrides: dict | None, **bars: float | None) -> Thresholds:
    """A candidate's thresholds: its overrides and ``bars`` on top of the design set (never the dataclass defaults,
    which this analysis may change); ``None``: the design set itself."""
    return Thresholds.named("design", **(overrides or {}), **bars)


JUDGED = ("rho", "cos_delta", "rel_cond_error", "rel_uncond_error", "nonfinite")  # a mode's summary columns, <mode>_<name>
MODES = {"tf": "teacher-forced (the audit's default)", "probe": "data probe (DASH's protocol, guidegap.probe)"}
GUIDED_BAR = {"tf": "max_rel_guided_error", "probe": "max_rel_guided_error_probe"}  # each mode's bar in Thresholds
RULES_JSON = TABLE.with_name("detector_validation_rules.json")


def library_verdicts(frame: pd.DataFrame, mode: str, thresholds: Thresholds) -> list[str]:
    """guidegap's own verdict of each member, from its ``mode`` summary (``tf`` or ``probe``) and the whole-trajectory
    relative guided error (``<mode>_all_rel_guided_error``, the library's ``rel_guided_error``: both are a ratio of
    means over samples and steps)."""
    names = {name: f"{mode}_{name}" for name in JUDGED} | {"rel_guided_error": f"{mode}_all_rel_guided_error"}
    thresholds = thresholds.for_probe() if mode == "probe" else thresholds  # as guidegap.audit judges a probe
    verdicts = []
    for row in frame.itertuples(index=False):
        values = {name: float(getattr(row, column, np.nan)) for name, column in names.items()}
        if not math.isfinite(values["nonfinite"]):
            values["nonfinite"] = 0.0  # older probe summaries do not record it; their predictions were finite
        verdicts.append(judge_pair({name: Estimate(v, v, v, 0.95) for name, v in values.items()}, thresholds).verdict)
    return verdicts


def judged_members(frame: pd.DataFrame, mode: str) -> np.ndarray:
    """Which members have ``mode``'s statistics (its whole-trajectory guided error), so its verdict can be judged."""
    column = f"{mode}_all_rel_guided_error"
    return frame[column].notna().to_numpy() if column in frame else np.zeros(len(frame), bool)


def library_flags(frame: pd.DataFrame, mode: str, thresholds: Thresholds) -> np.ndarray:
    """Whether guidegap's own judge calls each member anything but ``healthy`` (:func:`library_verdicts`)."""
    return np.array([v != "healthy" for v in library_verdicts(frame, mode, thresholds)], dtype=bool)


def fit_rule_set(frame: pd.DataFrame, mode: str, overrides: dict | None, bad: np.ndarray, train: np.ndarray
                 ) -> tuple[Thresholds, float]:
    """The rule set's thresholds with the mode's guided-error bar (``max_rel_guided_error``, or for the probe
    ``max_rel_guided_error_probe``) chosen for the best balanced accuracy of the library's verdict on the training
    part (halfway between neighbouring training scores), and that accuracy."""
    if overrides is None:  # the design set, named: it stays the comparison when the defaults change
        thresholds = rule_set_thresholds(None)
        return thresholds, balanced_accuracy(bad[train], library_flags(frame[train], mode, thresholds))
    score = np.unique(frame[f"{mode}_all_rel_guided_error"].to_numpy(float)[train])
    bars = list(0.5 * (score[:-1] + score[1:])) + [float(score[-1]) + 1.0]
    bar_name = GUIDED_BAR[mode]
    best = (rule_set_thresholds(overrides, **{bar_name: bars[-1]}), -1.0)
    for bar in bars:
        thresholds = rule_set_thresholds(overrides, **{bar_name: float(bar)})
        balanced = balanced_accuracy(bad[train], library_flags(frame[train], mode, thresholds))
        if balanced > best[1]:
            best = (thresholds, balanced)
    return best


# -- a population of known outcome: constructed students of the oracle teacher -------------------------------------
# (added on 2026-12-04, after a first look at 15 of them; each is audited as the library audits by default, 64 x 50
# teacher-forced at w = 4, and by a data probe of 1,000 held-out mixture samples, and its outcome is measured exactly,
# guidegap.oracle.oracle_outcome). The rule sets are judged with the bars fitted on Fashion-MNIST, unchanged: a rule
# that holds only on the data it was fitted on would show it here.
ORACLE_STUDENTS = (
    *((f"shrunk-{f:g}", "shrunk_student", (f,)) for f in (0.2, 0.5, 0.7, 0.9, 1.1, 1.5, 2.0)),
    *((f"shifted-{o:g}", "shifted_student", (o,)) for o in (0.02, 0.1, 0.3, 1.0)),
    *((f"noisy-{c:g}-{u:g}", "noisy_student", (c, u)) for c, u in ((0.02, 0.02), (0.05, 0.05), (0.1, 0.1), (0.2, 0.2),
                                                                   (0.05, 0.0), (0.1, 0.0), (0.0, 0.05), (0.0, 0.1))),
    *((f"collapsed-w{w:g}", "collapsed_student", (float(w),)) for w in (1, 2, 4, 6)),
)
ORACLE_CSV = campaign.HERE / "results" / "detector_validation_oracle.csv"


def oracle_population() -> pd.DataFrame:
    """Each constructed oracle student's exact outcome and its summaries in both modes (columns as the population's)."""
    from guidegap import oracle as tier
    from guidegap.recording.schedulers import default_scheduler

    teacher = tier.oracle_mixture(0).denoiser(default_scheduler())
    reference = tier.oracle_outcome(teacher, teacher)
    held_out = teacher.mixture.sample(1000, generator=torch.Generator().manual_seed(CONSTRUCTION_SEED + 7))
    rows = []
    for name, build, arguments in (("teacher", None, ()), *ORACLE_STUDENTS):
        student = teacher if build is None else getattr(tier, build)(teacher, *arguments)
        outcome = tier.oracle_outcome(student, teacher)
        row = {"member": name, **outcome.to_dict(), "guides_like_teacher": guides_like(outcome, reference)}
        for mode, data in (("tf", None), ("probe", held_out)):
            report = guidegap.audit(student, teacher, num_samples=64 if data is None else None, num_steps=50, data=data,
                                    divergence=False, n_boot=200)
            row.update({f"{mode}_{k}": v.value for k, v in report.summary.items()})
            row[f"{mode}_all_rel_guided_error"] = report.summary["rel_guided_error"].value
        rows.append(row)
    return pd.DataFrame(rows)


def write_rule_sets(fitted: dict[tuple[str, str], Thresholds]) -> None:
    """Each candidate rule set as one set of library thresholds, both modes' fitted bars together (the teacher-forced
    bar as ``max_rel_guided_error``, the probe's as ``max_rel_guided_error_probe``), for ``RULE_SETS`` to take."""
    from guidegap.atomic import write_bytes_atomic
    from guidegap.auditing.report import _strict  # as a report writes thresholds: an infinite bar is null (no bar)

    combined = {}
    for set_name, overrides in RULE_SETS.items():
        bars = {GUIDED_BAR[mode]: getattr(fitted[(mode, set_name)], GUIDED_BAR[mode]) for mode in MODES
                if (mode, set_name) in fitted}
        combined[set_name] = _strict(rule_set_thresholds(overrides, **bars).to_dict())
    write_bytes_atomic(RULES_JSON, (json.dumps(combined, indent=1, allow_nan=False) + "\n").encode())


def oracle_check(picks: dict[str, tuple[str, Thresholds, float]], fitted: dict[tuple[str, str], Thresholds]) -> list[str]:
    """The report's lines: how often each rule set, with its Fashion-MNIST bar, agrees with the oracle outcomes."""
    frame = oracle_population()
    campaign._save_csv(frame, ORACLE_CSV)
    bad = ~frame.guides_like_teacher.to_numpy(bool)
    lines = ["", f"Constructed students of the oracle teacher, outcome measured exactly ({len(frame)} models, "
             f"{int((~bad).sum())} guide like the teacher; `{campaign.relative(ORACLE_CSV)}`), judged with the bars "
             "fitted on Fashion-MNIST:", "", "| mode | rule set | agreement | balanced | disagreements |", "|---|---|---:|---:|---|"]
    for (mode, set_name), thresholds in fitted.items():
        verdicts = library_verdicts(frame, mode, thresholds)
        flagged = np.array([v != "healthy" for v in verdicts])
        wrong = [f"{m} ({v}, {'guides' if not b else 'does not'})" for m, v, f, b in zip(frame.member, verdicts, flagged, bad) if f != b]
        lines.append(f"| {MODES[mode]} | {set_name} | {accuracy(bad, flagged):.0%} | {balanced_accuracy(bad, flagged):.0%} | "
                     f"{'; '.join(wrong) or 'none'} |")
    return lines


DECISION_JSON = TABLE.with_name("detector_validation_decision.json")
DEFAULT_GATE = 0.90  # issue 17: the default verdict agrees with the outcome on >= 90% of the held-out part


def decide(frame: pd.DataFrame, fitted: dict[tuple[str, str], Thresholds], picks: dict[str, tuple[str, Thresholds, float]],
           bad: np.ndarray, test: np.ndarray) -> tuple[dict, list[str]]:
    """docs/design.md §6 "How the default will be set", applied as written: (1) each mode's pick is its best rule set
    by balanced accuracy on the training part (the first in ``RULE_SETS`` order on a tie); where the modes differ, the
    data probe's set is taken with the trajectory bar refitted under it (``fitted`` holds each set's own bar). (2) It
    becomes the default only if its data-probe verdict agrees with the outcome on >= 90% of the held-out part. (3) The
    data probe runs by default on pairs that declare their data if its held-out accuracy beats the trajectories'.
    Returns the decision (also written to ``DECISION_JSON``) and the report's lines."""
    from guidegap.atomic import write_bytes_atomic
    from guidegap.auditing.report import _strict

    if "probe" not in picks:
        return {}, ["", "Decision (docs/design.md §6): no data-probe statistics yet; nothing decided."]
    chosen = picks["probe"][0]
    bars = {GUIDED_BAR[mode]: getattr(fitted[(mode, chosen)], GUIDED_BAR[mode]) for mode in MODES if (mode, chosen) in fitted}
    thresholds = rule_set_thresholds(RULE_SETS[chosen], **bars)
    held = {}
    for mode in MODES:
        judged = judged_members(frame, mode)
        flagged = library_flags(frame[judged & test], mode, thresholds)
        held[mode] = {"accuracy": accuracy(bad[judged & test], flagged), "members": int((judged & test).sum()),
                      "confusion": confusion_matrix(bad[judged & test], flagged).to_numpy().tolist()}
    gate_met = held["probe"]["accuracy"] >= DEFAULT_GATE
    probe_by_default = gate_met and held["probe"]["accuracy"] > held["tf"]["accuracy"]
    decision = {"picks": {mode: pick[0] for mode, pick in picks.items()}, "chosen": chosen,
                "thresholds": _strict(thresholds.to_dict()), "held_out": held, "gate": DEFAULT_GATE,
                "becomes_default": bool(gate_met and RULE_SETS[chosen] is not None),
                "probe_by_default": bool(probe_by_default), "population": len(frame), "held_out_members": int(test.sum())}
    write_bytes_atomic(DECISION_JSON, (json.dumps(decision, indent=1, allow_nan=False) + "\n").encode())
    bar_text = ", ".join(f"`{name}` = {value:.3f}" for name, value in bars.items() if value is not None) or "no free bar"
    lines = ["", "## Decision (docs/design.md §6, applied by `decide`)", "",
             "(1) Picks on the training part: " + "; ".join(f"{MODES[m]}: *{p[0]}* ({p[2]:.0%} balanced)" for m, p in picks.items())
             + f". Chosen: *{chosen}* ({bar_text}).",
             f"(2) Its data-probe verdict agrees with the outcome on {held['probe']['accuracy']:.0%} of the "
             f"{held['probe']['members']} held-out members (gate {DEFAULT_GATE:.0%}): "
             + ("it becomes the default thresholds." if decision["becomes_default"] else
                "the design rules are the pick; nothing changes." if RULE_SETS[chosen] is None else
                "the defaults stay as they are."),
             f"(3) Held-out accuracy, data probe {held['probe']['accuracy']:.0%} against teacher-forced "
             f"{held['tf']['accuracy']:.0%}: " + ("pairs that declare their data are audited by the data probe by default."
                                                  if probe_by_default else "trajectories stay the default mode."),
             f"Written to `{campaign.relative(DECISION_JSON)}`."]
    return decision, lines


def accuracy(bad: np.ndarray, flagged: np.ndarray) -> float:
    """Share of members whose prediction (flagged or not) agrees with the outcome (NaN for none)."""
    return float((flagged == bad).mean()) if len(bad) else float("nan")


def balanced_accuracy(bad: np.ndarray, flagged: np.ndarray) -> float:
    """Mean of the shares of failures flagged and of good members passed (NaN when either kind is absent): on a
    lopsided part, plain accuracy rewards flagging everything."""
    if not bad.any() or bad.all():
        return float("nan")
    return 0.5 * float(flagged[bad].mean() + (~flagged[~bad]).mean())


def confusion_matrix(bad: np.ndarray, flagged: np.ndarray) -> pd.DataFrame:
    """Outcome (rows) against prediction (columns), every cell shown even when empty."""
    outcome = pd.Categorical(np.where(bad, "does not guide like T", "guides like T"),
                             categories=["guides like T", "does not guide like T"])
    predicted = pd.Categorical(np.where(flagged, "flagged", "healthy"), categories=["healthy", "flagged"])
    return pd.crosstab(pd.Series(outcome, name="outcome"), pd.Series(predicted, name="verdict"), dropna=False)


def analyze() -> None:
    frame = population_table()
    if frame.empty:
        raise SystemExit("no evaluated members yet: run `python analyses/detector_validation.py evaluate`.")
    bad = ~frame.guides_like_teacher.to_numpy(bool)
    train, test = ~frame.held_out.to_numpy(bool), frame.held_out.to_numpy(bool)
    stats = []
    for column in candidate_columns(frame):
        score = frame[column].to_numpy(float)
        ok = np.isfinite(score)
        threshold, balanced_train = best_threshold(score[ok & train], bad[ok & train])
        flagged = score > threshold
        stats.append({"statistic": column, "auc_all": roc_auc(score[ok], bad[ok]), "auc_train": roc_auc(score[ok & train], bad[ok & train]),
                      "auc_held_out": roc_auc(score[ok & test], bad[ok & test]), "threshold_from_train": threshold,
                      "balanced_accuracy_train": balanced_train,
                      "accuracy_held_out": accuracy(bad[ok & test], flagged[ok & test])})
    stats = pd.DataFrame(stats).sort_values("auc_train", ascending=False)
    verdict_bad = frame.verdict.to_numpy(str) != "healthy"
    confusion = confusion_matrix(bad, verdict_bad)
    held = frame[test]
    accuracy_today = accuracy(bad[test], verdict_bad[test])
    usable = [c for c in stats.statistic if np.isfinite(frame[c].to_numpy(float)).all()]
    rule = best_pair_rule(frame, usable, bad, train) if usable and train.any() else {}
    rule_accuracy = accuracy(bad[test], rule["flagged"][test]) if rule else float("nan")
    peer = frame[frame.family == "peer"]
    amended_bad = ~frame.guides_like_teacher_of_headroom.to_numpy(bool)
    changed = frame.member[amended_bad != bad].tolist()
    campaign._save_csv(frame, TABLE)
    campaign._save_csv(stats, TABLE.with_name("detector_validation_statistics.csv"))
    lines = ["# Detector validation (issue 17): does the verdict predict what guidance does?", "",
             f"Population: {len(frame)} real models ({int((~bad).sum())} guide like the teacher, {int(bad.sum())} do not, "
             f"by docs/design.md §6); held out by family: {sorted(set(held.family))} ({len(held)} members).", "",
             f"The `design` rules' verdict (the defaults when issue 17 was filed, stored with each evaluation; `healthy` "
             f"vs anything else) agrees with the outcome for {accuracy_today:.0%} of the held-out "
             f"members (balanced accuracy {balanced_accuracy(bad[test], verdict_bad[test]):.0%}) and "
             f"{accuracy(bad, verdict_bad):.0%} of all.", "", "Confusion matrix (all members):", "",
             confusion.to_markdown(), "", "Held-out members:", "", confusion_matrix(bad[test], verdict_bad[test]).to_markdown(),
             "", "Candidate statistics, best first by ROC AUC on the training part:", "",
             stats.head(25).to_markdown(index=False, floatfmt=".3f")]
    good_share = float((~bad).mean())
    lines += ["", f"Balance (issue 17 asks for at least a quarter of each kind): {good_share:.0%} guide like the teacher, "
              f"{1 - good_share:.0%} do not."]
    if rule:
        lines += ["", f"Best rule of one or two statistics fitted on the training part: `{rule['rule']}` (balanced accuracy "
                  f"{rule['balanced_accuracy_train']:.0%} on the training part); it agrees with the outcome for "
                  f"{rule_accuracy:.0%} of the held-out members (balanced accuracy "
                  f"{balanced_accuracy(bad[test], rule['flagged'][test]):.0%}):", "",
                  confusion_matrix(bad[test], rule["flagged"][test]).to_markdown()]
    lines += ["", "guidegap's own verdict (`judge_pair`: `healthy` or not) under each rule set, its guided-error bar fitted "
              "on the training part, on members with that mode's statistics:", "",
              "| mode | rule set | guided-error bar (`max_rel_guided_error`; probe: `max_rel_guided_error_probe`) | balanced acc. (training) | accuracy (held out) | balanced (held out) "
              "| held-out confusion [[good passed, good flagged], [bad passed, bad flagged]] | peer teacher's verdict |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    picks: dict[str, tuple[str, Thresholds, float]] = {}  # per mode: its best rule set on the training part
    fitted: dict[tuple[str, str], Thresholds] = {}  # every (mode, rule set) with its bar
    for mode, mode_name in MODES.items():
        judged = judged_members(frame, mode)
        if not (judged & train).any():
            continue
        part = frame[judged]
        for set_name, overrides in RULE_SETS.items():
            thresholds, balanced_train = fit_rule_set(part, mode, overrides, bad[judged], train[judged])
            fitted[(mode, set_name)] = thresholds
            if balanced_train > picks.get(mode, ("", None, -1.0))[2]:
                picks[mode] = (set_name, thresholds, balanced_train)
            flagged = library_flags(part, mode, thresholds)
            held_bad, held_flagged = bad[judged & test], flagged[test[judged]]
            matrix = confusion_matrix(held_bad, held_flagged).to_numpy().tolist()
            bar = getattr(thresholds, GUIDED_BAR[mode])
            peer_rows = part[part.family == "peer"]  # an equally good model: a bar that flags it asks too much
            peer_verdict = ", ".join(library_verdicts(peer_rows, mode, thresholds)) or "not measured yet"
            lines.append(f"| {mode_name} | {set_name} | {'—' if bar is None else f'{bar:.3f}'} | {balanced_train:.0%} | "
                         f"{accuracy(held_bad, held_flagged):.0%} | {balanced_accuracy(held_bad, held_flagged):.0%} | {matrix} "
                         f"| {peer_verdict} |")
    if fitted:
        lines += oracle_check(picks, fitted)
        write_rule_sets(fitted)
        lines += decide(frame, fitted, picks, bad, test)[1]
    amended_line = (f"Sensitivity, not the outcome (docs/design.md §6, added after audit numbers were seen): with the gain "
                    f"measured as a share of the headroom 1 - a(1), {len(changed)} member(s) change outcome "
                    f"({', '.join(changed) or 'none'}); the design rules' verdict then agrees for "
                    f"{accuracy(amended_bad[test], verdict_bad[test]):.0%} of the held-out members")
    if rule:
        amended_line += f" and the fitted rule above for {accuracy(amended_bad[test], rule['flagged'][test]):.0%}"
    lines += ["", amended_line + "."]
    if not peer.empty:
        shown = ["verdict", "guides_like_teacher", "tf_rho", "tf_cos_delta", "tf_rel_cond_error", "tf_rel_uncond_error",
                 "tf_all_rel_gap_error", "probe_rho", "probe_cos_delta", "a4", "relative_gain", "fd4_over_teacher"]
        lines += ["", "Peer reference: a second teacher of the same recipe (seed 1) audited against the first. How far apart "
                  "two equally good models already are bounds what a threshold can ask of a student.", "",
                  peer[[c for c in shown if c in peer]].to_markdown(index=False, floatfmt=".3f")]
    from guidegap.atomic import write_bytes_atomic

    write_bytes_atomic(TABLE.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    log(f"wrote {campaign.relative(TABLE.with_suffix('.md'))}")
    figure(frame, stats, picks)


def figure(frame: pd.DataFrame, stats: pd.DataFrame, picks: dict[str, tuple[str, "Thresholds", float]]) -> None:
    """Left: the design set's two gap rules (rho band, cosine bar). Middle: per mode (teacher-forced, data probe), the relative
    guided error against the outcome's relative guidance gain, with the bar of that mode's best rule set on the
    training part. Right: ROC AUC of the best statistics on the training and held-out parts, side by side."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from guidegap.atomic import write_bytes_atomic

    good = frame.guides_like_teacher.to_numpy(bool)
    held = frame.held_out.to_numpy(bool)
    fig, axes = plt.subplots(1, 4, figsize=(24, 5.2), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 1, 1.15]})
    panels = [("tf_rho", "tf_cos_delta", None, None)]
    for mode in MODES:
        pick = picks.get(mode)
        panels.append((f"{mode}_all_rel_guided_error", "relative_gain", getattr(pick[1], GUIDED_BAR[mode]) if pick else None, mode))
    for ax, (x, y, threshold, mode) in zip(axes[:3], panels):
        if x is None or x not in frame or y not in frame:
            continue
        for mask, label, color, markers in ((good, "guides like teacher", "tab:green", ("o", "o")), (~good, "does not", "tab:red", ("x", "+"))):
            for part, marker, open_ in ((~held, markers[0], False), (held, markers[1], True)):
                chosen = mask & part
                style = {"facecolors": "none", "edgecolors": color} if open_ and marker == "o" else {"c": color}
                ax.scatter(frame[x][chosen], frame[y][chosen], s=30, marker=marker, alpha=0.85,
                           label=f"{label}{' (held out)' if open_ else ''}" if chosen.any() else None, **style)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="k", lw=0.9, ls="--", label=f"{GUIDED_BAR[mode]} from training part ({threshold:.3g})")
    if "tf_rho" in frame:
        axes[0].set_xscale("log")
        axes[0].set_xticks([v for v in (0.3, 0.5, 0.8, 1, 1.25, 2, 4, 8) if frame.tf_rho.min() / 1.5 <= v <= frame.tf_rho.max() * 1.5])
        axes[0].xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes[0].xaxis.set_minor_formatter(NullFormatter())
        axes[0].axvspan(0.8, 1.25, color="green", alpha=0.1, label="healthy rho band")
        axes[0].axhline(0.8, color="green", lw=0.8, ls=":", label="cosine bar (0.8)")
        inside = ((frame.tf_rho >= 0.8) & (frame.tf_rho <= 1.25) & (frame.tf_cos_delta >= 0.8)).sum()
        axes[0].set_title(f"the design gap rules: {inside} of {len(frame)} inside the rho band and above the cosine bar", fontsize=10)
    for ax, mode in zip(axes[1:3], MODES):
        ax.axhline(GUIDED_SHARE, color="grey", lw=0.8, ls=":", label=f"outcome's gain bar ({GUIDED_SHARE:g} x teacher's)")
        pick = picks.get(mode)
        ax.set_title(f"{MODES[mode]}: best rule set on the training part\n{pick[0] if pick else 'not measured'}", fontsize=9)
    for ax in axes[:3]:
        ax.legend(fontsize=7, loc="best")
    top = stats.head(12).iloc[::-1]
    rows = np.arange(len(top))
    axes[3].barh(rows + 0.2, top.auc_train, height=0.4, color="tab:blue", label="training part")
    axes[3].barh(rows - 0.2, top.auc_held_out.fillna(0), height=0.4, color="tab:orange", label="held out")
    axes[3].set_yticks(rows, top.statistic, fontsize=8)
    axes[3].axvline(0.5, color="k", lw=0.8, ls=":")
    axes[3].set_xlabel("ROC AUC (does not guide like teacher)")
    axes[3].set_xlim(0, 1)
    axes[3].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Detector validation: {len(frame)} real models ({int(good.sum())} guide like the teacher), "
                 "outcome by docs/design.md §6; open circles and +: held out")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    write_bytes_atomic(FIGURE, buffer.getvalue())
    log(f"wrote {campaign.relative(FIGURE)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["all", "status", "construct", "train", "evaluate", "analyze", "snapshot", "compute"])
    parser.add_argument("--only", nargs="*", help="restrict evaluate to these members")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    if args.stage in ("construct", "all"):
        construct()
    if args.stage == "all":  # cheapest first: the peer teacher's hours come after every other member is measured
        evaluate()
    if args.stage in ("train", "all"):
        train_students()
    if args.stage == "all":
        evaluate()
    if args.stage in ("train", "all"):
        train_peer()
    if args.stage in ("evaluate", "all"):
        evaluate(args.only)
    if args.stage in ("analyze", "all"):
        analyze()
    if args.stage == "snapshot":
        snapshot()
    if args.stage == "status":
        status()
    if args.stage in ("compute", "all"):
        compute_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
