"""How large is the guidance gap next to the branch errors of a converged student, and is its low cosine fine detail?

The first converged Fashion-MNIST students (issue 13) guide like their teacher (``dash``: fidelity 0.90 at w = 4, FD
11.4 against the teacher's 12.0) while their gap cosine against the teacher is 0.23, far under the verdict's 0.8.
Three measurements on the committed checkpoints, teacher-forced along 50-step DDIM on the checkpoints' stored noise
schedule at w = 4 (64 samples, seed 0, the audit's defaults):

1. **scale**: the teacher's gap RMS over its conditional-branch RMS, and each student's branch errors in units of
   the teacher's gap RMS. When the errors are several times the gap, per-step gap statistics compare two errors.
2. **resolution**: the gap cosine after average-pooling both gaps by 2, 4 and 7 (28x28 -> 14, 7, 4). If the
   disagreement were fine detail that sampling averages away, pooling would raise the cosine.
3. **reproducibility**: two students of one recipe audited against each other (``dash`` at 4,000 steps against
   ``dash-x2`` at 4,000 and 8,000, the same seed and data order, another LR schedule), beside each against the teacher.

Writes ``analyses/results/gap_scale.md``. About 3 minutes on 1 thread.

    python analyses/gap_scale.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "gap_scale.md"
STUDENTS = ("dash/step_0001000", "dash/step_0004000", "dash-x2/step_0008000", "cond-only/step_0004000",
            "composite/step_0004000")
PAIRS = (("dash/step_0004000", "dash-x2/step_0004000"), ("dash/step_0004000", "dash-x2/step_0008000"))
POOLING = (1, 2, 4, 7)


def _gaps(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) gaps as (sample * step, pixels) tensors from a trace kept with ``keep_predictions``."""
    gap = ds.pred_cond - ds.pred_uncond
    return (torch.from_numpy(gap.sel(model=m).values).flatten(0, 1) for m in ("teacher", "student"))


def pooled_cosines(teacher_gap: torch.Tensor, student_gap: torch.Tensor) -> dict[int, float]:
    """Mean over samples and steps of cos(pool_k(Delta_S), pool_k(Delta_T)) for each pooling factor k."""
    return {k: float(F.cosine_similarity(F.avg_pool2d(student_gap, k).flatten(1), F.avg_pool2d(teacher_gap, k).flatten(1),
                                         dim=1).mean()) for k in POOLING}


def main() -> None:
    import fashion_mnist as campaign

    import guidegap
    from guidegap.atomic import write_bytes_atomic
    from guidegap.checkpoints import load_scheduler
    from guidegap.denoisers import Memoized, as_denoiser

    def load(name: str):
        return as_denoiser(guidegap.load_model(campaign.CHECKPOINTS / f"{name}.pt").model)

    teacher = Memoized(load("teacher"))
    stored = load_scheduler(guidegap.load_model(campaign.TEACHER_FILE).scheduler_config)  # DDIM on the campaign's schedule
    audit = dict(num_samples=64, num_steps=50, guidance_scale=4.0, seed=0, scheduler=stored)
    rows = []
    for name in STUDENTS:
        ds = guidegap.trace(teacher, load(name), keep_predictions=True, **audit)
        t = ds.sel(model="teacher")
        gap_t = float(t.gap_norm.mean())
        teacher_gap, student_gap = _gaps(ds)
        cos = pooled_cosines(teacher_gap, student_gap)
        rows.append(f"| {name} | {gap_t / float(t.cond_norm.mean()):.3f} | {float(ds.cond_error.mean()) / gap_t:.2f} | "
                    f"{float(ds.uncond_error.mean()) / gap_t:.2f} | {float(ds.gap_norm.sel(model='student').mean()) / gap_t:.3f} | "
                    + " | ".join(f"{cos[k]:.3f}" for k in POOLING) + " |")
        print(rows[-1], flush=True)
    pairs = []
    for a, b in PAIRS:
        against_peer = guidegap.audit(load(a), load(b), **audit).summary
        against_teacher = guidegap.audit(load(b), teacher, **audit).summary
        pairs.append(f"| {a} | {b} | {against_peer['rho'].value:.3f} | {against_peer['cos_delta'].value:.3f} | "
                     f"{against_peer['rel_cond_error'].value:.3f} | {against_teacher['cos_delta'].value:.3f} |")
        print(pairs[-1], flush=True)
    lines = [
        "# The gap's scale, resolution and reproducibility on the converged students (measured)", "",
        "Teacher-forced along 50-step DDIM (the checkpoints' stored schedule) at w = 4, 64 samples, seed 0, on the committed checkpoints "
        "(`analyses/checkpoints/fashion_mnist/`). Produced by `python analyses/gap_scale.py`.", "",
        "| student | teacher gap / its eps_c (RMS) | cond error / teacher gap | uncond error / teacher gap | rho | "
        + " | ".join(f"cos, {k}x{k} blocks" for k in POOLING) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(POOLING), *rows, "",
        "Cosine: the mean over samples and steps of cos(pool(Delta_S), pool(Delta_T)), pooling by averaging k x k pixel "
        "blocks (k = 1 is the audit's `cos_delta`).", "",
        "Two students of one recipe against each other (the first audited with the second as its reference), and the second "
        "against the teacher:", "",
        "| student | reference student | rho | gap cosine | cond error / reference branch RMS | reference vs teacher: gap cosine |",
        "|---|---|---:|---:|---:|---:|", *pairs, ""]
    write_bytes_atomic(OUT, "\n".join(lines).encode())
    print(f"wrote {OUT.relative_to(HERE.parent)}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_num_threads(1)
    main()
