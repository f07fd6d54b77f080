"""Constructed students whose guidance-gap verdicts are known, built from any teacher denoiser.

With teacher branches ``eps_c``, ``eps_u`` and gap ``Delta = eps_c - eps_u``:

| student | cond branch | uncond branch | student gap | verdict (defaults; ``design`` rules) |
|---|---|---|---|---|
| :func:`collapsed_student` | ``eps_u + w Delta`` | ``eps_u + w Delta`` | 0 | collapsed (rho = 0) |
| :func:`shrunk_student` | ``eps_u + f Delta`` | ``eps_u`` | ``f Delta`` | collapsed for ``f`` < 0.3, misguided far from 1; miscalibrated outside [0.8, 1.25] |
| :func:`shifted_student` | ``eps_c + offset`` | ``eps_u + offset`` | ``Delta`` | misguided for a large ``offset``; drifted |
| :func:`noisy_student` | ``eps_c + s_c g_c(x)`` | ``eps_u + s_u g_u(x)`` | ``Delta + s_c g_c - s_u g_u`` | depends on ``s`` |

``noisy_student`` is what a small distilled student looks like: each branch off by an error field of its own, a
fixed smooth function of the state (``g(x) = sin(A x + b)``, RMS about 1/sqrt(2), drawn from a seed), so guidance
amplifies the part of the two errors that differs.
"""

from __future__ import annotations

import math

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.errors import AdapterError, InputError

__all__ = [
    "GuidedOutputStudent",
    "ShiftedStudent",
    "ShrunkGapStudent",
    "NoisyBranchStudent",
    "collapsed_student",
    "noisy_student",
    "shifted_student",
    "shrunk_student",
]


def _finite(where: str, name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"{where}: expected a finite {name}, received {value!r}; pass a real number.")
    return number


def _name(teacher: object) -> str:
    return teacher.name if isinstance(teacher, Denoiser) else type(teacher).__name__


class _TeacherWrapper(Denoiser):
    """A denoiser defined from a teacher's branches; shares its classes, null label, shape and module."""

    def __init__(self, teacher: Denoiser, name: str) -> None:
        if not isinstance(teacher, Denoiser):
            raise InputError(
                f"{name}: expected a guidegap Denoiser to wrap, received {type(teacher).__name__}; "
                "wrap the model with a guidegap adapter first."
            )
        super().__init__(
            num_classes=teacher.num_classes,
            null_label=teacher.null_label,
            sample_shape=teacher.sample_shape,
            module=teacher.module,
            name=name,
        )
        self.teacher = teacher

    def _null_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """Return the null-row mask; raise for a label that is neither a real class nor the null label."""
        is_null = labels == self.null_label
        bad = ~is_null & ((labels < 0) | (labels >= self.num_classes))
        if bool(bad.any()):
            raise AdapterError(
                f"{self.name}: expected labels in 0..{self.num_classes - 1} or the null label {self.null_label}, "
                f"received {labels[bad][0].item()}; pass real class ids or null_label."
            )
        return is_null


def _cfg_partners(x: torch.Tensor, t: torch.Tensor, is_null: torch.Tensor) -> torch.Tensor | None:
    """Index of each row's conditional partner when the batch is two CFG halves (either order), else ``None``.

    A CFG batch repeats ``x`` and ``t`` in both halves and puts every null label in one of them (DiT and
    :meth:`Denoiser.branches`: cond first; Stable Diffusion: uncond first).
    """
    rows = torch.arange(x.shape[0], device=x.device)
    if not bool(is_null.any()):
        return rows
    if x.shape[0] % 2:
        return None
    half = x.shape[0] // 2
    first, second = slice(0, half), slice(half, None)
    for null_half, cond_half in ((second, first), (first, second)):
        if (
            bool(is_null[null_half].all())
            and not bool(is_null[cond_half].any())
            and torch.equal(x[null_half], x[cond_half])
            and torch.equal(t[null_half], t[cond_half])
        ):
            rows[null_half] = rows[cond_half]
            return rows
    return None


class GuidedOutputStudent(_TeacherWrapper):
    """Returns the teacher's guided output ``eps_u + w (eps_c - eps_u)`` for both branches: gap exactly 0.

    A null-label row has no class of its own, so it copies the guided output of its conditional partner; it
    must therefore arrive in the same batch as that partner (two CFG halves with equal ``x`` and ``t``, as
    :meth:`Denoiser.branches` and the DiT/Stable Diffusion pipelines send).
    """

    def __init__(self, teacher: Denoiser, guidance_scale: float) -> None:
        self.guidance_scale = _finite("collapsed_student", "guidance_scale", guidance_scale)
        super().__init__(teacher, f"collapsed({_name(teacher)}, w={self.guidance_scale:g})")

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Guided teacher output per conditional row; null rows copy their partner's."""
        is_null = self._null_rows(labels)
        partners = _cfg_partners(x, t, is_null)
        if partners is None:
            raise AdapterError(
                f"{self.name}: expected each null-label row's conditional partner in the same batch, "
                f"received {int(is_null.sum())} null rows in a batch of {len(labels)} without that layout; "
                "send cond and uncond as two halves with equal x and t (use branches())."
            )
        real = ~is_null
        pred_cond, pred_uncond = self.teacher.branches(x[real], t[real], labels[real])
        out = pred_cond.new_empty((x.shape[0], *pred_cond.shape[1:]))
        out[real] = pred_uncond + self.guidance_scale * (pred_cond - pred_uncond)
        return out[partners]


