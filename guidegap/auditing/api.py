"""``guidegap.audit``: record, summarise, judge — one call from models (or paths) to a report."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

from guidegap.auditing.judge import judge, stamp
from guidegap.auditing.report import AuditReport
from guidegap.auditing.verdicts import Thresholds
from guidegap.checkpoints.resolve import resolve_model as resolve
from guidegap.checkpoints.resolve import ResolvedModel, resolve_roles
from guidegap.denoisers import Denoiser, DenoiserLike
from guidegap.errors import InputError
from guidegap.recording.guidance import GuidanceLike
from guidegap.recording.trajectory import trace, trace_teacher_free

__all__ = ["audit", "declared_probe_set", "installed_probe_set", "resolve_model"]

PathLike = str | os.PathLike[str]


TRUST_CHOICES = ("student", "teacher", "both")


def trusts(trust_pickle: bool | str | None, role: str) -> bool:
    """Whether ``trust_pickle`` (False, True = the student only, "student", "teacher", "both") covers ``role``'s file."""
    if trust_pickle is None or trust_pickle is False:
        return False
    if trust_pickle is True:
        return role == "student"
    if trust_pickle not in TRUST_CHOICES:
        raise InputError(f"expected trust_pickle to be one of {TRUST_CHOICES} (or True: the student), received {trust_pickle!r}.")
    return trust_pickle in (role, "both")


def resolve_model(model: DenoiserLike | PathLike, *, factory: str | None = None, trust_pickle: bool = False,
                  schedule: dict | None = None, role: str | None = None) -> tuple[Denoiser, dict | None, str]:
    """Deprecated: :func:`guidegap.checkpoints.resolve_model` gives the denoiser, stored schedule and source (and more)."""
    warnings.warn("guidegap.auditing.api.resolve_model is deprecated; use guidegap.checkpoints.resolve_model, which "
                  "returns a ResolvedModel (.denoiser, .scheduler_config, .source).", DeprecationWarning, stacklevel=2)
    resolved = resolve(model, schedule=schedule, factory=factory, trust_pickle=trust_pickle, role=role)
    return resolved.denoiser, resolved.scheduler_config, resolved.source


def declared_probe_set(teacher: ResolvedModel | None, student: ResolvedModel | None) -> str:
    """The probe set of ``data="auto"``: the training data the teacher declares, else the student's (guidegap
    checkpoints store it; the oracle teacher is its mixture), which :func:`load_probe_set` reads as its held-out split."""
    for model in (teacher, student):
        if model is not None and model.data is not None:
            return model.data
    raise InputError("probe data 'auto' takes the training data a guidegap checkpoint declares, but neither model declares "
                     "any; name the held-out images instead (--probe-data fashion-mnist, cifar10:FOLDER, FILE.npz, ...).")


def installed_probe_set(teacher: ResolvedModel, student: ResolvedModel | None, num_samples: int | None
                        ) -> tuple[tuple[Any, Any] | None, str | None]:
    """``prefer_probe``'s choice: the declared probe set's images (:func:`declared_probe_set`) when they can be read
    here, else ``None`` (trajectories), with the reason for the report (``None`` when neither model declares data)."""
    from guidegap.data.probe_sets import load_probe_set

    why = "docs/design.md §6: its verdict predicts the outcome better than the trajectories'"
    try:
        name = declared_probe_set(teacher, student)
    except InputError:
        return None, None  # nothing declared (a module, a diffusers folder): trajectories, as always
    try:
        data = load_probe_set(name, num_samples or 1000)
    except InputError as error:
        return None, (f"along trajectories: the declared data {name!r} cannot be read here ({str(error).rstrip('.')}); "
                      f"with it, the data probe would judge ({why})")
    _check_probe_set(name, data, num_samples, teacher.denoiser)
    return data, f"data probe on {name!r}, the held-out split of the data the models declare ({why})"


def _check_probe_set(name: str, data: tuple[Any, Any], num_samples: int | None, teacher: Any) -> None:
    """Refuse asking for more probe images than the named set holds, and a set whose images the teacher cannot take
    (naming the set, which the shape check inside the probe cannot)."""
    if num_samples and len(data[0]) < num_samples:
        raise InputError(f"--num-samples {num_samples}, but {name!r} holds {len(data[0])} images; ask for at most that many.")
    expected, received = getattr(teacher, "sample_shape", None), tuple(data[0].shape[1:])
    if expected is not None and tuple(expected) != received:
        hint = (" ('oracle[:SEED]' is the oracle tier's own mixture; for another mixture pass its samples as (images, "
                "labels))" if name.startswith("oracle") else "")
        raise InputError(f"expected probe images of shape {tuple(expected)} (the teacher's), received {received} from the "
                         f"probe set {name!r}; pass held-out images of the teacher's own data{hint}.")


def resolve_probe_data(data: Any, teacher: ResolvedModel, student: ResolvedModel | None, num_samples: int | None
                       ) -> tuple[str | None, Any]:
    """What an audit's or a monitor's ``data`` names, read: ``"auto"`` is the declared held-out split
    (:func:`declared_probe_set`), a string or path a probe set (:func:`load_probe_set`, its first ``num_samples`` images,
    1000 by default) checked against the teacher; anything else (tensors, a dataset) is returned as it is. Returns the
    set's name (``None`` for data passed in) and the data."""
    if isinstance(data, str) and data == "auto":
        data = declared_probe_set(teacher, student)
    if not isinstance(data, (str, os.PathLike)):
        return None, data
    from guidegap.data.probe_sets import load_probe_set

    name = os.fspath(data)
    loaded = load_probe_set(name, num_samples or 1000)
    _check_probe_set(name, loaded, num_samples, teacher.denoiser)
    return name, loaded


