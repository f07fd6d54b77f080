"""Learning-rate schedules: diffusers' ``get_scheduler`` shapes (warm-up, then decay), with a floor.

``lr(k) = lr_min + (lr - lr_min) * f(k)`` where ``f`` is the multiplier of the diffusers schedule of that name
(``cosine``: ``0.5 (1 + cos(pi p))`` after a linear warm-up, ``p`` the decayed fraction). With ``lr_min = 1e-6``
and no warm-up, ``cosine`` is the ``CosineAnnealingLR(eta_min=1e-6)`` that DASH anneals with. Past the decay
steps ``f`` stays at its final value (0 for ``cosine`` and ``linear``), so the lr stays at the floor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["make_lr_scheduler"]


def _floored(multiplier: Callable[[int], float], floor: float, decay_steps: int) -> Callable[[int], float]:
    """``floor + (1 - floor) f(min(k, decay_steps))``: diffusers' cosine would rise again past its end."""
    return lambda step: floor + (1.0 - floor) * multiplier(min(step, decay_steps))


def make_lr_scheduler(optimizer: torch.optim.Optimizer, name: str, *, warmup_steps: int, decay_steps: int,
                      lr_min: float, start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping once per optimizer step, positioned at ``start_step`` (a resumed run).

    Each param group floors at ``lr_min`` scaled to its own lr. The lr of step ``k`` is always computed as
    ``base * multiplier(k)``, as ``LambdaLR.step`` does, so a resumed run sees the same floats.
    """
    from diffusers.optimization import get_scheduler

    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=decay_steps)
    scheduler.lr_lambdas = [_floored(multiplier, lr_min / base if base > 0 else 0.0, decay_steps)
                            for multiplier, base in zip(scheduler.lr_lambdas, scheduler.base_lrs)]
    scheduler.last_epoch = int(start_step)
    for group, base, multiplier in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * multiplier(scheduler.last_epoch)  # this step's lr, floor included
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return scheduler
