"""Helpers for users' test suites.

::

    from guidegap.testing import assert_guidance_healthy

    def test_distilled_student_keeps_guidance():
        assert_guidance_healthy(student, teacher, num_samples=32, num_steps=20)
"""

from __future__ import annotations

import os
from typing import Any

from guidegap.auditing.report import AuditReport
from guidegap.denoisers import DenoiserLike

__all__ = ["assert_guidance_healthy"]


def assert_guidance_healthy(student: DenoiserLike | str | os.PathLike[str], teacher: DenoiserLike | str | os.PathLike[str] | None,
                            **audit_options: Any) -> AuditReport:
    """Audit ``student`` against ``teacher`` (:func:`guidegap.audit`, same options); pass silently when ``healthy``.

    Otherwise raise ``AssertionError`` with the verdict line and the key numbers (rho, gap cosine, branch errors
    with their CIs), not the whole report. Returns the report. Without a teacher the verdict can at best be
    ``inconclusive``, which fails: guidance health needs a reference.
    """
    from guidegap.auditing.api import audit
    from guidegap.monitoring.monitor import describe_failure

    __tracebackhide__ = True  # pytest: show the caller's line, not this helper
    report = audit(student, teacher, **audit_options)
    if report.verdict != "healthy":
        raise AssertionError(f"guidance of {report.dataset.attrs.get('student') or 'the student'} is not healthy: "
                             f"{describe_failure(report)}")
    return report
