"""Which samplers draw the campaign teacher's guided samples correctly? A quick screen of step counts and x0 clamps.

For the Fashion-MNIST teacher (issue 13): guidance fidelity (the project classifier's accuracy on guided samples
against their label) of 100 samples (10 per class, seed 1) at w = 4, for DDIM (eta 0) and ancestral DDPM on the
teacher's stored noise schedule, with and without the x0 clamp, at several step counts; and DDIM with the clamp
and eps re-derived from the clamped x0 (diffusers' ``use_clipped_model_output``, GLIDE's choice). A screen, not
the campaign's evaluation (that one is ``analyses/fashion_mnist.py``: 1,000 samples, FD too); SE ~0.02-0.05.

Writes ``analyses/results/teacher_samplers_<training step>.{csv,md}`` (or ``--out``).

    python analyses/teacher_samplers.py [--checkpoint analyses/checkpoints/fashion_mnist/teacher.pt]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from diffusers import DDIMScheduler, DDPMScheduler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SAMPLES_PER_CLASS = 10
GUIDANCE = 4.0
SEED = 1


class DDIMWithClippedEps(DDIMScheduler):
    """DDIM whose step re-derives eps from the clamped x0 (``use_clipped_model_output=True``)."""

    def step(self, *args, **kwargs):
        kwargs["use_clipped_model_output"] = True
        return super().step(*args, **kwargs)


SAMPLERS = (  # (name, scheduler class, steps, x0 clamp)
    ("DDIM", DDIMScheduler, 25, False),
    ("DDIM", DDIMScheduler, 25, True),
    ("DDIM, eps from the clamped x0", DDIMWithClippedEps, 25, True),
    ("DDIM", DDIMScheduler, 50, False),
    ("DDIM", DDIMScheduler, 50, True),
    ("DDIM", DDIMScheduler, 100, False),
    ("ancestral DDPM", DDPMScheduler, 25, False),
    ("ancestral DDPM", DDPMScheduler, 25, True),
    ("ancestral DDPM", DDPMScheduler, 50, True),
    ("ancestral DDPM", DDPMScheduler, 100, True),
)


def screen(checkpoint: Path) -> pd.DataFrame:
    from guidegap import load_model
    from guidegap.checkpoints import load_scheduler
    from guidegap.evaluation import load_classifier
    from guidegap.evaluation.fidelity import guidance_fidelity
    from guidegap.recording.sampler import sample
    from guidegap.recording.schedulers import scheduler_from_config

    loaded = load_model(checkpoint)
    base = load_scheduler(loaded.scheduler_config)  # DDIM on the stored noise schedule
    classifier = load_classifier()
    labels = torch.arange(10).repeat_interleave(SAMPLES_PER_CLASS)
    rows = []
    for name, cls, steps, clamp in SAMPLERS:
        started = time.perf_counter()
        images = sample(loaded.model, labels, guidance_scale=GUIDANCE, num_steps=steps, seed=SEED,
                        scheduler=scheduler_from_config(cls, base.config), clip_x0=clamp)
        rows.append({"sampler": name, "steps": steps, "x0_clamp": clamp, "fidelity_w4": guidance_fidelity(images, labels, classifier),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows).assign(checkpoint_step=loaded.checkpoint.step)


def write(frame: pd.DataFrame, checkpoint: str, out: Path) -> None:
    from guidegap.atomic import write_bytes_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out.with_suffix(".csv"), frame.to_csv(index=False).encode())
    lines = ["# Samplers on the campaign teacher: guidance fidelity at w = 4 (screen)", "",
             f"Checkpoint `{checkpoint}` (training step {int(frame.checkpoint_step.iloc[0])}); {10 * SAMPLES_PER_CLASS} samples ({SAMPLES_PER_CLASS} per class, seed {SEED}) "
             f"at w = {GUIDANCE:g}, each sampler on the stored noise schedule. Produced by `python analyses/teacher_samplers.py`.", "",
             "| sampler | steps | x0 clamp | fidelity (w = 4) | seconds |", "|---|---:|---|---:|---:|"]
    lines += [f"| {r.sampler} | {r.steps} | {'yes' if r.x0_clamp else 'no'} | {r.fidelity_w4:.2f} | {r.seconds:.0f} |"
              for r in frame.itertuples()]
    write_bytes_atomic(out.with_suffix(".md"), ("\n".join(lines) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=HERE / "checkpoints" / "fashion_mnist" / "teacher.pt")
    parser.add_argument("--out", type=Path, help="output stem (default: analyses/results/teacher_samplers_<training step>)")
    args = parser.parse_args()
    from fashion_mnist import relative

    frame = screen(args.checkpoint)
    out = args.out or HERE / "results" / f"teacher_samplers_{int(frame.checkpoint_step.iloc[0])}"
    write(frame, relative(args.checkpoint), out)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
