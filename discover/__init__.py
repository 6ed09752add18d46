"""The agent: campaign loop, proposers, LLM client, feedback, config and the `discover` CLI.

The Python API (see :mod:`discover.api`) is importable from here::

    from discover import run_campaign, evaluate, load_optimizer, register_task, load_task_module, Task

Its names load on first use, so ``import discover`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _dist_version
from typing import Any

try:
    __version__ = _dist_version("optimizer-discovery")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_API = ("CampaignConfig", "Task", "UserError", "evaluate", "load_config", "load_optimizer", "load_task_module",
        "register_task", "run_campaign")


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("discover.api"), name)
    raise AttributeError(f"module 'discover' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [*_API, "__version__"]
