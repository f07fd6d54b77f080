"""Exceptions with one-line, actionable messages.

Every error raised for bad user input is a :class:`GuidegapError`; its message says what was expected,
what was received and how to fix it. The CLI prints ``str(error)`` on one line and exits with code 2.
"""

from __future__ import annotations

__all__ = ["GuidegapError", "AdapterError", "InputError", "printable", "first_line"]


def first_line(error: BaseException, limit: int = 200, empty: str = "") -> str:
    """The first line of ``error``'s message, at most ``limit`` characters (``empty`` when it has none): what a
    one-line error quotes from a library's multi-line one."""
    return (str(error).strip().splitlines() or [empty])[0][:limit]


def printable(text: object) -> str:
    """``text`` on one line, with control characters (ANSI escapes, bidi overrides, ...) shown as escapes.

    Messages quote what files say (config values, key names); a file must not be able to repaint the terminal.
    """
    line = " ".join(str(text).split())
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


class GuidegapError(ValueError):
    """Base class of every error guidegap raises for bad input; the message is one line of printable text."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


class AdapterError(GuidegapError):
    """A model cannot be turned into a class-conditional denoiser (see :mod:`guidegap.denoisers`)."""


class InputError(GuidegapError):
    """An argument, file or dataset does not have the expected form."""
