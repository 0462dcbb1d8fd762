"""Is this segsync's own ``connectors``, ``sync`` and ``segment_rules``?

The design fixes those three top-level package names, and other distributions use them
too: PyPI's ``connectors`` and elastic's connectors framework both ship a top-level
``connectors``. pip installs such a distribution into the same folder without a word,
overwriting segsync's files (or the other way round), and the next run fails deep
inside with an ImportError, or runs someone else's code. So ``segsync`` checks first:
each package must be the one beside this file and carry segsync's marker line. That
costs one small file read per package; the installed distributions are listed only to
name the culprit once a clash is found.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

__all__ = ["MARKER", "PACKAGES", "clashes", "problem"]

PACKAGES = ("connectors", "sync", "segment_rules")
#: The line every segsync package's ``__init__.py`` carries.
MARKER = "__segsync_package__ = True"


def clashes(home: Path | None = None) -> list[str]:
    """The package names that do not resolve to segsync's own copy in ``home``."""
    root = home or Path(__file__).resolve().parent.parent
    found = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if not _ours(origin, root):
            found.append(name)
    return found


def _ours(origin: Path | None, root: Path) -> bool:
    """An ``__init__.py`` beside segsync's other packages, carrying the marker."""
    if origin is None or origin.parent.parent != root or not origin.is_file():
        return False
    return MARKER in origin.read_text(encoding="utf-8", errors="replace")


def _owners(names: list[str]) -> dict[str, list[str]]:
    try:
        listed = importlib.metadata.packages_distributions()
    except Exception:  # a broken distribution must not hide the real message
        return {}
    return {n: sorted({d for d in listed.get(n, []) if d.lower() != "segsync"}) for n in names}


def problem() -> str | None:
    """One sentence naming the clash and the fix, or None when all is segsync's own."""
    names = clashes()
    if not names:
        return None
    owners = _owners(names)
    parts = [f"'{n}' (from {', '.join(owners[n])})" if owners.get(n) else f"'{n}'"
             for n in names]
    return (f"the Python package{'s' if len(names) > 1 else ''} {', '.join(parts)} in this "
            "environment belong to another distribution, which replaces segsync's own; install "
            "segsync in an environment of its own: `pipx install segsync`, or "
            "`python -m venv ~/.segsync && ~/.segsync/bin/pip install segsync`")
