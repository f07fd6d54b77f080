"""A short prepared check of guidegap's CUDA paths (run on a GPU machine; nothing here is needed on CPU).

Checks, printing one line each and exiting non-zero on a failure:

1. distillation on CUDA through the teacher cache: a run that fills the cache and one that reuses it end with the
   same weights (to GPU determinism), and the cache files hold CPU float32 tensors;
2. :func:`guidegap.recording.sampling.sample` of a cpu-tier UNet on CUDA matches the same model on CPU;
3. a :class:`guidegap.denoisers.Memoized` CUDA teacher serves a second audit from memory with identical metrics;
4. wall time of one 64-sample x 50-step audit of the cpu-tier teacher / student UNets on this GPU.

    PYTHONPATH=. python analyses/device_check.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

import guidegap
from guidegap.auditing.verdicts import VERDICTS
from guidegap.denoisers import Memoized, as_denoiser
from guidegap.recording.sampling import sample
from guidegap.training import architectures
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train

failures: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 1
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    root = Path(tempfile.mkdtemp())

    # 1. teacher cache on CUDA
    runs = []
    for name in ("fill", "reuse"):
        config = TrainConfig(out=str(root / name), tier="oracle", teacher="oracle", objective="dash", train_steps=30, batch_size=256,
                             checkpoint_every=30, progress=False, teacher_cache=str(root / "cache"))
        runs.append(guidegap.load_model(train(config).checkpoint).model.state_dict())
    diff = max(float((runs[0][k].float() - runs[1][k].float()).abs().max()) for k in runs[0])
    from safetensors.torch import load_file

    stored = load_file(str(next((root / "cache").glob("step*.safetensors"))))
    check("teacher cache on CUDA", diff < 1e-4 and stored["cond"].device.type == "cpu" and stored["cond"].dtype == torch.float32,
          f"max weight difference fill vs reuse {diff:.2e}; {len(list((root / 'cache').glob('step*')))} step files")

    # 2. sampler on CUDA vs CPU
    torch.manual_seed(0)
    model = architectures.build(*architectures.model_spec("cpu", "student", 10)).eval()
    labels = torch.arange(16) % 10
    on_cpu = sample(model, labels, guidance_scale=3.0, num_steps=10, seed=3)
    tf32 = sample(model.to(device), labels, guidance_scale=3.0, num_steps=10, seed=3)
    # TF32 convolutions (cuDNN's default) round inputs to 10 mantissa bits: compare in full float32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    on_gpu = sample(model, labels, guidance_scale=3.0, num_steps=10, seed=3)
    torch.backends.cudnn.allow_tf32 = True
    gap, gap_tf32 = float((on_cpu - on_gpu).abs().max()), float((on_cpu - tf32).abs().max())
    check("sampler CUDA vs CPU", on_gpu.device.type == "cpu" and gap < 1e-3,
          f"max |difference| {gap:.2e} in float32, {gap_tf32:.2e} with TF32 (images in [-1, 1])")

    # 3. memoized CUDA teacher
    torch.manual_seed(1)
    teacher_model = architectures.build(*architectures.model_spec("cpu", "teacher", 10)).eval().to(device)
    student_model = model
    teacher = Memoized(as_denoiser(teacher_model))
    first = guidegap.audit(student_model, teacher, num_samples=16, num_steps=10)
    second = guidegap.audit(student_model, teacher, num_samples=16, num_steps=10)
    same = first.dataset["gap_norm"].equals(second.dataset["gap_norm"])
    check("memoized CUDA teacher", same and teacher.hits == 10 and teacher.misses == 10,
          f"hits {teacher.hits}, misses {teacher.misses}, identical metrics {same}")

    # 4. audit time on this GPU (untrained weights: the cost does not depend on them)
    guidegap.audit(student_model, as_denoiser(teacher_model), num_samples=8, num_steps=5)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    report = guidegap.audit(student_model, as_denoiser(teacher_model), num_samples=64, num_steps=50)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    check("audit 64 x 50, cpu-tier UNets 3.46M / 0.57M", report.verdict in VERDICTS,
          f"{seconds:.2f} s on {torch.cuda.get_device_name(0)}")
    print("FAILED: " + ", ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
