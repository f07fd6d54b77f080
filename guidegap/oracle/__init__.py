"""The oracle tier (docs/design.md §4): a class-conditional Gaussian mixture with exact eps (the teacher), its spec
(``"oracle[:SEED]"``), constructed students with known verdicts, the exact outcome of guidance on its students
(docs/design.md §6), and the small MLP student it trains."""

from guidegap.oracle.gaussian_mixture import GaussianMixture, OracleDenoiser
from guidegap.oracle.mlp import MLPDenoiser
from guidegap.oracle.outcome import bayes_accuracy, oracle_outcome
from guidegap.oracle.students import (
    GuidedOutputStudent,
    NoisyBranchStudent,
    ShiftedStudent,
    ShrunkGapStudent,
    collapsed_student,
    noisy_student,
    shifted_student,
    shrunk_student,
)
from guidegap.oracle.tier import ORACLE_MIXTURE, oracle_mixture, oracle_teacher, parse_oracle

__all__ = [
    "ORACLE_MIXTURE",
    "GaussianMixture",
    "GuidedOutputStudent",
    "MLPDenoiser",
    "NoisyBranchStudent",
    "bayes_accuracy",
    "OracleDenoiser",
    "ShiftedStudent",
    "ShrunkGapStudent",
    "collapsed_student",
    "noisy_student",
    "oracle_mixture",
    "oracle_outcome",
    "oracle_teacher",
    "parse_oracle",
    "shifted_student",
    "shrunk_student",
]
