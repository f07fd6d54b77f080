"""Built-in example models, shipped with the package (no download): a Fashion-MNIST teacher and two students.

All three come from the converged campaign of ``analyses/fashion_mnist.py``, trained on this project's 2-core CPU
(teacher: 0.87M-parameter UNet2DModel, 12,000 steps on DASH's recipe; students: 0.14M, 6.06x smaller, 4,000
distillation steps each from the same teacher), exported as EMA weights in float16:

- ``cond-only``: distilled on the conditional branch only; its null-label branch never gets a gradient;
- ``dash``: distilled with DASH (arXiv 2606.00798) as docs/design.md specifies it.

analyses/results/fashion_mnist.md has their full audits, FD and guidance fidelity. Under the default rules
(docs/design.md §6) cond-only is ``misguided`` (its guided prediction is off the teacher's by 0.77 of the teacher's
conditional branch in the data probe, 0.67 along trajectories) and dash ``healthy`` (0.185 against the probe's bar of
0.189, 0.28 against the trajectories' 0.353): dash guides like its teacher by the samples' own measure, cond-only
does not. Under ``--rules design`` both are ``miscalibrated``: no compressed student of the campaign meets the design
rules' gap-cosine bar.

``guidegap audit --example [cond-only|dash]`` audits one of them against the teacher; ``--example oracle``
audits a constructed collapsed student against the exact Gaussian-mixture teacher (seconds, no files).
"""

from __future__ import annotations

from pathlib import Path

from guidegap.errors import InputError

__all__ = ["EXAMPLES", "EXAMPLE_AUDIT", "example_path", "example_pair"]

FOLDER = Path(__file__).resolve().parent / "fashion_mnist"
EXAMPLES = ("cond-only", "dash")
# Audit settings of the built-in example: enough samples and steps for stable verdicts, small enough to finish in
# well under a minute on 2 CPU cores (the teacher dominates). Any explicit --num-samples/--num-steps wins.
EXAMPLE_AUDIT = {"num_samples": 32, "num_steps": 25}


def example_path(name: str) -> Path:
    """The shipped checkpoint ``name`` (``teacher``, ``cond-only`` or ``dash``)."""
    if name not in ("teacher", *EXAMPLES):
        raise InputError(f"expected an example in {('teacher', *EXAMPLES)}, received {name!r}.")
    path = FOLDER / f"{name}.pt"
    if not path.is_file():
        raise InputError(f"the built-in example {path} is missing from this installation; reinstall guidegap "
                         "(pip install --force-reinstall guidegap) or run analyses/fashion_mnist.py to rebuild it.")
    return path


def example_pair(name: str = "cond-only") -> tuple[Path, Path]:
    """``(student, teacher)`` checkpoint paths of a built-in example."""
    if name not in EXAMPLES:
        raise InputError(f"expected --example one of {', '.join(EXAMPLES)} (or oracle), received {name!r}.")
    return example_path(name), example_path("teacher")
