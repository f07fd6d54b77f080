"""The recording forward hook, registered by name in diffusers' ``HookRegistry`` (``diffusers.hooks``).

The hook reads a call's inputs before ``forward`` and its output after, hands both to a callback, and returns
the output object untouched, so recording never changes what the model or pipeline computes.

It is a *stateful* diffusers hook holding a ``StateManager``: that is how diffusers tells hooks which denoising
call is running. ``model.cache_context("cond")`` calls ``_set_cache_context``, which walks every stateful
hook of the model's registry and calls ``set_context(CacheContext("cond", ...))`` on each ``StateManager``
attribute, and ``set_context(None)`` when the block exits. The hook reads that context at ``pre_forward``,
so calls made under ``cache_context("cond")`` / ``("uncond")`` (guider-based and modular pipelines) arrive
labelled with their branch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks.hooks import BaseState, HookRegistry, ModelHook, StateManager

from guidegap.errors import GuidegapError

__all__ = ["HOOK_NAME", "HookError", "Call", "RecordingHook", "attach", "remove_hooks"]

HOOK_NAME = "guidegap.record"


class HookError(GuidegapError):
    """A recording hook cannot be registered (e.g. the module is already being recorded)."""


@dataclass
class Call:
    """One denoiser call as the hook saw it: the sample, timestep, class labels and cache context name."""

    sample: torch.Tensor | None
    timestep: Any
    labels: Any
    context: str | None


class _NoState(BaseState):
    def reset(self, *args: Any, **kwargs: Any) -> None:
        pass


class _ContextProbe(StateManager):
    """A ``StateManager`` whose only use is to receive the ``CacheContext`` diffusers broadcasts."""

    def __init__(self) -> None:
        super().__init__(_NoState)
        self.name: str | None = None

    def set_context(self, context: Any) -> None:  # diffusers >= 0.42: a CacheContext or None
        super().set_context(context)
        self.name = None if context is None else str(getattr(context, "name", context))

    def _set_context(self, name: str | None) -> None:  # earlier diffusers passed the name itself
        self.name = name


class RecordingHook(ModelHook):
    """Calls ``on_call(module, call, output)`` after every forward; returns ``output`` as it is."""

    _is_stateful = True

    def __init__(self, on_call: Callable[[torch.nn.Module, Call, Any], None], signature: inspect.Signature,
                 label_arg: str | None) -> None:
        super().__init__()
        self.cache_context = _ContextProbe()  # found by diffusers' _set_cache_context via vars(hook)
        self.on_call = on_call
        self.signature = signature
        self.label_arg = label_arg
        self._calls: list[Call] = []

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any], dict[str, Any]]:
        self._calls.append(self._describe(args, kwargs))
        return args, kwargs

    def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
        call = self._calls.pop() if self._calls else Call(None, None, None, None)
        self.on_call(module, call, output)
        return output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        # Pipelines reset stateful hooks after each call (maybe_free_model_hooks); only the context is state here.
        self.cache_context.set_context(None)
        self._calls.clear()
        return module

    def _describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        context = self.cache_context.name
        try:
            bound = self.signature.bind_partial(*args, **kwargs).arguments
        except TypeError:  # the model itself will complain about the arguments
            return Call(None, None, None, context)
        params = list(self.signature.parameters)
        sample = bound.get(params[0]) if params else None
        timestep = bound.get("timestep", bound.get("t"))
        labels = bound.get(self.label_arg) if self.label_arg else None
        return Call(sample if isinstance(sample, torch.Tensor) else None, timestep, labels, context)


def attach(module: torch.nn.Module, hook: RecordingHook) -> Callable[[], None]:
    """Register ``hook`` on ``module`` under :data:`HOOK_NAME`; returns the function that removes it again."""
    registry = HookRegistry.check_if_exists_or_initialize(module)
    if registry.get_hook(HOOK_NAME) is not None:
        raise HookError(
            f"{type(module).__name__} is already being recorded (a diffusers hook named {HOOK_NAME!r} is registered on it); "
            "finish the other `with guidegap.record(...)` block first, or remove a leftover hook with "
            "guidegap.pipelines.remove_hooks(module)."
        )
    had_forward_attr = "forward" in vars(module)
    registry.register_hook(hook, HOOK_NAME)

    def detach() -> None:
        registry.remove_hook(HOOK_NAME, recurse=False)
        if not registry.hooks and not had_forward_attr:
            # HookRegistry leaves the original bound forward as an instance attribute; drop it.
            vars(module).pop("forward", None)

    return detach


def remove_hooks(module: torch.nn.Module) -> bool:
    """Remove a leftover guidegap recording hook from ``module``; True if there was one."""
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None or registry.get_hook(HOOK_NAME) is None:
        return False
    registry.remove_hook(HOOK_NAME, recurse=False)
    return True


def forward_signature(module: torch.nn.Module) -> inspect.Signature:
    """The signature of ``module.forward`` (bound: without ``self``)."""
    return inspect.signature(module.forward)
