"""Benchmark: distillation step time per objective (cpu tier) and 1 vs 2 DDP processes on CPU.

1. ``dash`` vs ``composite`` vs ``cond-only`` (and the other objectives) on the cpu tier: teacher
   UNet2DModel (48, 96, 96) x2 (3.46M), student (16, 40, 40) x2 (0.57M), Fashion-MNIST-shaped batches of
   64. Each objective runs the real training loop; the per-step time is read from its log (steps after
   the first two, which warm up), objectives interleaved over repeats; medians reported. Weights are
   random: the cost of a step does not depend on them.
2. DDP: the oracle-tier dash loop with the same global batch, 1 process vs ``torchrun --nproc_per_node 2``.

    python analyses/bench_training.py          # writes analyses/results/bench_training.md
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
OBJECTIVES = ("dash", "composite", "cond-only", "multi-w", "gap", "pdm")


def _seconds_per_step(out: Path, skip: int = 2) -> float:
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    first, last = logs[skip - 1], logs[-1]
    return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def objective_step_times(steps: int, repeats: int) -> dict[str, list[float]]:
    from guidegap.training.architectures import build, model_spec
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    torch.manual_seed(0)
    teacher = build(*model_spec("cpu", "teacher", 10)).eval()
    times: dict[str, list[float]] = {name: [] for name in OBJECTIVES}
    for repeat in range(repeats):
        for name in OBJECTIVES:
            with tempfile.TemporaryDirectory() as tmp:
                config = TrainConfig(out=tmp, tier="cpu", teacher="benchmark-teacher", objective=name, steps=steps,
                                     log_every=1, checkpoint_every=10**9, progress=False)
                train(config, teacher=teacher)
                times[name].append(_seconds_per_step(Path(tmp)))
            print(f"repeat {repeat} {name}: {times[name][-1]:.3f} s/step", flush=True)
    return times


DDP_SCRIPT = """
import sys, torch
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train
torch.set_num_threads(int(sys.argv[2]))
train(TrainConfig(out=sys.argv[1], tier="oracle", teacher="oracle", objective="dash", steps=int(sys.argv[3]),
                  batch_size=1024, log_every=1, checkpoint_every=10**9, progress=False))
"""


def ddp_step_times(steps: int) -> dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ddp_run.py"
        script.write_text(DDP_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for label, command, threads in (
            ("1 process, 2 threads", [sys.executable, str(script)], "2"),
            ("1 process, 1 thread", [sys.executable, str(script)], "1"),
            ("2 processes (torchrun, gloo), 1 thread each", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)], "1"),
        ):
            run_dir = Path(tmp) / label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            subprocess.run([*command, str(run_dir), threads, str(steps)], check=True, env=env, capture_output=True)
            out[label] = _seconds_per_step(run_dir)
            print(f"{label}: {out[label]:.4f} s/step", flush=True)
    return out


def main() -> None:
    started = time.time()
    times = objective_step_times(steps=10, repeats=3)
    ddp = ddp_step_times(steps=60)
    medians = {name: statistics.median(values) for name, values in times.items()}
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = ["# Training benchmark", "", f"Machine: {machine}; run took {time.time() - started:.0f} s.", "",
             "## Distillation step time, cpu tier (teacher 3.46M, student 0.57M, batch 64, 28x28)", "",
             "| objective | median s/step | runs (s/step) | vs composite |", "|---|---:|---|---:|"]
    for name in OBJECTIVES:
        runs = ", ".join(f"{v:.3f}" for v in times[name])
        lines.append(f"| {name} | {medians[name]:.3f} | {runs} | {medians[name] / medians['composite']:.3f} |")
    lines += ["", "## Oracle-tier dash loop, global batch 1024: 1 vs 2 processes", "", "| setup | s/step |", "|---|---:|"]
    lines += [f"| {label} | {value:.4f} |" for label, value in ddp.items()]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_training.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
