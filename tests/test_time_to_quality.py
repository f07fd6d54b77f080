"""Time to quality (analyses/time_to_quality.py, issue 18): the target, the steps each recipe needs, and the ratio."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import analysis_script


@pytest.fixture(scope="module")
def ttq():
    with analysis_script("time_to_quality") as module:  # importing it neither reads nor writes results
        yield module


def _row(run: str, step: int, precision: str, cos: float, cond: float, uncond: float) -> dict:
    return dict(run=run, step=step, precision=precision, verdict="miscalibrated", rho=1.0, cos_delta=cos,
                rel_cond_error=cond, rel_uncond_error=uncond)


def test_target_is_the_old_recipe_at_its_step_and_the_new_recipe_counts_only_finished_runs(ttq):
    frame = pd.DataFrame([
        _row("dash-old-1000", 500, "float32", 0.20, 0.25, 0.26),
        _row("dash-old-1000", 800, "float32", 0.31, 0.19, 0.20),  # reaches the target before step 1000
        _row("dash-old-1000", 1000, "float32", 0.30, 0.20, 0.21),  # the target: cos >= 0.30, larger error <= 0.21
        _row("dash-new-200", 200, "bf16 autocast", 0.29, 0.19, 0.19),  # cosine short of it
        _row("dash-new-400", 200, "bf16 autocast", 0.40, 0.10, 0.10),  # mid-schedule: does not count
        _row("dash-new-400", 400, "bf16 autocast", 0.31, 0.20, 0.22),  # uncond error over it
        _row("dash-new-500", 500, "bf16 autocast", 0.30, 0.21, 0.20),  # reaches it (bounds inclusive)
        _row("cond-only-old-1000", 1000, "float32", 0.0, 9.0, 9.0),  # another objective: ignored
    ])
    lines = ttq.time_to_quality(frame, {"float32": 0.8, "bf16 autocast": 0.5}, target_step=1000)
    text = "\n".join(lines)
    assert "gap cosine >= 0.3000" in text and "<= 0.2100" in text
    assert "| old | float32 | 800 | 0.800 | 640 s | 1.00x | |" in text
    assert ("| new | bf16 autocast | 500 | 0.500 | 250 s | **2.56x less** (1.60x from steps, 1.60x per step) | "
            "200: 0.2900 / 0.1900, 400: 0.3100 / 0.2200 |") in text


def test_a_recipe_that_never_reaches_the_target_is_said_so(ttq):
    frame = pd.DataFrame([_row("dash-old-1000", 1000, "float32", 0.30, 0.20, 0.21),
                          _row("dash-new-300", 300, "bf16 autocast", 0.10, 0.30, 0.30)])
    text = "\n".join(ttq.time_to_quality(frame, {"float32": 0.8, "bf16 autocast": 0.5}))
    assert "| new | bf16 autocast | not reached | | | | 300: 0.1000 / 0.3000 |" in text


def test_a_missing_target_step_names_the_command_that_makes_it(ttq):
    frame = pd.DataFrame([_row("dash-old-500", 500, "float32", 0.30, 0.20, 0.21)])
    with pytest.raises(SystemExit, match="run old --steps 1000"):
        ttq.time_to_quality(frame, {"float32": 0.8, "bf16 autocast": 0.5})
