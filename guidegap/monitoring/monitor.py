"""A guidance regression check for any PyTorch training loop.

::

    monitor = GuidanceMonitor(teacher, every=500, store="runs/x/guidance.zarr")
    for step in range(steps):
        ...                                   # optimizer.step()
        monitor.maybe_check(step + 1, ema)    # every 500 steps: light seeded audit, appended to the log

Each check is a small :func:`guidegap.audit` of the student against the teacher with the same seed (same
noise, labels and sampler every time, so checks are comparable), appended to a zarr log along
``training_step`` (:mod:`guidegap.monitoring.log`). A verdict in ``raise_on`` raises
:class:`GuidanceCollapseError` after the entry is written. Under accelerate / ``torch.distributed`` only the
main process checks and writes; other ranks return ``None`` at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guidegap._deprecation import moved_names, renamed_keywords
from guidegap.errors import GuidegapError, InputError

if TYPE_CHECKING:
    import xarray as xr

    from guidegap.auditing.report import AuditReport
    from guidegap.auditing.verdicts import Thresholds
    from guidegap.checkpoints.resolve import ResolvedModel
    from guidegap.denoisers import Denoiser

__all__ = ["GuidanceMonitor", "GuidanceCollapseError", "is_main_process", "describe_failure", "callback_values", "DEFAULT_NUM_SAMPLES",
           "DEFAULT_SAMPLING_STEPS", "DEFAULT_PROBE_SAMPLES"]
# DEFAULT_NUM_STEPS: the name of DEFAULT_SAMPLING_STEPS before training steps and sampling steps met in one name.
__getattr__ = moved_names(__name__, {"DEFAULT_NUM_STEPS": "guidegap.monitoring.monitor:DEFAULT_SAMPLING_STEPS"})


class GuidanceCollapseError(GuidegapError):
    """A guidance check returned a verdict the monitor was told to stop on (default: ``collapsed``).

    ``report`` is the full :class:`~guidegap.AuditReport`, ``step`` the training step, ``verdict`` its verdict.
    A :class:`~guidegap.errors.GuidegapError`, so the CLI prints it as one line and ``except GuidegapError``
    catches it.
    """

    def __init__(self, report: "AuditReport", step: int | None = None) -> None:
        self.report, self.step, self.verdict = report, step, report.verdict
        where = f" at training step {step}" if step is not None else ""
        super().__init__(f"guidance check{where}: {describe_failure(report)} Suggested fix: {report.suggestion}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes despite the custom signature
        return (type(self), (self.report, self.step))


def describe_failure(report: "AuditReport") -> str:
    """The verdict line and the key numbers (with CIs) of a report, not the full report."""
    from guidegap.metrics.registry import SUMMARIES

    th = report.thresholds
    labels = (("rho", "rho"), ("cos_delta", "gap cosine"), ("rel_cond_error", "cond error / teacher"),
              ("rel_uncond_error", "uncond error / teacher"), ("rel_guided_error", "guided error / teacher"))
    bars = {key: SUMMARIES[("pair", key)].healthy(th) for key, _ in labels}
    rows = [(key, label, "rule off" if bars[key] in ("off", "") else f"healthy {bars[key]}") for key, label in labels]
    rows.append(("rel_gap", "gap / eps_c", f"collapsed < {th.min_rel_gap}"))
    numbers = "; ".join(f"{label} {report.summary[key]} ({healthy})" for key, label, healthy in rows if key in report.summary)
    return f"VERDICT: {report.verdict.upper()} — {report.finding.reason}. {numbers}."


def callback_values(report: "AuditReport") -> dict[str, Any]:
    """What the trainer logs per check (``audit_verdict``, ``audit_rho``, ``audit_cos``, ...)."""
    values = {"audit_verdict": report.verdict}
    for key, name in (("rho", "audit_rho"), ("cos_delta", "audit_cos"), ("gap_mse", "audit_gap_mse"),
                      ("rel_cond_error", "audit_rel_cond_error"), ("rel_uncond_error", "audit_rel_uncond_error"),
                      ("rel_guided_error", "audit_rel_guided_error")):
        if key in report.summary:
            values[name] = float(report.summary[key].value)
    return values


def is_main_process() -> bool:
    """True unless an accelerate state or a ``torch.distributed`` group says this is not rank 0.

    Looks at accelerate only when it is already imported and a ``PartialState`` exists (creating one here would
    initialise a distributed environment as a side effect).
    """
    state_module = sys.modules.get("accelerate.state")
    partial_state = getattr(state_module, "PartialState", None)
    if partial_state is not None and getattr(partial_state, "_shared_state", None):
        return bool(partial_state().is_main_process)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


def _raise_on(spec: str | Iterable[str] | None) -> frozenset[str]:
    from guidegap.auditing.report import parse_fail_on

    if spec is None or (not isinstance(spec, str) and not list(spec)):
        return frozenset()
    return frozenset(parse_fail_on(spec))


def _unwrap(student: Any) -> Any:
    """The module inside DDP / accelerate wrappers: a forward of the wrapper on one rank would wait for the others."""
    while hasattr(student, "module") and type(student).__name__ in ("DistributedDataParallel", "DataParallel"):
        student = student.module
    return student


# Measured in analyses/bench_detector.py; see GuidanceMonitor's docstring.
DEFAULT_NUM_SAMPLES = 16
DEFAULT_SAMPLING_STEPS = 50
# A data-probe check's images: the CLI's default, whose verdict is the 10,000-image probe's for 98% of the detector
# validation's (model, seed) pairs (analyses/results/bench_detector_population_probe.md), at about the cost of the
# 16 x 50 trajectories: 25.5 s against 24.1 s a check on the cpu tier (analyses/results/bench_monitor.md).
DEFAULT_PROBE_SAMPLES = 1000


class GuidanceMonitor:
    """Light, seeded audits of a student during training, logged to one zarr Dataset along ``training_step``.

    Args:
        teacher: a model, a checkpoint / diffusers folder, or ``"oracle[:SEED]"`` (oracle tier).
        every: check when ``step % every == 0`` in :meth:`maybe_check` / ``__call__`` (``None``: every call).
        store: the zarr log folder (e.g. ``"runs/x/guidance.zarr"``); ``None`` keeps the log in memory.
        data: a data-probe check instead of trajectories (DASH's protocol, as ``guidegap.audit(data=...)``): held-out
            images noised at uniform t — ``(images, labels)``, a probe set's name (``"fashion-mnist"``, ...) or
            ``"auto"``, the held-out split of the data the teacher's guidegap checkpoint declares. Read once, here. On
            the detector validation its verdict predicted the outcome for 91% of held-out students, the trajectories'
            for 77% (docs/design.md §6). ``num_samples`` images (default :data:`DEFAULT_PROBE_SAMPLES`); the log's
            curves are over tenths of the training timesteps instead of sampling steps.
        num_samples, sampling_steps, guidance_scale, seed, labels: the audit (same every check; ``sampling_steps`` is
            the audit's ``num_steps``, named apart from the training steps of ``every``). The defaults, 16 samples x
            50 steps, are the cheapest setting of ``analyses/bench_detector.py --population`` that kept the default
            (evidence) verdict of the detector validation's 76 models: it agreed with their 64 x 50 verdict in 96% of
            audits (guided error within 7% median, 21% at most), 16 x 25 in 86% (10%, 52%: the guided error depends on
            the step count, so 25 steps flip models near the bar fitted at 50), 32 x 50 in 94%. ``None``: the log's
            own size where ``store`` holds one (a run resumed after these defaults changed continues), else these.
        raise_on: verdicts that raise :class:`GuidanceCollapseError` (``None``: never raise).
        scheduler: a diffusers scheduler or a name; default DDIM on the teacher's stored schedule or DDPM-linear.
        thresholds: verdict thresholds (:class:`guidegap.Thresholds`), stored in the log; ``None``: those of the log
            at ``store`` where one exists (a run resumed after guidegap's defaults changed judges as it began), else
            the defaults.
        n_boot: bootstrap resamples of each summary.

    Also a trainer callback: ``train(config, callbacks=[monitor])`` calls ``monitor(step, ema_student)``, and
    :meth:`rewind` with the step it starts from. The log's ``training_step`` only grows: a check at the last step
    replaces it, one before it is refused until :meth:`rewind` drops what a resumed run repeats. Continuing a log
    with other settings (teacher, samples, steps, w, seed, scheduler, labels, thresholds, bootstrap) is refused,
    naming them.
    """

    @renamed_keywords(num_steps="sampling_steps")
    def __init__(
        self,
        teacher: Any,
        *,
        every: int | None = None,
        store: str | os.PathLike[str] | None = None,
        num_samples: int | None = None,
        sampling_steps: int | None = None,
        guidance_scale: float = 4.0,
        seed: int = 0,
        raise_on: str | Iterable[str] | None = ("collapsed",),
        scheduler: Any = None,
        thresholds: "Thresholds | None" = None,
        labels: Any = None,
        n_boot: int = 200,
        data: Any = None,
    ) -> None:
        from guidegap.auditing.verdicts import Thresholds
        from guidegap.monitoring.log import log_audit_size, log_thresholds

        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise InputError(f"expected every to be an integer >= 1 (or None: every call), received {every!r}.")
        if teacher is None:
            raise InputError("GuidanceMonitor needs a teacher to compare the student with; pass a model, a path or 'oracle'.")
        self.every = every
        self.store = Path(store) if store is not None else None
        self.raise_on = _raise_on(raise_on)
        stored = log_thresholds(self.store) if thresholds is None and self.store is not None else None
        self.thresholds = thresholds or stored or Thresholds()  # None: the log's own where it exists
        resolved, self.scheduler = _resolve_teacher(teacher, scheduler)
        self.teacher, self.teacher_source = resolved.denoiser, resolved.source
        stored_size = log_audit_size(self.store) if self.store is not None else {}  # None: the log's own, else the defaults
        if data is not None:
            if sampling_steps is not None or labels is not None:
                raise InputError("a data-probe check (data=...) has no sampling steps and takes its labels from the data; "
                                 "drop sampling_steps / labels, or drop data for trajectory checks.")
            num_samples = num_samples if num_samples is not None else stored_size.get("num_samples", DEFAULT_PROBE_SAMPLES)
            images_and_labels, self.probe_source = _probe_images(data, resolved, num_samples)
            self.options = {"num_samples": num_samples, "guidance_scale": guidance_scale, "seed": seed, "n_boot": n_boot,
                            "data": images_and_labels}
        else:
            self.probe_source = None  # trajectory checks
            num_samples = num_samples if num_samples is not None else stored_size.get("num_samples", DEFAULT_NUM_SAMPLES)
            sampling_steps = sampling_steps if sampling_steps is not None else stored_size.get("num_steps", DEFAULT_SAMPLING_STEPS)
            self.options = {"num_samples": num_samples, "num_steps": sampling_steps, "guidance_scale": guidance_scale,
                            "seed": seed, "labels": labels, "n_boot": n_boot}
        self.last_report: "AuditReport | None" = None
        self._entries: list["xr.Dataset"] = []

    # -- checking ---------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        return self.every is None or int(step) % self.every == 0

    def maybe_check(self, step: int, student: Any) -> "AuditReport | None":
        """:meth:`check` when ``step`` is a multiple of ``every``; otherwise (or off the main process) ``None``."""
        return self.check(step, student) if self.due(step) else None

    def check(self, step: int, student: Any) -> "AuditReport | None":
        """Audit ``student`` now, append the result at ``step``, raise on a ``raise_on`` verdict; ``None`` off rank 0."""
        from guidegap.auditing.api import audit
        from guidegap.results.training_log import log_entry

        if not is_main_process():
            return None
        started = time.perf_counter()
        report = audit(_unwrap(student), self.teacher, scheduler=self.scheduler, thresholds=self.thresholds, **self.options)
        entry = log_entry(report, int(step), time.perf_counter() - started, self._attrs(report))
        self._append(entry)
        self.last_report = report
        if report.verdict in self.raise_on:
            raise GuidanceCollapseError(report, int(step))
        return report

    def __call__(self, step: int, student: "Denoiser | Any") -> dict[str, Any] | None:
        """The trainer's callback signature: values to log, or ``None`` when no check ran."""
        report = self.maybe_check(step, student)
        return None if report is None else callback_values(report)

    def rewind(self, step: int) -> None:
        """Drop the checks after training step ``step``: a run resumed from its checkpoint at ``step`` repeats them
        (guidegap's ``train()`` calls this on resuming). Without it, a check before the log's last one is refused."""
        from guidegap.results.training_log import TRAINING_STEP

        if not is_main_process():
            return
        if self.store is not None:
            from guidegap.monitoring.log import rewind_log

            rewind_log(self.store, int(step))
        self._entries = [e for e in self._entries if int(e[TRAINING_STEP].values[0]) <= int(step)]

    # -- the log ----------------------------------------------------------------------------------
    @property
    def log(self) -> "xr.Dataset":
        """The whole run's log so far (read from the store, or assembled in memory without one)."""
        import xarray as xr

        from guidegap.results.training_log import TRAINING_STEP, load_log

        if self.store is not None:
            return load_log(self.store)
        if not self._entries:
            raise InputError("no check has run yet; call monitor.check(step, student) first.")
        return xr.concat(self._entries, dim=TRAINING_STEP, data_vars="minimal", coords="minimal",
                         compat="override", join="override", combine_attrs="override")

    def _append(self, entry: "xr.Dataset") -> None:
        from guidegap.monitoring.log import append_entry
        from guidegap.results.training_log import TRAINING_STEP

        if self.store is not None:
            append_entry(self.store, entry)
        else:
            step = int(entry[TRAINING_STEP].values[0])
            last = int(self._entries[-1][TRAINING_STEP].values[0]) if self._entries else None
            if last is not None and step < last:
                raise InputError(f"training step {step} comes before the last check (step {last}); a run resumed from an "
                                 "earlier checkpoint calls monitor.rewind(step) first (guidegap's train() does).")
            self._entries = [e for e in self._entries if int(e[TRAINING_STEP].values[0]) < step] + [entry]

    def _attrs(self, report: "AuditReport") -> dict[str, str]:
        config = json.loads(report.dataset.attrs["config"])
        config.pop("models", None)  # the student's description changes with nothing that matters here
        # diffusers' private bookkeeping (a set, listed in hash order) would make equal settings compare unequal
        config["scheduler"] = {k: v for k, v in config.get("scheduler", {}).items() if not k.startswith("_")}
        config["teacher"] = self.teacher_source
        config["teacher_model"] = self.teacher.describe()
        config["n_boot"] = self.options["n_boot"]
        config["thresholds"] = self.thresholds.to_dict()  # the stored verdicts are these thresholds'
        if self.probe_source is not None:  # the images (by digest) and their labels define the comparison
            config["mode"], config["data"] = "data-probe", self.probe_source
        else:
            config["labels"] = [int(k) for k in report.dataset["label"].values]
        return {"config": json.dumps(config, sort_keys=True), "thresholds": json.dumps(self.thresholds.to_dict()),
                "teacher": self.teacher_source, "title": "guidegap training log (GuidanceMonitor)"}

    def __repr__(self) -> str:
        o = self.options
        size = (f"data={self.probe_source['source']!r}" if self.probe_source else f"sampling_steps={o['num_steps']}")
        return (f"GuidanceMonitor(teacher={self.teacher_source!r}, every={self.every}, store={str(self.store) if self.store else None!r}, "
                f"num_samples={o['num_samples']}, {size}, guidance_scale={o['guidance_scale']}, seed={o['seed']}, "
                f"raise_on={sorted(self.raise_on)})")


def _resolve_teacher(teacher: Any, scheduler: Any) -> tuple["ResolvedModel", Any]:
    """The resolved teacher (its denoiser, a description, the data it declares) and the sampler (an instance, used as
    is; a name on the teacher's schedule)."""
    from guidegap.checkpoints.resolve import resolve_roles

    resolved, _, sampler = resolve_roles(teacher, None, scheduler)  # the oracle teacher moves to the sampler's schedule
    return resolved, sampler


def _probe_images(data: Any, teacher: "ResolvedModel", num_samples: int) -> tuple[tuple[Any, Any], dict[str, str]]:
    """The probe's first ``num_samples`` images and labels, read once, and what the log records of them: where they came
    from and a digest of their bytes (a log is continued only on the same images)."""
    import hashlib

    from guidegap.auditing.api import resolve_probe_data
    from guidegap.recording.probe import probe_size, probe_tensors

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise InputError(f"expected num_samples to be a positive integer (probe images), received {num_samples!r}.")
    name, data = resolve_probe_data(data, teacher, None, num_samples)  # as guidegap.audit(data=...) reads it
    source = name or "in-memory data"
    available = probe_size(data)
    if available < num_samples:
        raise InputError(f"expected at least num_samples = {num_samples} probe images, received {available} ({source}); "
                         "pass a smaller num_samples or more images.")
    images, labels = (part[:num_samples] for part in probe_tensors(data, None, num_samples))  # as guidegap.probe reads them
    digest = hashlib.blake2b(digest_size=16)
    for part in (images, labels):
        digest.update(part.detach().contiguous().cpu().numpy().tobytes())
    return (images, labels), {"source": source, "digest": digest.hexdigest()}
