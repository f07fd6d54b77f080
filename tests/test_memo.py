"""Memoized teachers: repeated audits against one teacher pay its passes once and change nothing."""

from __future__ import annotations

import torch

import guidegap
from guidegap.denoisers import Memoized
from guidegap.oracle import GaussianMixture, collapsed_student, shrunk_student
from guidegap.recording.schedulers import default_scheduler


def test_memoized_teacher_gives_identical_audits_and_reuses_its_passes():
    teacher = GaussianMixture.random(seed=0).denoiser(default_scheduler())
    memo = Memoized(teacher)
    students = [collapsed_student(teacher, 4.0), shrunk_student(teacher, 0.5)]
    plain = [guidegap.trace(teacher, s, num_samples=6, num_steps=5) for s in students]
    cached = [guidegap.trace(memo, s, num_samples=6, num_steps=5) for s in students]
    for a, b in zip(plain, cached):
        for name in ("gap_norm", "gap_cos", "cond_error"):
            assert a[name].equals(b[name]), name
    assert memo.misses == 5 and memo.hits == 5  # one teacher batch per step, the second audit reuses all


def test_changed_inputs_are_never_answered_from_memory():
    teacher = GaussianMixture.random(seed=0).denoiser(default_scheduler())
    memo = Memoized(teacher)
    x, t, y = torch.randn(3, *teacher.sample_shape), torch.tensor([500] * 3), torch.tensor([0, 1, 2])
    first = memo(x, t, y)
    assert torch.equal(memo(x.clone(), t, y), first) and memo.hits == 1
    nudged = x.clone()
    nudged[0, 0, 0, 0] += 1e-6
    memo(nudged, t, y)
    memo(x, t + 1, y)
    assert memo.misses == 3
