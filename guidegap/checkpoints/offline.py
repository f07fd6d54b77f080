"""No network in guidegap's own loads: the Hugging Face hub is switched offline while a file is read.

Every model, scheduler and pipeline guidegap builds comes from local files; a config that names a repository
id must not make diffusers, transformers or huggingface_hub reach the network (with retries) on its behalf.
The environment variables cover libraries imported later; ``huggingface_hub.constants`` covers one already
imported, which reads its offline flag at call time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["OFFLINE_ENV", "hub_offline", "set_offline"]

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "DIFFUSERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def set_offline() -> None:
    """Switch the hub offline for the rest of the process (the CLI, which never needs the network)."""
    os.environ.update(OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The hub offline inside the block, the caller's settings restored after it (library use)."""
    saved_env = {name: os.environ.get(name) for name in OFFLINE_ENV}
    constants = sys.modules.get("huggingface_hub.constants")
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", None)
    set_offline()
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        constants_now = sys.modules.get("huggingface_hub.constants")
        if constants_now is not None:  # imported before the block, or during it (then it read our setting)
            was_on = (saved_env["HF_HUB_OFFLINE"] or "").upper() in ("1", "ON", "YES", "TRUE")
            constants_now.HF_HUB_OFFLINE = saved_flag if constants is not None else was_on
