"""Guidance-gap metrics (docs/design.md §2): pure per-sample functions and bootstrap summaries.

:mod:`guidegap.metrics.functional` maps prediction tensors to ``(B,)`` metrics and is reused by the
streaming recorder; :mod:`guidegap.metrics.summary` turns per-sample values (or a recorder Dataset) into
estimates with confidence intervals; :mod:`guidegap.metrics.registry` names every metric and summary once, and
the schema, the recorders, the summaries, the training log and the report derive from it.
"""

from __future__ import annotations

from guidegap.metrics import functional
from guidegap.metrics.functional import (
    amplification,
    cond_error,
    divergence,
    gap,
    gap_cos,
    gap_mse,
    gap_norm,
    guided,
    guided_error,
    model_metrics,
    nonfinite,
    pair_metrics,
    parallel_fraction,
    rms,
    uncond_error,
)
from guidegap.metrics.registry import Metric, Summary, register_metric, remove_metric
from guidegap.metrics.summary import Estimate, bootstrap, mean, ratio_of_means, rho, rho_per_step, summarize

__all__ = [
    "functional",
    # functional
    "rms",
    "guided",
    "gap",
    "gap_norm",
    "gap_cos",
    "gap_mse",
    "cond_error",
    "uncond_error",
    "guided_error",
    "amplification",
    "divergence",
    "parallel_fraction",
    "nonfinite",
    "pair_metrics",
    "model_metrics",
    # registry
    "Metric",
    "Summary",
    "register_metric",
    "remove_metric",
    # summary
    "Estimate",
    "bootstrap",
    "mean",
    "ratio_of_means",
    "rho",
    "rho_per_step",
    "summarize",
]
