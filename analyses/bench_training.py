"""Benchmark: the cpu-tier distillation step, float32 (the old path) against the new default path (bf16 autocast).

1. ``dash`` on the cpu tier (teacher UNet2DModel 3.46M from ``analyses/cpu_tier_teacher.py``, student 0.57M, batch 64, 28x28) through the real training
   loop with the teacher's branches cached (as the reproduction trains), float32 vs bf16 autocast (accelerate), over
   repeats; seconds per step read from the loop's log after two warm-up steps. On a CPU without bf16 units (no AMX,
   no AVX-512 BF16) bf16 is emulated and far slower, so it is timed once, briefly.
2. What else might pay, measured in isolation (best of N): the student's forward+backward at batch 64 in float32 /
   bf16 / bf16 + channels-last, at batch 128 (per sample), and with 1 vs 2 threads; the teacher's forward (2 x 64, both
   branches, what a cache fill costs per step) in float32 and bf16, and the bf16 teacher's gap error, which decides
   whether a half-precision cache could be harmless.
3. The other objectives' step time relative to ``composite`` (float32 and bf16), and DDP on CPU (oracle tier).

    python analyses/bench_training.py          # writes analyses/results/bench_training.{md,json} (about 15 minutes)
    python analyses/bench_training.py --gap-accuracy-only   # re-measures that one section

Run it on a quiet machine: every number is a ratio within this one run.
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
from cpu_tier_teacher import cpu_tier_teacher

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "analyses" / "results"
OBJECTIVES = ("dash", "composite", "cond-only", "multi-w", "gap", "pdm")
PATHS = {"float32": "no", "bf16 autocast": "bf16"}


def _seconds_per_step(out: Path, skip: int = 2) -> float:
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    first, last = logs[skip - 1], logs[-1]
    return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def loop_step_times(cache: Path, steps: int, repeats: int, objectives=("dash",), paths: dict[str, str] = PATHS
                    ) -> dict[tuple[str, str], list[float]]:
    """s/step of the real loop per (objective, path), teacher branches from ``cache`` (filled on the first pass)."""
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train

    times: dict[tuple[str, str], list[float]] = {}
    for repeat in range(repeats + 1):  # pass 0 fills the cache and is not counted
        for name in objectives:
            for label, precision in paths.items():
                with tempfile.TemporaryDirectory() as tmp:
                    config = TrainConfig(out=tmp, tier="cpu", teacher=str(cpu_tier_teacher()), objective=name, train_steps=steps, log_every=1,
                                         checkpoint_every=10**9, progress=False, teacher_cache=str(cache),
                                         mixed_precision=precision)
                    train(config)
                    if repeat:
                        times.setdefault((name, label), []).append(_seconds_per_step(Path(tmp)))
                        print(f"repeat {repeat} {name} {label}: {times[name, label][-1]:.3f} s/step", flush=True)
    return times


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _bf16_units() -> bool:
    from guidegap.training.loop import cpu_has_bf16_units

    return cpu_has_bf16_units()


BF16_UNITS = _bf16_units()


def _best(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def isolated_times() -> tuple[dict[str, float], dict[str, float]]:
    from guidegap.checkpoints import load_model
    from guidegap.training.architectures import build, model_spec

    torch.manual_seed(0)
    student = build(*model_spec("cpu", "student", 10)).train()
    teacher = load_model(cpu_tier_teacher()).model.eval()
    out: dict[str, float] = {}

    def student_step(batch: int, dtype: torch.dtype | None, channels_last: bool = False):
        model = student.to(memory_format=torch.channels_last) if channels_last else student.to(memory_format=torch.contiguous_format)
        x = torch.randn(2 * batch, 1, 28, 28)
        x = x.to(memory_format=torch.channels_last) if channels_last else x
        t = torch.randint(0, 1000, (2 * batch,))
        y = torch.randint(0, 11, (2 * batch,))

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                pred = model(x, t, class_labels=y).sample
            pred.float().square().mean().backward()

        return run

    low = torch.bfloat16 if BF16_UNITS else None  # without bf16 units the candidates are tried in float32
    tag = "bf16" if BF16_UNITS else "float32"
    for label, batch, dtype, cl in (("student fwd+bwd, 2x64, float32", 64, None, False),
                                     ("student fwd+bwd, 2x64, bf16", 64, torch.bfloat16, False),
                                     (f"student fwd+bwd, 2x64, {tag} channels-last", 64, low, True),
                                     (f"student fwd+bwd, 2x128 per 64 samples, {tag}", 128, low, False)):
        seconds = _best(student_step(batch, dtype, cl), repeats=5 if dtype is None or BF16_UNITS else 1)
        out[label] = seconds / (batch / 64)
        print(f"{label}: {out[label]:.3f} s", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out[f"student fwd+bwd, 2x64, {tag}, 1 thread"] = _best(student_step(64, low))
    torch.set_num_threads(threads)
    print(f"1 thread: {out[f'student fwd+bwd, 2x64, {tag}, 1 thread']:.3f} s", flush=True)

    x = (torch.randn(64, 1, 28, 28) * 0.7).repeat(2, 1, 1, 1)  # the same inputs in both halves: cond, then null
    t = torch.full((128,), 500)
    y = torch.cat([torch.arange(64) % 10, torch.full((64,), 10)])
    with torch.no_grad():
        out["teacher fwd 2x64, float32"] = _best(lambda: teacher(x, t, class_labels=y))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["teacher fwd 2x64, bf16"] = _best(lambda: teacher(x, t, class_labels=y), repeats=5 if BF16_UNITS else 1)
    accuracy = teacher_gap_accuracy(teacher)
    for key in ("teacher fwd 2x64, float32", "teacher fwd 2x64, bf16"):
        print(f"{key}: {out[key]:.3f} s", flush=True)
    print(accuracy, flush=True)
    return out, accuracy


@torch.no_grad()
def teacher_gap_accuracy(teacher: torch.nn.Module) -> dict[str, float]:
    """The bf16 teacher's guidance-gap error against float32 on noised test images (64 per t, same inputs)."""
    from guidegap.data import load_fashion_mnist
    from guidegap.training.noise import add_noise, noise_scheduler

    images, labels = load_fashion_mnist("test")
    generator = torch.Generator().manual_seed(0)
    x0, y = images[:64], labels[:64]
    abar = noise_scheduler("linear").alphas_cumprod  # the cpu-tier teacher's schedule
    accuracy: dict[str, float] = {}
    for step_t in (50, 500, 900):
        t = torch.full((64,), step_t)
        x = add_noise(x0, torch.randn(x0.shape, generator=generator), t, abar).repeat(2, 1, 1, 1)
        both_t, both_y = t.repeat(2), torch.cat([y, torch.full_like(y, 10)])
        full = teacher(x, both_t, class_labels=both_y).sample.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = teacher(x, both_t, class_labels=both_y).sample.float()
        gap_full, gap_half = full[:64] - full[64:], half[:64] - half[64:]
        accuracy[f"t={step_t}: gap RMS / eps RMS (float32)"] = float(gap_full.norm() / full[:64].norm())
        accuracy[f"t={step_t}: |gap_bf16 - gap_fp32| / |gap_fp32|"] = float((gap_half - gap_full).norm() / gap_full.norm())
        accuracy[f"t={step_t}: cos(gap_bf16, gap_fp32)"] = float(torch.nn.functional.cosine_similarity(
            gap_half.flatten(), gap_full.flatten(), dim=0))
    print(accuracy, flush=True)
    return accuracy