def audit(
    student: DenoiserLike | PathLike,
    teacher: DenoiserLike | PathLike | None = None,
    *,
    num_samples: int | None = None,
    num_steps: int = 50,
    guidance_scale: GuidanceLike = 4.0,
    labels: Sequence[int] | int | None = None,
    scheduler: Any = None,
    seed: int = 0,
    chunk_size: int = 64,
    thresholds: Thresholds | None = None,
    n_boot: int = 1000,
    factory: str | None = None,
    trust_pickle: bool | str = False,
    progress: bool = False,
    divergence: bool = True,
    data: Any = None,
    prefer_probe: bool = False,
) -> AuditReport:
    """Audit a student's classifier-free guidance against its teacher (or teacher-free, without one).

    With a teacher: teacher-forced recording of both branches of both models plus the student's own
    free-running path (``divergence``), bootstrap summaries, and the docs/design.md §2 verdict with per-phase
    evidence. Without: the gap relative to eps_c and the samples' response to w; only ``collapsed`` or
    ``non-finite`` can be called, otherwise the verdict is ``inconclusive``.

    ``student``/``teacher`` are models (anything :func:`guidegap.as_denoiser` takes) or paths (diffusers
    folders, guidegap checkpoints, state dicts with ``factory``). The noise schedule is read from the
    checkpoints when stored, else DDPM-linear with T = 1000; ``scheduler`` picks the sampler ("ddim" default).
    ``divergence=False`` skips the student's own free-running path (one student forward per step less).
    ``num_samples``: trajectories (default 64), or with ``data`` images (default 1000, at most the data's).

    ``data``: a data-probe audit instead (DASH's protocol, :func:`guidegap.probe`): both branches of both models on
    these held-out images noised at uniform random t — ``(images, labels)`` scaled like the training data, a dataset
    of pairs, images with their class ids in ``labels``, a probe set's name (``"fashion-mnist"``, ...,
    :func:`guidegap.data.probe_sets.load_probe_set`), or ``"auto"``: the held-out split of the data the teacher (else
    the student) declares it was trained on (:func:`declared_probe_set`). It needs a teacher; ``num_steps``,
    ``scheduler``'s sampler, ``divergence`` and ``progress`` do not apply (the noise schedule is the stored one); the
    phases are thirds of t.

    ``prefer_probe`` (with no ``data``): the data probe on that declared held-out split where it is installed,
    trajectories otherwise (:func:`installed_probe_set`) — the mode whose verdict predicts the outcome better
    (docs/design.md §6). The Dataset's ``mode_reason`` says which ran and why.

    ``trust_pickle`` allows arbitrary unpickling (code from the file runs) per file: ``"student"`` (or ``True``),
    ``"teacher"`` or ``"both"``. ``factory`` imports and runs the named function. Student and teacher that store
    different noise schedules are refused (:func:`guidegap.checkpoints.loading.check_same_schedule`).

    Example:
        >>> import guidegap
        >>> from guidegap.oracle import GaussianMixture, collapsed_student
        >>> from guidegap.recording.schedulers import default_scheduler
        >>> teacher = GaussianMixture.random(seed=0).denoiser(default_scheduler())
        >>> report = guidegap.audit(collapsed_student(teacher, 4.0), teacher, num_samples=8, num_steps=10)
        >>> report.verdict
        'collapsed'
    """
    thresholds = thresholds or Thresholds()
    if data is not None and teacher is None:
        raise InputError("a data-probe audit compares the student with its teacher; pass the teacher (--teacher), or "
                         "drop the probe data for a teacher-free audit.")
    teacher_r, student_r, sampler = resolve_roles(teacher, student, scheduler, factory=factory,
                                                  trust_pickle=(trusts(trust_pickle, "student"), trusts(trust_pickle, "teacher")))
    student_d, student_src = student_r.denoiser, student_r.source
    teacher_d, teacher_src = (teacher_r.denoiser, teacher_r.source) if teacher_r is not None else (None, None)
    options = dict(num_samples=64 if num_samples is None else num_samples, num_steps=num_steps,
                   guidance_scale=guidance_scale, labels=labels, scheduler=sampler, seed=seed, chunk_size=chunk_size,
                   progress=progress)
    mode_reason = None
    if data is None and prefer_probe and teacher_r is not None:
        data, mode_reason = installed_probe_set(teacher_r, student_r, num_samples)
    if data is not None:
        from guidegap.recording.probe import probe, probe_size

        _, data = resolve_probe_data(data, teacher_r, student_r, num_samples)
        ds = probe(teacher_d, student_d, data, labels, guidance_scale=guidance_scale, scheduler=sampler, seed=seed,
                   num_samples=min(1000, probe_size(data)) if num_samples is None else num_samples, chunk_size=chunk_size)
    elif teacher_d is not None:
        ds = trace(teacher_d, student_d, divergence=divergence, **options)
    else:
        ds = trace_teacher_free(student_d, **options)
    if mode_reason:
        ds.attrs["mode_reason"] = mode_reason
    judgement = judge(ds, thresholds, n_boot=n_boot, seed=seed)
    stamp(ds, judgement, thresholds, student=student_src, teacher=teacher_src or "")
    return AuditReport.of(judgement, ds, thresholds)
