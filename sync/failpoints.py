"""Named points where the reliability suite kills segsync with SIGKILL, for real.

``SEGSYNC_KILL_AT="apply.batch:3"`` makes the process kill itself the 3rd time it passes
that point; ``SEGSYNC_TRACE_POINTS=FILE`` appends every point passed to FILE, so a test
can choose kill points spread over pull, compute and apply. Both are read once; when
neither is set a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["checkpoint"]

_KILL_AT = os.environ.get("SEGSYNC_KILL_AT", "")
_TRACE = os.environ.get("SEGSYNC_TRACE_POINTS", "")
_seen: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    """Mark a point in the pipeline (a page stored, a batch recorded, ...)."""
    if not (_KILL_AT or _TRACE):
        return
    _seen[name] += 1
    label = f"{name}:{_seen[name]}"
    if _TRACE:
        with open(_TRACE, "a", encoding="utf-8") as trace:
            trace.write(label + "\n")
    if label == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
