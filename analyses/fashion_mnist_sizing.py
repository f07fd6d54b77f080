"""Size the Fashion-MNIST campaign (issue 13): what each candidate teacher/student pair costs per training step.

The campaign must fit teacher, cache, ten students and evaluation in 12 hours of this 2-core machine, at a
compression ratio of 5.9-6.1x. For each candidate pair of 28x28 diffusers UNets this prints the parameter
counts and, best of ``--repeats``:

- the teacher's training step (forward + backward, batch 64),
- the teacher's cache pass (both branches, 2 x 64, no grad),
- a student's DASH step (both branches, forward + backward, 2 x 64),

with 2 torch threads and with 1 (two 1-thread jobs side by side can beat one 2-thread job on small models).
Run it on a quiet machine::

    python analyses/fashion_mnist_sizing.py   # -> analyses/results/fashion_mnist_sizing.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from guidegap.atomic import atomic_path
from guidegap.training.architectures import unet_config, build, count_parameters

OUT = Path(__file__).resolve().parent / "results" / "fashion_mnist_sizing.md"
# (name, teacher channels, teacher groups, student channels, student groups), all with 2 layers per block
CANDIDATES = (
    ("cpu tier (today)", (48, 96, 96), 8, (16, 40, 40), 4),
    ("medium", (32, 64, 64), 8, (12, 24, 28), 4),
    ("small", (24, 48, 48), 8, (8, 20, 20), 4),
)


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(channels: tuple[int, ...], groups: int, repeats: int, train_batch: int) -> dict[str, float]:
    model = build("UNet2DModel", unet_config(channels, 2, 28, 1, 10, groups, head_dim=8))
    x = torch.randn(train_batch, 1, 28, 28)
    t = torch.randint(0, 1000, (train_batch,))
    y = torch.randint(0, 11, (train_batch,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, t, class_labels=y).sample.square().mean().backward()

    with torch.no_grad():
        forward = _best(lambda: model(x, t, class_labels=y), repeats)
    return {"params": count_parameters(model), "step": _best(step, repeats), "forward": forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lines = ["# Fashion-MNIST campaign sizing", "",
             f"Machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}; best of {args.repeats}. "
             "Produced by `python analyses/fashion_mnist_sizing.py`.", "",
             "| pair | teacher params | student params | ratio | threads | teacher step (64) s | cache pass (2x64) s | student step (2x64) s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t_channels, t_groups, s_channels, s_groups in CANDIDATES:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            teacher = measure(t_channels, t_groups, args.repeats, 64)
            teacher_pass = measure(t_channels, t_groups, args.repeats, 128)["forward"]
            student = measure(s_channels, s_groups, args.repeats, 128)
            row = (f"| {name} {t_channels}/{s_channels} | {teacher['params']:,} | {student['params']:,} | "
                   f"{teacher['params'] / student['params']:.2f} | {threads} | {teacher['step']:.3f} | {teacher_pass:.3f} | {student['step']:.3f} |")
            print(row, flush=True)
            lines.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(OUT) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
