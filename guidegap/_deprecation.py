"""Old names that keep working: a renamed keyword, attribute or module-level name is accepted with a DeprecationWarning
naming the new one."""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from guidegap.errors import InputError

__all__ = ["renamed_keywords", "renamed_attribute", "moved_names"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**old_to_new: str) -> Callable[[F], F]:
    """A decorator: each keyword ``old`` of the wrapped callable (or of a class's ``__init__``) is its ``new`` one."""

    def wrap(target: F) -> F:
        function = target.__init__ if isinstance(target, type) else target
        where = target.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InputError(f"{where}: pass {new}= only ({old}= is its old name), received both.")
                    warnings.warn(f"{where}({old}=...) is deprecated; use {new}=.", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        if isinstance(target, type):
            target.__init__ = call  # type: ignore[misc]
            return target
        return call  # type: ignore[return-value]

    return wrap


def renamed_attribute(old: str, new: str) -> property:
    """A property ``old`` that reads and writes ``new``, with a DeprecationWarning."""

    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; use .{new}.", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    def put(self: Any, value: Any) -> None:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; use .{new}.", DeprecationWarning, stacklevel=2)
        setattr(self, new, value)

    return property(get, put, doc=f"Deprecated name of :attr:`{new}`.")


def moved_names(module: str, old_to_new: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__``: each old name of ``module`` is the object at ``new`` (``"package.module:name"``).

    The new home is imported only when the old name is used, with a DeprecationWarning naming it.
    """

    def __getattr__(name: str) -> Any:
        if name not in old_to_new:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, attribute = old_to_new[name].partition(":")
        warnings.warn(f"{module}.{name} is deprecated; use {home}.{attribute}.", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), attribute)

    return __getattr__