ACCURACY_HEADING = "bf16 teacher: error of its guidance gap against float32 on the same inputs"


def _accuracy_lines(accuracy: dict[str, float]) -> list[str]:
    return [ACCURACY_HEADING + " (64 Fashion-MNIST test images noised to each t)", "", "| quantity | value |", "|---|---:|",
            *[f"| {label} | {value:.4f} |" for label, value in accuracy.items()]]


def rewrite_accuracy_section() -> None:
    """Re-measure only the bf16 teacher's gap accuracy and replace that section of bench_training.md."""
    from guidegap.checkpoints import load_model

    path = RESULTS / "bench_training.md"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(ACCURACY_HEADING))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    new = _accuracy_lines(teacher_gap_accuracy(load_model(cpu_tier_teacher()).model.eval())) + [""]
    path.write_text("\n".join(lines[:start] + new + lines[end:]) + "\n")


DDP_SCRIPT = """
import sys, torch
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train
torch.set_num_threads(int(sys.argv[2]))
train(TrainConfig(out=sys.argv[1], tier="oracle", teacher="oracle", objective="dash", train_steps=int(sys.argv[3]),
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
            ("2 processes (torchrun, gloo), 1 thread each", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)], "1"),
        ):
            run_dir = Path(tmp) / label.split(" (")[0].replace(" ", "_").replace(",", "")
            subprocess.run([*command, str(run_dir), threads, str(steps)], check=True, env=env, capture_output=True)
            out[label] = _seconds_per_step(run_dir)
            print(f"{label}: {out[label]:.4f} s/step", flush=True)
    return out


def main() -> None:
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        dash = loop_step_times(Path(tmp) / "cache", steps=12, repeats=3, paths={"float32": "no"})
        # without bf16 units a bf16 step takes ~15 s here: a short run, once
        dash.update(loop_step_times(Path(tmp) / "cache", steps=12 if BF16_UNITS else 5, repeats=3 if BF16_UNITS else 1,
                                    paths={"bf16 autocast": "bf16"}))
        others = loop_step_times(Path(tmp) / "cache", steps=8, repeats=1, objectives=OBJECTIVES[1:], paths={"float32": "no"})
    isolated, accuracy = isolated_times()
    ddp = ddp_step_times(steps=40)
    from guidegap.training.loop import cpu_bf16_units

    units = cpu_bf16_units()
    machine = (f"{platform.machine()} {_cpu_name()}, bf16 units: {' and '.join(units) or 'none (no AMX, no AVX-512 BF16)'}, "
               f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    median = {key: statistics.median(v) for key, v in {**dash, **others}.items()}
    old, new = (median["dash", label] for label in PATHS)
    lines = ["# Training benchmark", "", f"Machine: {machine}; run took {time.time() - started:.0f} s.", "",
             "## The cpu-tier dash step (batch 64, teacher branches cached), real training loop", "",
             "| path | median s/step | runs (s/step) |", "|---|---:|---|"]
    lines += [f"| {label} | {median['dash', label]:.3f} | {', '.join(f'{v:.3f}' for v in dash['dash', label])} |" for label in PATHS]
    ratio = f"{old / new:.2f}x faster" if new < old else f"{new / old:.2f}x slower"
    lines += ["", f"bf16 autocast against float32: **{ratio}**; "
              f"`mixed_precision='auto'` picks {'bf16' if BF16_UNITS else 'float32'} on this CPU.", "",
              "## Other objectives, float32 (one repeat, 8 steps)", "", "| objective | s/step | vs composite |", "|---|---:|---:|"]
    for name in OBJECTIVES:
        lines.append(f"| {name} | {median[name, 'float32']:.3f} | {median[name, 'float32'] / median['composite', 'float32']:.3f} |")
    lines += ["", "## Candidates measured in isolation (best of 5)", "", "| what | seconds |", "|---|---:|"]
    lines += [f"| {label} | {value:.3f} |" for label, value in isolated.items()]
    lines += ["", *_accuracy_lines(accuracy)]
    lines += ["", "## Oracle-tier dash loop, global batch 1024: 1 vs 2 processes", "", "| setup | s/step |", "|---|---:|"]
    lines += [f"| {label} | {value:.4f} |" for label, value in ddp.items()]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_training.md").write_text(text)
    # what analyses/time_to_quality.py reads: the dash step of each path, s/step (medians of this run)
    (RESULTS / "bench_training.json").write_text(json.dumps(
        {"machine": machine, "dash_seconds_per_step": {label: median["dash", label] for label in PATHS}}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    if "--gap-accuracy-only" in sys.argv:
        rewrite_accuracy_section()
    else:
        main()
