"""The verdict under DASH's TAG schedule (analyses/tag_validation.py): §6's outcome at TAG and the judging of the stored
summaries, without the campaign's files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import analysis_script


@pytest.fixture(scope="module")
def tag():
    with analysis_script("tag_validation") as module:  # importing it neither reads nor writes results
        yield module


def _evaluation(a1: float, a4: float, a_tag: float, fd4: float, fd_tag: float) -> xr.Dataset:
    guidance = ["1", "4", "tag"]
    return xr.Dataset({"fd_accuracy": ("guidance", np.array([a1, a4, a_tag])),
                       "fd": ("guidance", np.array([100.0, fd4, fd_tag]))}, coords={"guidance": guidance})


TEACHER = _evaluation(a1=0.5, a4=0.98, a_tag=0.84, fd4=12.0, fd_tag=20.0)  # gain at TAG 0.34, at w = 4 0.48


def test_the_outcome_at_tag_is_section_6_with_w_4_replaced_by_the_schedule(tag):
    # sharp at w = 4 only (composite-like): guides like the teacher at w = 4, not under TAG
    one_scale = _evaluation(a1=0.1, a4=0.98, a_tag=0.24, fd4=15.0, fd_tag=184.0)
    assert tag.outcome(one_scale, TEACHER, "4") and not tag.outcome(one_scale, TEACHER, "tag")
    # each criterion at TAG on its own, at its bound (inclusive): faithful 0.74, gain 0.17, FD 40
    assert tag.outcome(_evaluation(0.5, 0.9, 0.74, 12.0, 40.0), TEACHER, "tag")
    assert not tag.outcome(_evaluation(0.5, 0.9, 0.73, 12.0, 20.0), TEACHER, "tag")  # not faithful
    assert not tag.outcome(_evaluation(0.7, 0.9, 0.86, 12.0, 20.0), TEACHER, "tag")  # gain 0.16 < 0.17
    assert not tag.outcome(_evaluation(0.5, 0.9, 0.84, 12.0, 40.1), TEACHER, "tag")  # degraded


def _summary(rel_guided_error: float, rho: float = 1.0) -> dict:
    values = {"rho": rho, "cos_delta": 0.3, "rel_cond_error": 0.2, "rel_uncond_error": 0.2, "nonfinite": 0.0,
              "rel_guided_error": rel_guided_error}
    return {k: {"value": v, "low": v, "high": v, "level": 0.95} for k, v in values.items()}


def test_each_mode_is_judged_by_its_own_default_bar(tag):
    between = _summary(0.25)  # over the probe's bar (0.189), under the trajectories' (0.353)
    assert tag.verdict(between, "probe") == "misguided"
    assert tag.verdict(between, "tf") == "healthy"
    assert tag.verdict(_summary(0.1, rho=0.1), "probe") == "collapsed"


def test_the_agreement_line_counts_each_cell(tag):
    frame = pd.DataFrame({"v": ["healthy", "misguided", "healthy", "misguided"], "o": [True, True, False, False]})
    assert tag._agreement_line(frame, "v", "o", "x") == "| x | 50% | 50% | 1 / 1 | 1 / 1 |"
