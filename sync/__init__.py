"""segsync's engine: config, state store, and the pull -> compute -> plan -> apply loop.

The names below are loaded on first use, so ``segsync`` can check that the installed
packages are segsync's own (:mod:`sync.provenance`) before importing anything else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__segsync_package__ = True

__all__ = ["Config", "SyncOutcome", "load_config", "run_plan", "run_pull", "run_sync"]

_HOMES = {"Config": "sync.config", "load_config": "sync.config", "SyncOutcome": "sync.engine",
          "run_plan": "sync.engine", "run_pull": "sync.engine", "run_sync": "sync.engine"}

if TYPE_CHECKING:
    from sync.config import Config, load_config
    from sync.engine import SyncOutcome, run_plan, run_pull, run_sync


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
