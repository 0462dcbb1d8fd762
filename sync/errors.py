"""Engine errors. Each knows the process exit code the CLI returns for it.

::

    SegsyncError (1)
    +-- ConfigError (3)          the config file is missing, unreadable or invalid
    +-- PartialFailure (5)       some records failed; they are retried on the next run
    +-- SafetyGuardTripped (6)   a segment would lose too many members; nothing applied to it
    +-- StoreLocked (7)          another segsync holds the store
    +-- StoreError (1)           the store file cannot be used
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "PartialFailure",
    "SafetyGuardTripped",
    "SegsyncError",
    "StoreError",
    "StoreLocked",
]


class SegsyncError(Exception):
    """Base class for errors the CLI reports in one line."""

    exit_code = 1


class ConfigError(SegsyncError):
    exit_code = 3


class PartialFailure(SegsyncError):
    exit_code = 5


class SafetyGuardTripped(SegsyncError):
    exit_code = 6


class StoreLocked(SegsyncError):
    exit_code = 7


class StoreError(SegsyncError):
    exit_code = 1
