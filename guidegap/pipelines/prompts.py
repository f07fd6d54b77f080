"""Prompt sets for text-to-image audits: a prompts file (one per line) or the small default set shipped here."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from guidegap.errors import InputError

__all__ = ["DEFAULT_PROMPTS_FILE", "default_prompts", "read_prompts"]

DEFAULT_PROMPTS_FILE = "data/default_prompts.txt"


def _parse(text: str) -> list[str]:
    """Non-empty lines, stripped; lines starting with ``#`` are comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def default_prompts() -> list[str]:
    """guidegap's default prompt set (package data, 8 prompts)."""
    return _parse(resources.files("guidegap.pipelines").joinpath(DEFAULT_PROMPTS_FILE).read_text(encoding="utf-8"))


def read_prompts(path: str | os.PathLike[str] | None) -> list[str]:
    """The prompts of a UTF-8 text file, one per line (``#`` comments, blank lines skipped); None: the default set."""
    if path is None:
        return default_prompts()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the prompts file {str(path)!r} ({type(error).__name__}); pass a UTF-8 text "
                         "file with one prompt per line.") from None
    prompts = _parse(text)
    if not prompts:
        raise InputError(f"{str(path)!r}: expected one prompt per line, received no prompt; write at least one line.")
    return prompts
