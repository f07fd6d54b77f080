"""The cpu-tier Fashion-MNIST teacher that issue 18's training benchmarks distil (3.46M parameters, linear schedule).

It was the package's built-in example teacher until the converged campaign replaced it (commit 2db769e): the
example teacher is now the campaign's 0.87M model, smaller than a cpu-tier student. The benchmarks keep the cpu
tier's 6x ratio (teacher 3.46M, student 0.57M) and the rows measured on this teacher before, so they read it from
git history into the ignored ``runs/`` rather than ship a second 7 MB file.

    python analyses/cpu_tier_teacher.py      # prints its path, extracting it first if needed
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMIT = "82ae5c8"  # the last commit whose guidegap/examples/fashion_mnist/teacher.pt is the cpu-tier teacher
SOURCE = "guidegap/examples/fashion_mnist/teacher.pt"
PATH = REPO / "runs" / "cpu_tier_teacher" / "teacher.pt"


def cpu_tier_teacher() -> Path:
    """The teacher's file under ``runs/``, written atomically from git history on first use."""
    if PATH.exists():
        return PATH
    result = subprocess.run(["git", "-C", str(REPO), "show", f"{COMMIT}:{SOURCE}"], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"expected a git clone of guidegap with commit {COMMIT} (the cpu-tier teacher's last version), "
                         f"received: {result.stderr.decode().strip() or 'no history'}; fix: run from a full clone "
                         "(git fetch --unshallow).")
    PATH.parent.mkdir(parents=True, exist_ok=True)
    partial = PATH.with_suffix(".partial")
    partial.write_bytes(result.stdout)
    os.replace(partial, PATH)
    return PATH


if __name__ == "__main__":
    print(cpu_tier_teacher())
    sys.exit(0)
