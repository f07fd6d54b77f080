"""The oracle tier: a class-conditional Gaussian mixture with exact eps, and students with known verdicts."""

from guidegap.oracle.gaussian_mixture import GaussianMixture, OracleDenoiser
from guidegap.oracle.students import (
    GuidedOutputStudent,
    ShiftedStudent,
    ShrunkGapStudent,
    collapsed_student,
    shifted_student,
    shrunk_student,
)

__all__ = [
    "GaussianMixture",
    "GuidedOutputStudent",
    "OracleDenoiser",
    "ShiftedStudent",
    "ShrunkGapStudent",
    "collapsed_student",
    "shifted_student",
    "shrunk_student",
]
