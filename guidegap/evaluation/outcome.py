"""What "guides like its teacher" means (docs/design.md §6): the outcome a verdict must predict, from samples alone.

A model's guided samples are judged without any gap metric — label accuracy ``a(w)`` of guided samples against
their requested class, the gain ``a(w) - a(1)`` that guidance adds, and the Fréchet distance ``FD(w)`` to held-out
data — and a student guides like its teacher when it is faithful, guided and not degraded against the teacher's own
outcome, with §6's tolerances. ``analyses/detector_validation.py`` applies them to the Fashion-MNIST population
(the project classifier's accuracy and features); :func:`guidegap.oracle.outcome.oracle_outcome` measures them
exactly on the oracle tier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["FAITHFUL_MARGIN", "GUIDED_SHARE", "DEGRADED_FACTOR", "GuidanceOutcome", "guides_like"]

FAITHFUL_MARGIN = 0.10  # faithful: a_S(w) >= a_T(w) - 0.10
GUIDED_SHARE = 0.5  # guided: gain_S >= 0.5 gain_T, gain = a(w) - a(1)
DEGRADED_FACTOR = 2.0  # not degraded: FD_S(w) <= 2 FD_T(w)


@dataclass(frozen=True)
class GuidanceOutcome:
    """One model's guided samples, judged without any gap metric: label accuracy at w = 1 and at w, FD at w."""

    accuracy_unguided: float
    accuracy_guided: float
    fd_guided: float

    @property
    def gain(self) -> float:
        """What guidance adds to label fidelity: ``a(w) - a(1)``."""
        return self.accuracy_guided - self.accuracy_unguided

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "gain": self.gain}


def guides_like(student: GuidanceOutcome, teacher: GuidanceOutcome) -> bool:
    """docs/design.md §6: faithful, guided and not degraded, against the teacher's own outcome."""
    faithful = student.accuracy_guided >= teacher.accuracy_guided - FAITHFUL_MARGIN
    guided = student.gain >= GUIDED_SHARE * teacher.gain
    return bool(faithful and guided and student.fd_guided <= DEGRADED_FACTOR * teacher.fd_guided)
