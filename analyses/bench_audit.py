"""Benchmark: wall time of a full CLI audit, 64 samples x 50 DDIM steps, of two small UNet2DModels.

The teacher (32, 64, 64) and the student (16, 32, 32) are Fashion-MNIST-shaped (1 x 28 x 28, 10 classes),
saved as diffusers folders; the audit runs through the console script exactly as a user would, imports
included, and is compared with the bare forward passes it needs (per step: both branches of the teacher
and of the student at the teacher's state, plus the student's own guided path for the divergence).

    python analyses/bench_audit.py             # writes analyses/results/bench_audit.md
    python analyses/bench_audit.py --profile   # in-process: audit vs bare forward passes, then a cProfile
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recording import bare_forward_passes, build_pair  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def profile(num_samples: int = 64, num_steps: int = 10, repeats: int = 2) -> None:
    """Where an audit's time goes: ``guidegap.audit`` (no divergence) against the bare forward passes it needs,
    interleaved in one process, then the top of a cProfile of one audit (printed, not written)."""
    import cProfile
    import pstats

    import guidegap

    teacher, student = build_pair()
    guidegap.audit(student, teacher, num_samples=8, num_steps=2, divergence=False)  # warm every code path
    for _ in range(repeats):
        t0 = time.perf_counter()
        bare_forward_passes(teacher, student, num_samples, num_steps, chunk_size=64)
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        guidegap.audit(student, teacher, num_samples=num_samples, num_steps=num_steps, divergence=False)
        audit = time.perf_counter() - t0
        print(f"{num_samples} x {num_steps}: bare forward passes {bare:.2f} s, audit {audit:.2f} s, ratio {audit / bare:.3f}")
    profiler = cProfile.Profile()
    profiler.enable()
    guidegap.audit(student, teacher, num_samples=num_samples, num_steps=num_steps, divergence=False)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    if "--profile" in sys.argv[1:]:
        profile()
        return
    teacher, student = build_pair()
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("teacher", teacher), ("student", student))}
    with tempfile.TemporaryDirectory() as tmp:
        teacher.save_pretrained(Path(tmp) / "teacher")
        student.save_pretrained(Path(tmp) / "student")
        base = ["guidegap", "audit", str(Path(tmp) / "student"), "--teacher", str(Path(tmp) / "teacher"),
                "--num-samples", "64", "--num-steps", "50", "--fail-on", "none", "--no-progress"]
        cli = {}
        for label, extra in (("full", []), ("no_divergence", ["--no-divergence"])):
            t0 = time.perf_counter()
            done = subprocess.run(base + extra, capture_output=True, text=True)
            cli[label] = time.perf_counter() - t0
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            if label == "full":
                report_tail = done.stdout
    t0 = time.perf_counter()
    bare_forward_passes(teacher, student, num_samples=64, num_steps=50, chunk_size=64)
    bare_s = time.perf_counter() - t0
    # The student's own path (divergence) is one more student forward of 2B per step: time it alone.
    t0 = time.perf_counter()
    bare_forward_passes(student, student, num_samples=64, num_steps=50, chunk_size=64)
    student_pair_s = time.perf_counter() - t0
    floor_s = bare_s + student_pair_s / 2
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    text = (
        "# Audit benchmark\n\n"
        f"Machine: {machine}. Teacher {params['teacher'] / 1e6:.2f}M, student {params['student'] / 1e6:.2f}M parameters, "
        "1x28x28, 10 classes; 64 samples x 50 DDIM steps, w = 4.\n\n"
        "| measurement | seconds |\n|---|---:|\n"
        f"| `guidegap audit` CLI, end to end (imports, loading, recording, bootstrap, report) | {cli['full']:.1f} |\n"
        f"| floor: bare forward passes incl. the student's own path (divergence) | {floor_s:.1f} |\n"
        f"| CLI / floor | {cli['full'] / floor_s:.2f} |\n"
        f"| `guidegap audit --no-divergence`, end to end | {cli['no_divergence']:.1f} |\n"
        f"| floor: bare forward passes of teacher + student on the teacher's path | {bare_s:.1f} |\n"
        f"| CLI --no-divergence / floor | {cli['no_divergence'] / bare_s:.2f} |\n\n"
        "Last lines of the report:\n\n```\n" + "\n".join(report_tail.strip().splitlines()[-8:]) + "\n```\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_audit.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