class ShrunkGapStudent(_TeacherWrapper):
    """Cond branch ``eps_u + factor (eps_c - eps_u)``, uncond branch ``eps_u``: the teacher's gap times ``factor``."""

    def __init__(self, teacher: Denoiser, factor: float) -> None:
        self.factor = _finite("shrunk_student", "factor", factor)
        super().__init__(teacher, f"shrunk({_name(teacher)}, factor={self.factor:g})")

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Shrunk-gap cond rows, teacher uncond rows."""
        is_null = self._null_rows(labels)
        out = self.teacher(x, t, labels)  # already eps_u on the null rows
        real = ~is_null
        if bool(real.any()):
            pred_cond, pred_uncond = self.teacher.branches(x[real], t[real], labels[real])
            out[real] = (pred_uncond + self.factor * (pred_cond - pred_uncond)).to(out.dtype)
        return out


class ShiftedStudent(_TeacherWrapper):
    """Teacher plus the same constant ``offset`` on both branches: gap unchanged, both branches drift."""

    def __init__(self, teacher: Denoiser, offset: float) -> None:
        self.offset = _finite("shifted_student", "offset", offset)
        super().__init__(teacher, f"shifted({_name(teacher)}, offset={self.offset:g})")

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``teacher(x, t, labels) + offset``."""
        self._null_rows(labels)
        return self.teacher(x, t, labels) + self.offset


_MAX_FIELD_DIM = 4096  # two 4096 x 4096 float32 fields: 128 MiB


class NoisyBranchStudent(_TeacherWrapper):
    """Teacher plus a fixed smooth error field per branch, ``s_c sin(A_c x + b_c)`` and ``s_u sin(A_u x + b_u)``."""

    def __init__(self, teacher: Denoiser, cond_scale: float, uncond_scale: float, seed: int = 0) -> None:
        self.cond_scale = _finite("noisy_student", "cond_scale", cond_scale)
        self.uncond_scale = _finite("noisy_student", "uncond_scale", uncond_scale)
        super().__init__(teacher, f"noisy({_name(teacher)}, cond={self.cond_scale:g}, uncond={self.uncond_scale:g}, seed={seed})")
        if self.sample_shape is None:
            raise InputError("noisy_student: expected a teacher that declares its sample shape (the error field's size).")
        dim = math.prod(self.sample_shape)
        if dim > _MAX_FIELD_DIM:  # the fields are dim x dim matrices
            raise InputError(f"noisy_student: expected samples of at most {_MAX_FIELD_DIM} values (oracle-sized), received "
                             f"{self.sample_shape}; it is a constructed student for small teachers.")
        generator = torch.Generator().manual_seed(int(seed))
        # entries of A ~ N(0, 9 / dim): the field varies on the data's scale; cond and uncond draw their own
        self._fields = [(torch.randn(dim, dim, generator=generator) * 3.0 / math.sqrt(dim),
                         torch.rand(dim, generator=generator) * 2 * math.pi) for _ in range(2)]

    def _field(self, which: int, x: torch.Tensor) -> torch.Tensor:
        weight, bias = (v.to(x.device, torch.float32) for v in self._fields[which])
        return torch.sin(x.flatten(1).float() @ weight.T + bias).reshape(x.shape)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher output plus the cond field on class rows and the uncond field on null rows."""
        is_null = self._null_rows(labels)
        out = self.teacher(x, t, labels)
        error = torch.where(is_null.view(-1, *([1] * (x.ndim - 1))), self.uncond_scale * self._field(1, x),
                            self.cond_scale * self._field(0, x))
        return out + error.to(out.dtype)


def collapsed_student(denoiser: Denoiser, guidance_scale: float) -> GuidedOutputStudent:
    """A student that learned only the guided output at scale ``w``: both branches ``eps_u + w Delta``, rho = 0."""
    return GuidedOutputStudent(denoiser, guidance_scale)


def shrunk_student(denoiser: Denoiser, factor: float) -> ShrunkGapStudent:
    """A student whose gap is ``factor`` times the teacher's; uncond branch exact."""
    return ShrunkGapStudent(denoiser, factor)


def shifted_student(denoiser: Denoiser, offset: float) -> ShiftedStudent:
    """A student whose two branches both drift by ``offset``; gap exact."""
    return ShiftedStudent(denoiser, offset)


def noisy_student(denoiser: Denoiser, cond_scale: float, uncond_scale: float | None = None, seed: int = 0) -> NoisyBranchStudent:
    """A student whose branches are each off by an error field of their own (``uncond_scale`` default: ``cond_scale``)."""
    return NoisyBranchStudent(denoiser, cond_scale, cond_scale if uncond_scale is None else uncond_scale, seed)
