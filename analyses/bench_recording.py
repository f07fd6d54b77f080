"""Benchmark: the cost of recording (vs. the bare forward passes) and memory flat in the number of steps.

1. Overhead: wall time of ``guidegap.trace`` (teacher-forced, teacher + student UNet2DModels) against a
   bare loop doing exactly the same forward passes (both branches of both models in batches of 2B, the
   teacher's guided DDIM trajectory) with no metrics, interleaved ABBA in one run; ratio of medians.
   Because two-core wall times drift by +-10% between runs, the recorder's own per-step work (metric
   reductions and buffer writes) is also timed from inside the recorded run: ``recorder_own_share``.
2. Memory: growth of the resident set during a recording (peak sampled every 5 ms, minus the RSS just
   before) at 10 vs 200 steps, fresh subprocess each, with and without ``keep_predictions``.

    python analyses/bench_recording.py            # full run, writes analyses/results/bench_recording.{csv,md}
    python analyses/bench_recording.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def build_pair(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A Fashion-MNIST-shaped teacher (32,64,64) and a ~4x smaller student (16,32,32), 10 classes."""
    from diffusers import UNet2DModel

    def unet(channels: tuple[int, ...]) -> torch.nn.Module:
        return UNet2DModel(
            sample_size=28, in_channels=1, out_channels=1, block_out_channels=channels, layers_per_block=1,
            down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
            norm_num_groups=8, num_class_embeds=11,
        ).eval()

    torch.manual_seed(seed)
    return unet((32, 64, 64)), unet((16, 32, 32))


def bare_forward_passes(teacher, student, num_samples: int, num_steps: int, chunk_size: int, w: float = 4.0) -> None:
    """The recorder's forward passes and DDIM steps with nothing recorded."""
    from guidegap.denoisers import as_denoiser
    from guidegap.recording.schedulers import default_scheduler

    t_den, s_den = as_denoiser(teacher), as_denoiser(student)
    with torch.inference_mode():
        for start in range(0, num_samples, chunk_size):
            n = min(chunk_size, num_samples - start)
            scheduler = default_scheduler()
            scheduler.set_timesteps(num_steps)
            x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(start))
            labels = torch.arange(start, start + n) % 10
            for t in scheduler.timesteps:
                cond, uncond = t_den.branches(scheduler.scale_model_input(x, t), t, labels)
                s_den.branches(scheduler.scale_model_input(x, t), t, labels)
                x = scheduler.step(uncond + w * (cond - uncond), t, x, return_dict=False)[0]


def recorded(teacher, student, num_samples: int, num_steps: int, chunk_size: int) -> None:
    import guidegap

    guidegap.trace(teacher, student, num_samples=num_samples, num_steps=num_steps, chunk_size=chunk_size,
                   guidance_scale=4.0)


class _Stopwatch:
    """Adds up the time spent inside the recorder's own per-step work (metrics + buffer writes)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def overhead(num_samples: int, num_steps: int, chunk_sizes: list[int], repeats: int) -> pd.DataFrame:
    """Wall-time ratio recorded / bare (ABBA order against drift), and the recorder's own time measured inside."""
    from guidegap.recording import buffers, trajectory

    teacher, student = build_pair()
    recorded(teacher, student, 2, 2, 2)  # warm-up (imports, allocator)
    bare_forward_passes(teacher, student, 2, 2, 2)
    watch = _Stopwatch()
    originals = (trajectory.model_metrics, trajectory.pair_metrics, buffers.MetricBuffers.put)
    trajectory.model_metrics, trajectory.pair_metrics = watch.wrap(originals[0]), watch.wrap(originals[1])
    buffers.MetricBuffers.put = watch.wrap(originals[2])
    rows = []
    try:
        for chunk in chunk_sizes:
            bare_times, rec_times, own = [], [], []
            for repeat in range(repeats):
                order = ("bare", "rec") if repeat % 2 == 0 else ("rec", "bare")
                for which in order:
                    watch.seconds = 0.0
                    t0 = time.perf_counter()
                    if which == "bare":
                        bare_forward_passes(teacher, student, num_samples, num_steps, chunk)
                        bare_times.append(time.perf_counter() - t0)
                    else:
                        recorded(teacher, student, num_samples, num_steps, chunk)
                        rec_times.append(time.perf_counter() - t0)
                        own.append(watch.seconds / rec_times[-1])
            ratios = [r / b for r, b in zip(rec_times, bare_times)]
            rows.append({
                "chunk_size": chunk, "num_samples": num_samples, "num_steps": num_steps, "repeats": repeats,
                "bare_s_median": statistics.median(bare_times), "recorded_s_median": statistics.median(rec_times),
                "ratio_of_medians": statistics.median(rec_times) / statistics.median(bare_times),
                "ratio_min": min(ratios), "ratio_max": max(ratios),
                "recorder_own_share": statistics.median(own),
            })
            print(rows[-1], flush=True)
    finally:
        trajectory.model_metrics, trajectory.pair_metrics, buffers.MetricBuffers.put = originals
    return pd.DataFrame(rows)


