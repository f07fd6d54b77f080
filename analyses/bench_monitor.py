"""Benchmark: the cost of one GuidanceMonitor check on the cpu tier, at the monitor's default settings, along
trajectories and as a data probe (``data=``).

cpu-tier student (UNet2DModel (16, 40, 40) x2, 0.57M) against the cpu-tier teacher ((48, 96, 96) x2, 3.46M), both
1 x 28 x 28 with 10 classes and random weights (the cost does not depend on the weights); the monitor's default
audit (DEFAULT_NUM_SAMPLES x DEFAULT_SAMPLING_STEPS DDIM steps at w = 4, seed 0; 16 x 50 since the evidence rules, 16 x 25 when bench_monitor.md was measured), appended to a zarr log. For scale, one distillation step of the same pair at batch 64 (teacher
no-grad forward of both branches, student forward + backward of both branches) is timed in the same run.

    python analyses/bench_monitor.py        # prints and writes analyses/results/bench_monitor.md
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from guidegap.denoisers import as_denoiser
from guidegap.monitoring import GuidanceMonitor, load_log
from guidegap.monitoring.monitor import DEFAULT_PROBE_SAMPLES
from guidegap.training.architectures import build, count_parameters, model_spec

RESULTS = Path(__file__).resolve().parent / "results"
REPEATS = 3


def _distillation_step(teacher, student, optimizer, generator) -> float:
    x_t = torch.randn(64, 1, 28, 28, generator=generator)
    t = torch.randint(0, 1000, (64,), generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    started = time.perf_counter()
    with torch.no_grad():
        target_c, target_u = teacher.branches(x_t, t, labels)
    cond, uncond = student.branches(x_t, t, labels)
    loss = (cond - target_c).pow(2).mean() + (uncond - target_u).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def _time_checks(monitor: GuidanceMonitor, student_model: torch.nn.Module, store: Path) -> tuple[list[float], list[float]]:
    """Wall time of REPEATS + 1 checks (the first includes one-off costs: imports, allocator warm-up) and the audit
    seconds each logged."""
    wall = []
    for k in range(REPEATS + 1):
        started = time.perf_counter()
        monitor.check(k + 1, student_model)
        wall.append(time.perf_counter() - started)
    return wall, load_log(store)["check_seconds"].values.tolist()


def main() -> None:
    torch.manual_seed(0)
    teacher_model, student_model = (build(*model_spec("cpu", role)) for role in ("teacher", "student"))
    teacher, student = as_denoiser(teacher_model.eval()), as_denoiser(student_model)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(DEFAULT_PROBE_SAMPLES, 1, 28, 28, generator=generator) * 2 - 1  # the cost does not depend on them
    labels = torch.randint(0, 10, (DEFAULT_PROBE_SAMPLES,), generator=generator)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        monitor = GuidanceMonitor(teacher, store=Path(tmp) / "guidance.zarr", raise_on=None)
        wall, audit_s = _time_checks(monitor, student_model, Path(tmp) / "guidance.zarr")
        probe_monitor = GuidanceMonitor(teacher, store=Path(tmp) / "probe.zarr", raise_on=None, data=(images, labels))
        probe_wall, probe_audit_s = _time_checks(probe_monitor, student_model, Path(tmp) / "probe.zarr")
    optimizer = torch.optim.AdamW(student_model.parameters(), lr=2e-4)
    steps = [_distillation_step(teacher, student, optimizer, generator) for _ in range(REPEATS + 1)][1:]
    load_after = os.getloadavg()

    check_s, probe_s, step_s = statistics.median(wall[1:]), statistics.median(probe_wall[1:]), statistics.median(steps)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
               f"1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    o = monitor.options
    text = (
        "# GuidanceMonitor check cost (cpu tier)\n\n"
        f"Machine: {machine}.\n"
        f"Teacher {count_parameters(teacher_model) / 1e6:.2f}M, student {count_parameters(student_model) / 1e6:.2f}M parameters, "
        "1x28x28, 10 classes, random weights. Trajectory check (the monitor's default): "
        f"{o['num_samples']} samples x {o['num_steps']} DDIM steps, w = {o['guidance_scale']:g}, seed {o['seed']}, "
        f"n_boot {o['n_boot']}, with the student's free-running path (divergence). Data-probe check (`data=`): "
        f"{probe_monitor.options['num_samples']} images at uniform t (random pixels: the cost does not depend on them). "
        "Each appended to a zarr log.\n\n"
        "| measurement | trajectories | data probe |\n|---|---:|---:|\n"
        f"| first check (incl. one-off warm-up), s | {wall[0]:.2f} | {probe_wall[0]:.2f} |\n"
        f"| one check, median of {REPEATS} (audit + zarr append), s | {check_s:.2f} | {probe_s:.2f} |\n"
        f"| of which the audit (median `check_seconds` in the log), s | {statistics.median(audit_s[1:]):.2f} | "
        f"{statistics.median(probe_audit_s[1:]):.2f} |\n"
        f"| check / distillation step (batch 64, {step_s:.2f} s, median of {REPEATS}) | {check_s / step_s:.1f} | {probe_s / step_s:.1f} |\n\n"
        f"A check every N steps adds {check_s / step_s:.1f} / N of the training time along trajectories "
        f"(e.g. {100 * check_s / step_s / 500:.1f}% at N = 500), {probe_s / step_s:.1f} / N as a data probe "
        f"({100 * probe_s / step_s / 500:.1f}%).\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_monitor.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
