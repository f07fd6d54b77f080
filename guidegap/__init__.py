"""guidegap: find and fix guidance collapse in compact diffusion models.

Data flows model → recorder → metrics → Dataset → verdict / plots / report::

    import guidegap
    report = guidegap.audit(student, teacher)     # verdict, summaries with CIs, per-phase evidence
    print(report)
    ds = guidegap.trace(teacher, student, num_samples=64, num_steps=50, guidance_scale=4.0)
    guidegap.summarize(ds)["rho"]                 # E||Delta_S|| / E||Delta_T||, with a bootstrap CI
"""

from __future__ import annotations

from guidegap._lazy import lazy_names
from guidegap._version import __version__

# Public names, imported lazily so that `import guidegap` and the CLI start fast.
_LAZY = {
    "audit": "guidegap.auditing.api",
    "AuditReport": "guidegap.auditing.report",
    "Thresholds": "guidegap.auditing.verdicts",
    "trace": "guidegap.recording.trajectory",
    "probe": "guidegap.recording.probe",
    "as_denoiser": "guidegap.denoisers",
    "summarize": "guidegap.metrics.summary",
    "load_dataset": "guidegap.results.io",
    "save_dataset": "guidegap.results.io",
    "load_model": "guidegap.checkpoints.loading",
    "plot_collapse": "guidegap.auditing.figure",
    "GuidanceMonitor": "guidegap.monitoring",
    "GuidanceCollapseError": "guidegap.monitoring",
    "load_log": "guidegap.results.training_log",
    "record": "guidegap.recording.pipeline",
    "record_pair": "guidegap.pipelines.pair",
    "audit_text": "guidegap.pipelines.text",
    "audit_pipelines": "guidegap.pipelines.text_audit",
}

__all__ = ["__version__", *_LAZY]

# The one place that registers the ds.guidegap accessor: the first use of a name that makes or reads Datasets
# (guidegap.accessor imports xarray, which `import guidegap` must not). `import guidegap.accessor` registers it too.
_DATASETS = frozenset(_LAZY) - {"Thresholds", "as_denoiser", "load_model", "GuidanceCollapseError"}
__getattr__, __dir__ = lazy_names(__name__, _LAZY, also=("__version__",), first=("guidegap.accessor", _DATASETS))
