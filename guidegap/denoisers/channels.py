"""The one eps-channel helper: learned-sigma models (``out_channels == 2 * in_channels``) predict eps, then sigma.

Guidance and every metric use the eps channels only (docs/design.md §3), as the pipelines do before stepping; the
adapters and the pipeline recorder cut a prediction to them here.
"""

from __future__ import annotations

from typing import Any

import torch

from guidegap.errors import AdapterError

__all__ = ["eps_channels", "eps_part", "checked_eps_channels"]


def eps_channels(model: Any) -> int | None:
    """Channels that hold the prediction proper: ``in_channels`` for a learned-sigma model (or config), else None (all)."""
    config = getattr(model, "config", model) or {}
    try:
        cin, cout = config.get("in_channels"), config.get("out_channels")
    except AttributeError:
        return None
    if isinstance(cin, int) and isinstance(cout, int) and cout == 2 * cin:
        return cin
    return None


def checked_eps_channels(config: Any, name: str) -> int | None:
    """:func:`eps_channels` of an adapted model, refusing an ``out_channels`` that is neither eps nor eps + sigma."""
    cin = int(config["in_channels"])
    cout = int(config.get("out_channels") or cin)
    if cout not in (cin, 2 * cin):
        raise AdapterError(f"{name}: expected out_channels of {cin} (eps) or {2 * cin} (eps + learned sigma), received {cout}.")
    return cin if cout == 2 * cin else None


def eps_part(pred: torch.Tensor, eps: int | None) -> torch.Tensor:
    """``pred`` cut to its first ``eps`` channels when it carries eps and sigma (``2 * eps`` channels), else ``pred``."""
    if eps is not None and pred.ndim > 1 and pred.shape[1] == 2 * eps:
        return pred[:, :eps]
    return pred
