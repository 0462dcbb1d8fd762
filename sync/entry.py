"""The ``segsync`` command's entry point: check the packages are segsync's, then run.

It imports nothing of segsync's own beyond :mod:`sync.provenance` before the check, so
a foreign ``connectors`` package gives one clear sentence instead of an ImportError.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sync import provenance

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    clash = provenance.problem()
    if clash is not None:
        print(f"Error: {clash}", file=sys.stderr)
        return 1
    from sync.cli import main as run

    return run(argv)
