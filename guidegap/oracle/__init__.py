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
from guidegap.oracle.tier import ORACLE_MIXTURE, oracle_mixture, oracle_teacher, parse_oracle

__all__ = [
    "ORACLE_MIXTURE",
    "GaussianMixture",
    "GuidedOutputStudent",
    "OracleDenoiser",
    "ShiftedStudent",
    "ShrunkGapStudent",
    "collapsed_student",
    "oracle_mixture",
    "oracle_teacher",
    "parse_oracle",
    "shifted_student",
    "shrunk_student",
]
