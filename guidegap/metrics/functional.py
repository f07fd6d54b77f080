"""Per-sample guidance-gap metrics as pure functions of tensors (docs/design.md §2).

Every function takes ``(B, ...)`` tensors and returns a ``(B,)`` tensor: one value per sample, reduced
over all non-batch dims. Branch order is always (cond, uncond). Notation, for teacher T and student S::

    Delta = pred_cond - pred_uncond                        the guidance gap
    e_c   = student_cond - teacher_cond                    conditional-branch error
    e_u   = student_uncond - teacher_uncond                unconditional-branch error
    RMS(x) = ||x||_2 / sqrt(numel per sample)

Numerics: inputs are flattened once to ``(B, N)``. float32 and float64 inputs are computed in their own
dtype; float16 / bfloat16 (and integer) inputs are cast to float32 once, so half-precision predictions
cannot overflow in the squares and the outputs are float32. Norms use ``torch.linalg.vector_norm``, one
fused pass whose reductions sum pairwise (float32 rounding error grows like log N, not N), and
RMS divides the norm by ``sqrt(N)`` instead of averaging squares. A float32 entry above ~1e19 overflows
the squares and reports ``inf``, far outside any diffusion prediction. NaN/Inf inputs propagate; use
:func:`nonfinite` to flag them. Nothing here synchronises with the device or stores the inputs, so the
functions can run at every sampling step; :func:`pair_metrics` and :func:`model_metrics` compute all
metrics with shared intermediates and give bit-identical values to the single functions.
"""

from __future__ import annotations

import math

import torch

from guidegap.errors import InputError

__all__ = [
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
]

GuidanceScale = float | torch.Tensor


