"""Can a data probe run without data? DASH's probe on the teacher's own guided samples (issue 17, a candidate).

The detector validation (``analyses/detector_validation.py``) finds DASH's data probe — both branches on held-out
images noised at uniform t — the most predictive recording mode, but a user may not have the teacher's data. This
script puts the teacher's own samples in the data's place: 1,000 guided samples of the campaign teacher (w = 4, the
audit's scale; 50-step DDIM, the audit's sampler; labels ``i % 10``; seed 0), probed exactly as the data probe is
(one uniform t per image, guided error at w = 4), for every member of the population's table. It reports each
statistic's ROC AUC and the guided-error bar fitted on the training part, scored on the held-out part, beside the data
probe's and the teacher-forced audit's — the same split and fitting as the detector validation.

The candidate and its settings were fixed on 2026-12-07 before any of its numbers existed, after the other
statistics of 66 members had been seen (docs/design.md §6).

    python analyses/detector_validation.py analyze   # first: the population's table
    python analyses/teacher_sample_probe.py          # analyses/results/teacher_sample_probe.{csv,md}

The teacher's samples are kept under ``runs/`` (about 16 CPU-minutes to draw on 2 cores); each member then takes
about 5 s (the teacher's half of the probe is answered from memory after the first).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_validation as validation  # noqa: E402
import fashion_mnist as campaign  # noqa: E402

import guidegap  # noqa: E402
from guidegap.atomic import write_bytes_atomic  # noqa: E402
from guidegap.denoisers import Memoized, as_denoiser  # noqa: E402
from guidegap.metrics import summarize  # noqa: E402
from guidegap.recording.probe import probe  # noqa: E402
from guidegap.recording.sampler import sample  # noqa: E402

GUIDANCE = 4.0  # the audit's scale, for the samples and for the probe's guided error
NUM_SAMPLES = 1000
NUM_STEPS = 50
SEED = 0
SAMPLES = validation.RUNS / f"teacher_samples_w{GUIDANCE:g}.pt"
OUT = campaign.HERE / "results" / "teacher_sample_probe"
COMPARED = {"tsp_rel_guided_error": "teacher-sample probe (this script)",
            "probe_all_rel_guided_error": "data probe, 10,000 test images",
            "tf_all_rel_guided_error": "teacher-forced, 64 x 50 (the audit's default)"}


def teacher_samples(teacher: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's guided samples with their labels (drawn once, then read from ``runs/``)."""
    labels = torch.arange(NUM_SAMPLES) % 10
    if SAMPLES.exists():
        return torch.load(SAMPLES, weights_only=True), labels
    validation.log(f"drawing {NUM_SAMPLES} teacher samples at w = {GUIDANCE:g} ({NUM_STEPS}-step DDIM)")
    images = sample(teacher, labels, guidance_scale=GUIDANCE, num_steps=NUM_STEPS, seed=SEED, chunk_size=250)
    SAMPLES.parent.mkdir(parents=True, exist_ok=True)
    torch.save(images, SAMPLES)
    return images, labels


def measure(frame: pd.DataFrame) -> pd.DataFrame:
    """Each member's teacher-sample probe summary (``tsp_<name>`` columns)."""
    teacher = guidegap.load_model(campaign.TEACHER_FILE)
    data = teacher_samples(teacher)
    memo = Memoized(as_denoiser(teacher), max_entries=100_000)
    rows = []
    for member, checkpoint in zip(frame.member, frame.checkpoint):
        ds = probe(memo, guidegap.load_model(campaign.REPO / checkpoint), data, guidance_scale=GUIDANCE, seed=SEED,
                   num_samples=NUM_SAMPLES, chunk_size=250)
        summary = summarize(ds, n_boot=10, seed=SEED)  # values only; the intervals are not used here
        rows.append({"member": member, **{f"tsp_{name}": estimate.value for name, estimate in summary.items()}})
        validation.log(f"{member}: guided error / teacher {summary['rel_guided_error'].value:.3f}")
    return pd.DataFrame(rows)


def report(frame: pd.DataFrame) -> list[str]:
    """AUCs and the training-fitted bar, scored on the held-out part, for each compared statistic."""
    bad = ~frame.guides_like_teacher.to_numpy(bool)
    train, test = ~frame.held_out.to_numpy(bool), frame.held_out.to_numpy(bool)
    lines = ["# A data probe without data: the teacher's own samples in the data's place", "",
             f"{len(frame)} members of the detector validation ({int((~bad).sum())} guide like the teacher; held out: "
             f"{int(test.sum())}). Teacher samples: {NUM_SAMPLES} at w = {GUIDANCE:g}, {NUM_STEPS}-step DDIM, seed {SEED}.",
             "", "| statistic | AUC training | AUC held out | AUC all | bar fitted on training | balanced acc. training "
             "| accuracy held out | balanced held out |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for column, label in COMPARED.items():
        score = frame[column].to_numpy(float)
        bar, balanced_train = validation.best_threshold(score[train], bad[train])
        flagged = score > bar
        lines.append(f"| {label} | {validation.roc_auc(score[train], bad[train]):.3f} | "
                     f"{validation.roc_auc(score[test], bad[test]):.3f} | {validation.roc_auc(score, bad):.3f} | {bar:.3f} | "
                     f"{balanced_train:.0%} | {validation.accuracy(bad[test], flagged[test]):.0%} | "
                     f"{validation.balanced_accuracy(bad[test], flagged[test]):.0%} |")
    correlation = np.corrcoef(frame.tsp_rel_guided_error, frame.probe_all_rel_guided_error)[0, 1]
    lines += ["", f"Correlation of the teacher-sample probe's guided error with the data probe's over the members: "
              f"{correlation:.3f}."]
    return lines


def main() -> int:
    if not validation.TABLE.exists():
        raise SystemExit(f"no population table: run `python analyses/detector_validation.py analyze` first "
                         f"({campaign.relative(validation.TABLE)}).")
    population = pd.read_csv(validation.TABLE)
    measured = measure(population)
    frame = population.merge(measured, on="member")
    campaign._save_csv(frame[["member", "family", "held_out", "guides_like_teacher", *COMPARED]], OUT.with_suffix(".csv"))
    write_bytes_atomic(OUT.with_suffix(".md"), ("\n".join(report(frame)) + "\n").encode())
    validation.log(f"wrote {campaign.relative(OUT.with_suffix('.md'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
