"""Shared fixtures: tiny diffusers models, an oracle teacher and a scheduler, all seeded."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from guidegap.auditing.verdicts import Thresholds
from guidegap.oracle import GaussianMixture
from guidegap.recording.schedulers import default_scheduler

# docs/design.md §2's rules as first written (rho band, gap cosine, branch errors; the misguided rule off): tests of
# those rules' mechanics name them, so that they hold whatever the evidence-based defaults are (§6).
DESIGN = Thresholds.named("design")


def tiny_unet(num_classes: int = 4, seed: int = 0, out_channels: int = 1, **overrides):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    config = dict(
        sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=num_classes + 1,
    )
    config.update(overrides)
    return UNet2DModel(**config).eval()


def tiny_dit(num_classes: int = 4, seed: int = 0, out_channels: int = 2):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    model = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=1, out_channels=out_channels, num_layers=2,
        sample_size=8, patch_size=2, num_embeds_ada_norm=num_classes, norm_num_groups=1,
    )
    # ada_norm_zero starts with zeroed output projections; give them weights so branches differ.
    with torch.no_grad():
        for param in model.parameters():
            if param.abs().sum() == 0:
                param.normal_(0, 0.02)
    return model.eval()


@pytest.fixture
def scheduler():
    return default_scheduler()


@pytest.fixture
def oracle(scheduler):
    return GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(scheduler)


# One torch thread for the whole suite: on 2 busy cores, two OpenMP threads made tiny-UNet audits ~25x slower.
torch.set_num_threads(1)


ANALYSES = Path(__file__).resolve().parents[1] / "analyses"


@contextlib.contextmanager
def analysis_script(name: str):
    """An ``analyses/`` script imported as a module (under a test-only name), with ``analyses/`` on ``sys.path`` for
    the sibling modules it imports; both undone afterwards."""
    sys.path.insert(0, str(ANALYSES))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(ANALYSES))
