"""Guided sampling for evaluation: seeded, chunk-independent, and consistent with the recorder."""

from __future__ import annotations

import pytest
import torch

from guidegap.errors import InputError
from guidegap.oracle import GaussianMixture, collapsed_student
from guidegap.recording.sampler import sample
from guidegap.recording.schedulers import default_scheduler


@pytest.fixture(scope="module")
def teacher():
    return GaussianMixture.random(seed=0).denoiser(default_scheduler())


def test_same_seed_same_images_whatever_the_chunking(teacher):
    labels = torch.arange(10) % teacher.num_classes
    a = sample(teacher, labels, guidance_scale=3.0, num_steps=10, seed=5, chunk_size=3)
    b = sample(teacher, labels, guidance_scale=3.0, num_steps=10, seed=5, chunk_size=10)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(teacher, labels, guidance_scale=3.0, num_steps=10, seed=6))


def test_guidance_moves_the_teacher_but_not_a_collapsed_student(teacher):
    labels = torch.arange(16) % teacher.num_classes
    collapsed = collapsed_student(teacher, 3.0)
    for model, moves in ((teacher, True), (collapsed, False)):
        unguided = sample(model, labels, guidance_scale=1.0, num_steps=10, clip=False)
        guided = sample(model, labels, guidance_scale=4.0, num_steps=10, clip=False)
        assert bool((guided - unguided).abs().max() > 1e-3) == moves


def test_tag_schedule_and_bad_labels(teacher):
    images = sample(teacher, [0, 1], guidance_scale="tag", num_steps=5)
    assert images.shape == (2, *teacher.sample_shape) and images.abs().max() <= 1
    with pytest.raises(InputError, match="labels"):
        sample(teacher, [teacher.num_classes], num_steps=5)


def test_x0_clamp_keeps_every_x0_estimate_in_range_as_dashs_ddim_does():
    """A model whose eps pushes x0 far out of [-1, 1]: unclamped DDIM ends far outside, the clamped one inside."""
    from guidegap.denoisers.module import ModuleDenoiser

    pushing = ModuleDenoiser(lambda x, t, y: torch.full_like(x, -3.0), num_classes=2, sample_shape=(1, 2, 2))
    free = sample(pushing, [0, 1], num_steps=10, clip=False)
    clamped = sample(pushing, [0, 1], num_steps=10, clip=False, clip_x0=True)
    assert free.max() > 5 and clamped.abs().max() <= 1 + 1e-5
    with pytest.raises(InputError, match="clip_sample"):
        from diffusers import EulerDiscreteScheduler

        sample(pushing, [0], num_steps=3, scheduler=EulerDiscreteScheduler(), clip_x0=True)
