"""Guidance-distilled students (w is a model input: LCM's ``time_cond_proj_dim``, Flux-dev's ``guidance_embeds``).

Such a model has no unconditional branch, so a guidance gap cannot be audited and must never be called
``collapsed``. What can be measured, along the model's own trajectory at the audited ``w`` (guided by nothing
but its embedding, i.e. the recorder's ``w = 1`` on a view whose branches are):

* response to w: ``cond = eps(x, t, prompt; w)``, ``uncond = eps(x, t, prompt; w = 1)``, so the recorder's
  ``gap_norm`` is ``RMS(eps(w) - eps(1))`` and ``rel_gap`` the response relative to ``RMS(eps(w))``. For a CFG
  teacher the same quantity is ``(w - 1) RMS(Delta_T)`` (Meng et al. 2023, arXiv 2210.03142, distil exactly this);
* true-CFG probe (on request): ``RMS(eps(prompt; w) - eps(null prompt; w))`` (``probe_gap_norm``): whether a
  negative / empty prompt changes the prediction at all. Such a branch was likely never trained: a probe only.
"""

from __future__ import annotations

import json
from typing import Any

import xarray as xr

from guidegap.auditing.judge import judge, stamp
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import Thresholds
from guidegap.denoisers.text_unet import TextEmbeddingDenoiser
from guidegap.denoisers.views import GuidanceResponseView
from guidegap.recording.trajectory import trace
from guidegap.results.schema import VARIABLES

__all__ = ["GuidanceResponseView", "audit_guidance_distilled", "distilled_report"]

_RESPONSE_NAMES = {
    "gap_norm": "response to the guidance embedding RMS(eps(w) - eps(w=1))",
    "cond_norm": "RMS of the prediction at w",
    "uncond_norm": "RMS of the prediction at w = 1",
    "parallel_fraction": "fraction of the response to w parallel to eps(w)",
}


def distilled_report(ds: xr.Dataset, thresholds: Thresholds, n_boot: int = 1000) -> AuditReport:
    """The report of a guidance-distilled audit Dataset (also rebuilt from a stored one)."""
    seed = int(json.loads(ds.attrs["config"]).get("seed", 0))
    return AuditReport.of(judge(ds, thresholds, n_boot=n_boot, seed=seed), ds, thresholds)


def audit_guidance_distilled(model: TextEmbeddingDenoiser, at_one: TextEmbeddingDenoiser, reason: str, *,
                             guidance_scale: float, true_cfg: bool = False, thresholds: Thresholds | None = None,
                             n_boot: int = 1000, **trace_options: Any) -> AuditReport:
    """Record a guidance-embedded model's response to w (and, with ``true_cfg``, the probe) along its own path.

    ``model`` carries the embedding of ``guidance_scale``, ``at_one`` that of ``w = 1``; ``reason`` says why the model
    is guidance-distilled (:func:`guidegap.pipelines.conditioning.guidance_embedding_reason`). ``trace_options`` go
    to :func:`guidegap.trace` (num_samples, num_steps, scheduler, seed, chunk_size, progress).
    """
    thresholds = thresholds or Thresholds()
    ds = trace(None, GuidanceResponseView(model, at_one), guidance_scale=1.0, **trace_options)
    for name, long_name in _RESPONSE_NAMES.items():
        ds[name].attrs["long_name"] = long_name
    if true_cfg:  # the same path (guided only by the embedding); branches: prompt vs the null condition
        probe = trace(None, model, guidance_scale=1.0, **trace_options)
        spec = VARIABLES["probe_gap_norm"]
        ds["probe_gap_norm"] = probe["gap_norm"].assign_attrs(long_name=spec.long_name, units=spec.units)
    ds.attrs.update(guidance_distilled=reason, audited_guidance_scale=float(guidance_scale),
                    true_cfg_probe="on (null branch likely never trained: a probe, not a calibration)" if true_cfg else "off",
                    thresholds=json.dumps(thresholds.to_dict()))
    judgement = judge(ds, thresholds, n_boot=n_boot, seed=int(json.loads(ds.attrs["config"]).get("seed", 0)))
    stamp(ds, judgement, thresholds)
    return AuditReport.of(judgement, ds, thresholds)
