"""Is the campaign teacher weak because of its loss weighting? A small model on uniform weights, for comparison.

The Fashion-MNIST teacher (868,705 parameters, issue 13) trains on DASH's TIRT-weighted eps loss, whose weight is
~SNR_t at low SNR (``analyses/teacher_high_noise.py``). This trains the campaign's *student* architecture
(143,277 parameters) from scratch on the plain eps loss (uniform weights over t; the campaign's student recipe:
AdamW lr 2e-3, cosine to 1e-6, EMA 0.995, DASH's cosine noise schedule, label dropout 0.1) for 2,000 steps at
batch 64, then screens what guidance does with it: fidelity (the project classifier's accuracy on guided samples
against their label) of 100 samples at w = 1 and 4 under clamped ancestral DDPM and plain DDIM, 25 steps, the
sampler settings of the teacher's screen (``analyses/teacher_samplers.py``); and the campaign's own outcome evaluation
(FD and fidelity, ``fashion_mnist.outcomes``) under clamped ancestral DDPM. Resumable (``runs/uniform_weight_check``).

Writes ``analyses/results/uniform_weight_check.md``.

    python analyses/uniform_weight_check.py [--train-steps 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE.parent / "runs" / "uniform_weight_check" / "scratch"
SAMPLES_PER_CLASS = 10


def main() -> None:
    import fashion_mnist as campaign

    from guidegap import load_model
    from guidegap.atomic import write_bytes_atomic
    from guidegap.checkpoints import load_scheduler
    from guidegap.evaluation import load_classifier
    from guidegap.evaluation.fidelity import guidance_fidelity
    from guidegap.recording.sampler import sample
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import export_path, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=2000)
    args = parser.parse_args()
    config = TrainConfig(out=str(OUT), role="student", objective="scratch", tier="cpu", seed=campaign.SEED, data="fashion-mnist",
                         model_class="UNet2DModel", progress=False, train_steps=args.train_steps, model_config=campaign.STUDENT_MODEL,
                         checkpoint_every=250, export_steps=[args.train_steps], **campaign.STUDENT)
    train(config, resume=True)
    final_loss = json.loads((OUT / "log.jsonl").read_text().splitlines()[-1])["loss"]
    minutes = campaign.training_seconds(OUT)[0] / 60
    loaded = load_model(export_path(OUT, args.train_steps))
    parameters = sum(p.numel() for p in loaded.model.parameters())
    classifier = load_classifier()
    labels = torch.arange(10).repeat_interleave(SAMPLES_PER_CLASS)
    lines = ["# A small model on uniform loss weights, against the campaign teacher (screen)", "",
             f"The campaign's student architecture ({parameters:,} parameters) trained from scratch on the plain eps loss, "
             f"{args.train_steps} steps at batch 64 with the campaign's student recipe (`runs/uniform_weight_check`; "
             f"final loss {final_loss:.4f}; {minutes:.0f} min of training on 1 thread beside the campaign). Fidelity of {10 * SAMPLES_PER_CLASS} samples (seed 1), 25 sampler steps. "
             "Produced by `python analyses/uniform_weight_check.py`.", "",
             "| sampler | x0 clamp | fidelity w = 1 | fidelity w = 4 |", "|---|---|---:|---:|"]
    for sampler, clamp in (("ddpm", True), ("ddim", False)):
        scheduler = load_scheduler(loaded.scheduler_config, sampler)
        fidelity = [guidance_fidelity(sample(loaded.model, labels, guidance_scale=w, num_steps=25, scheduler=scheduler, seed=1,
                                             clip_x0=clamp), labels, classifier) for w in (1.0, 4.0)]
        lines.append(f"| {'ancestral DDPM' if sampler == 'ddpm' else 'DDIM'} | {'yes' if clamp else 'no'} | "
                     f"{fidelity[0]:.2f} | {fidelity[1]:.2f} |")
    convention = campaign.Convention("ddpm", True)  # the campaign's outcome measurement, as its teacher's
    outcome = campaign.outcomes(loaded.model, load_scheduler(loaded.scheduler_config, convention.sampler), convention,
                                campaign.make_context(), grids=False)
    lines += ["", f"The campaign's outcome evaluation ({convention.description}; {campaign.FD_SAMPLES} samples per FD set, "
              "the teacher's table in the README):", "", "| FD w = 1 / 4 / TAG | fidelity w = " +
              " / ".join(f"{w:g}" for w in campaign.FIDELITY_SCALES) + " |", "|---|---|",
              f"| {' / '.join(f'{v:.1f}' for v in outcome.fd.values)} | "
              f"{' / '.join(f'{v:.3f}' for v in outcome.fidelity_accuracy.values)} |"]
    out = HERE / "results" / "uniform_weight_check.md"
    write_bytes_atomic(out, ("\n".join(lines) + "\n").encode())
    print(out.read_text())


if __name__ == "__main__":
    main()
