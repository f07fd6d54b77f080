"""Package faces that hand names on lazily (PEP 562): importing a package does not import the modules it names."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, names: Mapping[str, str], *, also: tuple[str, ...] = (),
               first: tuple[str, frozenset[str]] | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``'s face: ``names`` maps each public name to the module defining it.

    ``also``: names the face defines itself (listed by ``dir``). ``first = (module, some names)``: ``module`` is
    imported before any of those names is handed on (for what it registers as a side effect).
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if first is not None and name in first[1]:
            importlib.import_module(first[0])
        return getattr(importlib.import_module(names[name]), name)

    def __dir__() -> list[str]:
        return sorted([*also, *names])

    return __getattr__, __dir__

