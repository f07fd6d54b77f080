"""Registries by name (metrics, verdicts, model families): a taken name is refused, a built-in entry stays."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from guidegap.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Entries by name, in registration order; the entries it starts with are built in and cannot be removed.

    ``kind`` (e.g. ``"metric"``) names the entries in messages; ``register_<kind>`` / ``remove_<kind>`` are the
    functions that change it.
    """

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]]) -> None:
        super().__init__(entries)
        self.kind = kind
        self.builtin = frozenset(self)

    def add(self, name: str, entry: T, cls: type) -> T:
        if not isinstance(entry, cls):
            raise InputError(f"register_{self.kind}: expected a {cls.__module__}.{cls.__name__}, received {type(entry).__name__}.")
        if name in self:
            raise InputError(f"register_{self.kind}: a {self.kind} named {name!r} is registered already; choose another name, "
                             f"or remove_{self.kind}({name!r}) first.")
        self[name] = entry
        return entry

    def remove(self, name: str) -> Any:
        if name not in self or name in self.builtin:
            raise InputError(f"remove_{self.kind}: expected the name of a {self.kind} added with register_{self.kind}, "
                             f"received {name!r}.")
        return self.pop(name)