# -- helpers ---------------------------------------------------------------------------------------
def _flat(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    """``(B, ...) -> (B, N)`` without a copy when possible; sub-32-bit and integer dtypes become float32."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of shape (B, ...), received {type(x).__name__}.")
    if x.ndim == 0:
        raise InputError(f"{name}: expected a tensor of shape (B, ...), received a 0-d tensor; add a batch dim.")
    flat = x.flatten(1) if x.ndim > 1 else x.unsqueeze(1)
    if flat.shape[1] == 0:
        raise InputError(f"{name}: expected samples with at least one element, received shape {tuple(x.shape)}.")
    if not flat.is_floating_point() or torch.finfo(flat.dtype).bits < 32:
        flat = flat.float()
    return flat


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n}={s}" for n, s in shapes.items())
        raise InputError(f"expected tensors of one shape (B, ...), received {listed}; pass matching predictions.")


def _norm(flat: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(flat, dim=1)


def _rms(flat: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """RMS per row; pass an already computed ``norm`` of ``flat`` to skip the pass."""
    return (_norm(flat) if norm is None else norm) / math.sqrt(flat.shape[1])


def _nonzero(norm: torch.Tensor) -> torch.Tensor:
    """Replace exact zeros by 1 so that a zero vector's (zero) dot product stays 0 after division."""
    return norm.masked_fill(norm == 0, 1.0)


def _cos(a: torch.Tensor, b: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) per row, 0 where either row is exactly zero (its dot product is then exactly 0)."""
    dot = torch.linalg.vecdot(a, b, dim=1)
    return (dot / _nonzero(norm_a) / _nonzero(norm_b)).clamp(-1.0, 1.0)


def _gap_agreement(d_s: torch.Tensor, d_t: torch.Tensor) -> torch.Tensor:
    """cos(Delta_S, Delta_T), with 1 where both gaps are exactly zero (identical gaps agree) and 0 where
    only one is (no guidance signal cannot point the teacher's way). Both-zero happens for real: late in
    sampling a confident posterior makes eps_c == eps_u bit for bit."""
    norm_s, norm_t = _norm(d_s), _norm(d_t)
    return _cos(d_s, d_t, norm_s, norm_t).masked_fill((norm_s == 0) & (norm_t == 0), 1.0)


def _nonfinite_rows(flat: torch.Tensor) -> torch.Tensor:
    """True where a row holds a NaN or Inf. ``x - x`` is exactly 0 for finite x and NaN for NaN/Inf, so the
    row sum is NaN exactly then (no overflow possible); 2 passes instead of ``isfinite().all()``'s 4."""
    return (flat - flat).sum(dim=1).isnan()


def _weight(guidance_scale: GuidanceScale, like: torch.Tensor) -> float | torch.Tensor:
    """A float, or a tensor shaped to broadcast one value per sample over ``like`` (B, ...)."""
    if not isinstance(guidance_scale, torch.Tensor):
        return float(guidance_scale)
    batch = like.shape[0]
    if guidance_scale.ndim > 1 or guidance_scale.numel() not in (1, batch):
        raise InputError(
            f"guidance_scale: expected a float or a tensor of shape () or ({batch},), "
            f"received shape {tuple(guidance_scale.shape)}; pass one scale per sample."
        )
    w = guidance_scale.to(device=like.device, dtype=like.dtype)
    return w.reshape(-1, *([1] * (like.ndim - 1)))


def _guide(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: GuidanceScale) -> torch.Tensor:
    # torch.lerp(u, c, w) = u + w (c - u) in one fused pass, exact at w = 0 (u) and w = 1 (c).
    return torch.lerp(uncond, cond, _weight(guidance_scale, cond))


# -- single metrics --------------------------------------------------------------------------------
def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square per sample: ``||x|| / sqrt(numel per sample)`` -> ``(B,)``."""
    return _rms(_flat(x, "x"))


def guided(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, guidance_scale: GuidanceScale) -> torch.Tensor:
    """Classifier-free guidance ``u + w (c - u)`` (Ho & Salimans 2022; diffusers convention, w = 1: no guidance).

    ``guidance_scale`` is a float or a ``(B,)`` tensor broadcast over the non-batch dims. Computed with
    ``torch.lerp``, so w = 1 returns ``pred_cond`` exactly; it agrees with diffusers' ``u + w * (c - u)`` up to
    rounding, not bit for bit. Returns a tensor of the inputs' shape and dtype.
    """
    _same_shape(pred_cond=pred_cond, pred_uncond=pred_uncond)
    return _guide(pred_uncond, pred_cond, guidance_scale)


def gap(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
    """The guidance gap ``Delta = c - u`` (docs/design.md §1), same shape as the inputs."""
    _same_shape(pred_cond=pred_cond, pred_uncond=pred_uncond)
    return pred_cond - pred_uncond


def gap_norm(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
    """``RMS(Delta)``: the size of the guidance signal -> ``(B,)``."""
    _same_shape(pred_cond=pred_cond, pred_uncond=pred_uncond)
    return _rms(_flat(pred_cond, "pred_cond") - _flat(pred_uncond, "pred_uncond"))


def gap_cos(
    student_cond: torch.Tensor, student_uncond: torch.Tensor, teacher_cond: torch.Tensor, teacher_uncond: torch.Tensor
) -> torch.Tensor:
    """``cos(Delta_S, Delta_T)`` (DASH's gap cosine) -> ``(B,)``; 1 where both gaps are exactly zero, 0 where one is."""
    _same_shape(student_cond=student_cond, student_uncond=student_uncond, teacher_cond=teacher_cond, teacher_uncond=teacher_uncond)
    d_s = _flat(student_cond, "student_cond") - _flat(student_uncond, "student_uncond")
    d_t = _flat(teacher_cond, "teacher_cond") - _flat(teacher_uncond, "teacher_uncond")
    return _gap_agreement(d_s, d_t)


def gap_mse(
    student_cond: torch.Tensor, student_uncond: torch.Tensor, teacher_cond: torch.Tensor, teacher_uncond: torch.Tensor
) -> torch.Tensor:
    """``mean((Delta_S - Delta_T)^2)`` per sample (DASH's gap MSE) -> ``(B,)``."""
    _same_shape(student_cond=student_cond, student_uncond=student_uncond, teacher_cond=teacher_cond, teacher_uncond=teacher_uncond)
    d_s = _flat(student_cond, "student_cond") - _flat(student_uncond, "student_uncond")
    d_t = _flat(teacher_cond, "teacher_cond") - _flat(teacher_uncond, "teacher_uncond")
    return _rms(d_s - d_t).square()


def cond_error(student_cond: torch.Tensor, teacher_cond: torch.Tensor) -> torch.Tensor:
    """``RMS(e_c)``, ``e_c = student_cond - teacher_cond`` -> ``(B,)``."""
    _same_shape(student_cond=student_cond, teacher_cond=teacher_cond)
    return _rms(_flat(student_cond, "student_cond") - _flat(teacher_cond, "teacher_cond"))


def uncond_error(student_uncond: torch.Tensor, teacher_uncond: torch.Tensor) -> torch.Tensor:
    """``RMS(e_u)``, ``e_u = student_uncond - teacher_uncond`` -> ``(B,)``."""
    _same_shape(student_uncond=student_uncond, teacher_uncond=teacher_uncond)
    return _rms(_flat(student_uncond, "student_uncond") - _flat(teacher_uncond, "teacher_uncond"))


def guided_error(
    student_cond: torch.Tensor,
    student_uncond: torch.Tensor,
    teacher_cond: torch.Tensor,
    teacher_uncond: torch.Tensor,
    guidance_scale: GuidanceScale,
) -> torch.Tensor:
    """``RMS(e_u + w (e_c - e_u))``: the error of the guided prediction the sampler sees -> ``(B,)``.

    At w = 1 it equals :func:`cond_error` exactly.
    """
    _same_shape(student_cond=student_cond, student_uncond=student_uncond, teacher_cond=teacher_cond, teacher_uncond=teacher_uncond)
    e_c = _flat(student_cond, "student_cond") - _flat(teacher_cond, "teacher_cond")
    e_u = _flat(student_uncond, "student_uncond") - _flat(teacher_uncond, "teacher_uncond")
    return _rms(_guide(e_u, e_c, guidance_scale))


def amplification(
    student_cond: torch.Tensor,
    student_uncond: torch.Tensor,
    teacher_cond: torch.Tensor,
    teacher_uncond: torch.Tensor,
    guidance_scale: GuidanceScale,
) -> torch.Tensor:
    """``guided_error(w) / guided_error(1)`` (= guided_error / cond_error): how much guidance multiplies the error.

    IEEE division semantics: NaN where both errors are 0 (0/0 is undefined: the student is exact at this
    step), ``inf`` where only ``cond_error`` is 0. Reduce with a NaN-aware mean.
    """
    _same_shape(student_cond=student_cond, student_uncond=student_uncond, teacher_cond=teacher_cond, teacher_uncond=teacher_uncond)
    e_c = _flat(student_cond, "student_cond") - _flat(teacher_cond, "teacher_cond")
    e_u = _flat(student_uncond, "student_uncond") - _flat(teacher_uncond, "teacher_uncond")
    return _rms(_guide(e_u, e_c, guidance_scale)) / _rms(e_c)


def divergence(x_student: torch.Tensor, x_teacher: torch.Tensor) -> torch.Tensor:
    """``RMS(x_S - x_T)`` between paired trajectory states (same initial noise) -> ``(B,)``."""
    _same_shape(x_student=x_student, x_teacher=x_teacher)
    return _rms(_flat(x_student, "x_student") - _flat(x_teacher, "x_teacher"))


def parallel_fraction(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
    """``||Delta_par|| / ||Delta||`` = ``|cos(Delta, pred_cond)|`` -> ``(B,)``.

    ``Delta_par`` is the projection of the gap on ``pred_cond``, the component that only rescales the
    prediction (APG, Sadat et al. 2024, arXiv 2410.02416). 0 where ``Delta`` is exactly zero, and where
    ``pred_cond`` is exactly zero (the projection on a zero vector is zero).
    """
    _same_shape(pred_cond=pred_cond, pred_uncond=pred_uncond)
    c = _flat(pred_cond, "pred_cond")
    delta = c - _flat(pred_uncond, "pred_uncond")
    return _cos(delta, c, _norm(delta), _norm(c)).abs()


def nonfinite(*tensors: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: True where a sample holds any NaN or Inf in any of the tensors (all ``(B, ...)``)."""
    if not tensors:
        raise InputError("nonfinite: expected at least one tensor of shape (B, ...), received none.")
    flats = [_flat(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    batches = {f.shape[0] for f in flats}
    if len(batches) > 1:
        raise InputError(f"nonfinite: expected tensors with one batch size, received batch sizes {sorted(batches)}.")
    bad = _nonfinite_rows(flats[0])
    for f in flats[1:]:
        bad |= _nonfinite_rows(f)
    return bad


# -- all metrics in one pass -----------------------------------------------------------------------
def pair_metrics(
    student_cond: torch.Tensor,
    student_uncond: torch.Tensor,
    teacher_cond: torch.Tensor,
    teacher_uncond: torch.Tensor,
    guidance_scale: GuidanceScale,
) -> dict[str, torch.Tensor]:
    """All student-vs-teacher metrics of docs/design.md §2 with shared intermediates, each ``(B,)``.

    Keys: ``gap_cos, gap_mse, cond_error, uncond_error, guided_error, amplification``; the values equal
    those of the single functions bit for bit.
    """
    _same_shape(student_cond=student_cond, student_uncond=student_uncond, teacher_cond=teacher_cond, teacher_uncond=teacher_uncond)
    s_c, s_u = _flat(student_cond, "student_cond"), _flat(student_uncond, "student_uncond")
    t_c, t_u = _flat(teacher_cond, "teacher_cond"), _flat(teacher_uncond, "teacher_uncond")
    d_s, d_t = s_c - s_u, t_c - t_u
    e_c, e_u = s_c - t_c, s_u - t_u
    c_err = _rms(e_c)
    g_err = _rms(_guide(e_u, e_c, guidance_scale))
    return {
        "gap_cos": _gap_agreement(d_s, d_t),
        "gap_mse": _rms(d_s - d_t).square(),
        "cond_error": c_err,
        "uncond_error": _rms(e_u),
        "guided_error": g_err,
        "amplification": g_err / c_err,
    }


def model_metrics(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> dict[str, torch.Tensor]:
    """The metrics of one model's two branches with shared intermediates, each ``(B,)``.

    Keys: ``gap_norm, parallel_fraction, cond_norm`` (RMS of ``pred_cond``), ``uncond_norm`` (RMS of
    ``pred_uncond``), ``nonfinite`` (bool); the values equal those of the single functions bit for bit.
    """
    _same_shape(pred_cond=pred_cond, pred_uncond=pred_uncond)
    c, u = _flat(pred_cond, "pred_cond"), _flat(pred_uncond, "pred_uncond")
    delta = c - u
    norm_delta, norm_c = _norm(delta), _norm(c)
    return {
        "gap_norm": _rms(delta, norm_delta),
        "parallel_fraction": _cos(delta, c, norm_delta, norm_c).abs(),
        "cond_norm": _rms(c),
        "uncond_norm": _rms(u),
        "nonfinite": _nonfinite_rows(c) | _nonfinite_rows(u),
    }
