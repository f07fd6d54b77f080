"""Model configurations per tier (docs/design.md §4), sized by a compression target, with exact parameter counts.

=======  ==========================================  ==========================================  =========
tier     teacher                                     student                                     ratio
=======  ==========================================  ==========================================  =========
oracle   exact Gaussian-mixture eps (no weights)     MLPDenoiser 256 x 3 on 1x2x2, 4 classes     n/a
cpu      UNet2DModel (48, 96, 96) x2, 28x28, 3.46M   UNet2DModel (16, 40, 40) x2, 0.57M          6.09x
paper    ADM-style UNet2DModel (128, 256, 256, 256)  UNet2DModel (64, 128, 128, 128) x1, attn    5.88x
         x2, attention at 16x16, 35.75M (CIFAR-10)   at 16x16, 6.08M
=======  ==========================================  ==========================================  =========
"""

from __future__ import annotations

from typing import Any

import torch

from guidegap.denoisers.base import count_parameters
from guidegap.errors import InputError
from guidegap.oracle.tier import ORACLE_MIXTURE, oracle_mixture, oracle_teacher, parse_oracle

# The oracle tier's spec lives in guidegap.oracle.tier; its names stay importable from here.
__all__ = ["TIERS", "ORACLE_MIXTURE", "unet_config", "oracle_mixture", "oracle_teacher", "parse_oracle", "model_spec", "build",
           "count_parameters"]

TIERS = ("oracle", "cpu", "paper")


def unet_config(channels: tuple[int, ...], layers: int, size: int, in_channels: int, num_classes: int,
          groups: int, attention_levels: tuple[int, ...] = (), head_dim: int = 64) -> dict[str, Any]:
    levels = len(channels)
    return {
        "sample_size": size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": list(channels),
        "layers_per_block": layers,
        "down_block_types": ["AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(levels)],
        "up_block_types": ["AttnUpBlock2D" if levels - 1 - i in attention_levels else "UpBlock2D" for i in range(levels)],
        "norm_num_groups": groups,
        "num_class_embeds": num_classes + 1,
        "attention_head_dim": head_dim,
    }


def _dit(hidden_heads: int, layers: int, size: int, in_channels: int, num_classes: int, head_dim: int = 32) -> dict[str, Any]:
    return {
        "num_attention_heads": hidden_heads, "attention_head_dim": head_dim, "in_channels": in_channels,
        "out_channels": in_channels, "num_layers": layers, "sample_size": size, "patch_size": 2,
        "num_embeds_ada_norm": num_classes, "norm_num_groups": 1,
    }


ARCHITECTURES = ("unet", "dit")


def model_spec(tier: str, role: str, num_classes: int | None = None, arch: str = "unet") -> tuple[str, dict[str, Any]]:
    """``(model_class, config)`` of the ``role`` ("teacher" / "student") model of a tier.

    The oracle tier's real teacher is the exact mixture; its "teacher" spec here is a larger MLP, for
    studying teacher training (e.g. TIRT) in seconds.
    """
    if tier not in TIERS or role not in ("teacher", "student") or arch not in ARCHITECTURES:
        raise InputError(f"expected tier in {TIERS}, role teacher/student and arch in {ARCHITECTURES}, received {tier!r}/{role!r}/{arch!r}.")
    if tier == "oracle":
        hidden, depth = (512, 4) if role == "teacher" else (256, 3)
        shape = list(ORACLE_MIXTURE["sample_shape"])
        return "MLPDenoiser", {"sample_shape": shape, "num_classes": num_classes or ORACLE_MIXTURE["num_classes"], "hidden": hidden,
                               "depth": depth, "time_dim": 64, "sigma_data": round(oracle_mixture(0).data_std(), 4)}
    if arch == "dit":
        k = num_classes or 10
        size, channels = (28, 1) if tier == "cpu" else (32, 3)
        heads, layers = {("cpu", "teacher"): (6, 6), ("cpu", "student"): (3, 4), ("paper", "teacher"): (12, 12), ("paper", "student"): (6, 8)}[tier, role]
        return "DiTTransformer2DModel", _dit(heads, layers, size, channels, k)
    if tier == "cpu":
        k = num_classes or 10
        if role == "teacher":
            return "UNet2DModel", unet_config((48, 96, 96), 2, 28, 1, k, 8, head_dim=8)
        return "UNet2DModel", unet_config((16, 40, 40), 2, 28, 1, k, 4, head_dim=8)
    k = num_classes or 10
    if role == "teacher":
        return "UNet2DModel", unet_config((128, 256, 256, 256), 2, 32, 3, k, 32, attention_levels=(1,))
    return "UNet2DModel", unet_config((64, 128, 128, 128), 1, 32, 3, k, 32, attention_levels=(1,))


def build(model_class: str, config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate a model class guidegap can train and store (diffusers UNet2DModel / DiT, or MLPDenoiser)."""
    if model_class == "MLPDenoiser":
        from guidegap.oracle.mlp import MLPDenoiser

        return MLPDenoiser.from_config(config)
    from guidegap.checkpoints.format import build_model

    return build_model(model_class, config, "training config")
