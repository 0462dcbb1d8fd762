"""segsync's engine: config, state store, and the pull -> compute -> plan -> apply loop."""

from sync.config import Config, load_config
from sync.engine import SyncOutcome, run_plan, run_pull, run_sync

__all__ = ["Config", "SyncOutcome", "load_config", "run_plan", "run_pull", "run_sync"]