class PeakRSS:
    """Samples this process's resident set size every few milliseconds in a thread; ``peak`` in MiB."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self.process, self.interval_s, self.peak = psutil.Process(), interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss / 2**20)
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.process.memory_info().rss / 2**20
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss / 2**20)


def _measure_peak(warm_up, run) -> dict[str, float]:
    """RSS just before ``run()`` (after ``warm_up()`` and a collection) and its peak during it, MiB; ``run`` returns the Dataset."""
    import gc

    import psutil

    warm_up()  # warm every code path
    gc.collect()
    before = psutil.Process().memory_info().rss / 2**20
    with PeakRSS() as peak:
        ds = run()
    return {"rss_before_mib": before, "peak_rss_during_mib": peak.peak, "dataset_mib": ds.nbytes / 2**20}


def _memory_child(num_samples: int, num_steps: int, chunk_size: int, keep: bool) -> None:
    """Runs in a fresh process: RSS before one recording and its peak during it (MiB)."""
    import guidegap

    teacher, student = build_pair()
    result = _measure_peak(
        lambda: guidegap.trace(teacher, student, num_samples=chunk_size, num_steps=2, chunk_size=chunk_size),
        lambda: guidegap.trace(teacher, student, num_samples=num_samples, num_steps=num_steps, chunk_size=chunk_size,
                               keep_predictions=keep),
    )
    print(json.dumps(result))


def _audit_memory_child(num_samples: int, num_steps: int, chunk_size: int) -> None:
    """Runs in a fresh process: RSS before one full ``guidegap.audit`` (with divergence) and its peak during it (MiB)."""
    import guidegap

    teacher, student = build_pair()
    result = _measure_peak(
        lambda: guidegap.audit(student, teacher, num_samples=chunk_size, num_steps=2, chunk_size=chunk_size),
        lambda: guidegap.audit(student, teacher, num_samples=num_samples, num_steps=num_steps, chunk_size=chunk_size).dataset,
    )
    print(json.dumps(result))


def _child(flag: str, *values: int) -> dict[str, float]:
    """Run this script's ``flag`` child in a fresh process; its measurement plus ``growth_mib``."""
    out = subprocess.run([sys.executable, __file__, flag, *map(str, values)], check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    result = json.loads(out)
    return {**result, "growth_mib": result["peak_rss_during_mib"] - result["rss_before_mib"]}


def audit_memory(settings: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Peak RSS growth of whole audits, one fresh process per ``(num_samples, num_steps, chunk_size)``."""
    rows = []
    for samples, steps, chunk in settings:
        rows.append({"num_samples": samples, "num_steps": steps, "chunk_size": chunk,
                     **_child("--audit-memory-child", samples, steps, chunk)})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def write_audit_memory(quick: bool) -> None:
    """The audit-memory sweep (64 vs 1024 samples at chunk 16 and 64), as ``bench_audit_memory[_quick].{csv,md}``."""
    sweep = audit_memory([(8, 2, 4), (32, 2, 4)] if quick else [(64, 10, 16), (1024, 10, 16), (64, 10, 64), (1024, 10, 64)])
    RESULTS.mkdir(exist_ok=True)
    name = "bench_audit_memory_quick" if quick else "bench_audit_memory"
    sweep.to_csv(RESULTS / f"{name}.csv", index=False)
    (RESULTS / f"{name}.md").write_text(
        "# Audit memory: peak RSS growth of one `guidegap.audit` (with divergence) vs samples and chunk size\n\n"
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}. "
        "Teacher 1.06M / student 0.27M UNet2DModels, 28x28; one fresh process per row.\n\n"
        f"{sweep.to_markdown(index=False, floatfmt='.1f')}\n")
    print((RESULTS / f"{name}.md").read_text())


def memory(step_counts: list[int], num_samples: int, chunk_size: int) -> pd.DataFrame:
    rows = []
    for keep in (False, True):
        for steps in step_counts:
            rows.append({"keep_predictions": keep, "num_steps": steps, "num_samples": num_samples, "chunk_size": chunk_size,
                         **_child("--memory-child", num_samples, steps, chunk_size, int(keep))})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audit-memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audit-memory-only", action="store_true", help="only the audit memory sweep (samples x chunk)")
    args = parser.parse_args()
    if args.memory_child:
        n, steps, chunk, keep = args.memory_child
        _memory_child(n, steps, chunk, bool(keep))
        return
    if args.audit_memory_child:
        _audit_memory_child(*args.audit_memory_child)
        return
    if args.audit_memory_only or args.quick:
        write_audit_memory(quick=args.quick)
        if args.audit_memory_only:
            return
    torch.set_num_threads(torch.get_num_threads())
    if args.quick:
        cost = overhead(num_samples=8, num_steps=3, chunk_sizes=[8], repeats=1)
        mem = memory([2, 6], num_samples=4, chunk_size=4)
    else:
        cost = overhead(num_samples=32, num_steps=10, chunk_sizes=[8, 32], repeats=6)
        mem = memory([10, 50, 200], num_samples=16, chunk_size=16)
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {platform.processor() or 'cpu'}"
    suffix = "_quick" if args.quick else ""
    cost.to_csv(RESULTS / f"bench_recording_overhead{suffix}.csv", index=False)
    mem.to_csv(RESULTS / f"bench_recording_memory{suffix}.csv", index=False)
    text = (f"# Recording benchmark\n\nMachine: {machine}.\n\n## Overhead (recorded / bare forward passes)\n\n"
            f"{cost.to_markdown(index=False, floatfmt='.3f')}\n\n## Peak RSS growth during one recording\n\n"
            f"{mem.to_markdown(index=False, floatfmt='.1f')}\n")
    (RESULTS / f"bench_recording{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
