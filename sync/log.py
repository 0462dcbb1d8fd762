"""Log lines and progress: bars on a terminal, plain or JSON lines everywhere else.

Every record passes through ``connectors.redact.scrub`` before it is written, so a token
that slipped into an exception message still never reaches a log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import TextIO

from connectors.redact import scrub

__all__ = ["Progress", "setup_logging"]


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = scrub(record.getMessage())
        if self.json_lines:
            entry = {"time": when, "level": record.levelname.lower(), "logger": record.name,
                     "message": message}
            entry.update(getattr(record, "fields", {}))
            return json.dumps(entry, default=str)
        return f"{when} {record.levelname:<7} {message}"


def setup_logging(log_format: str, stream: TextIO | None = None, verbose: bool = False) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(log_format == "json"))
    # Connectors log under their module names (connectors.*): same handler, same scrubbing.
    for name in ("segsync", "connectors"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False


class Progress:
    """Progress for long steps: a redrawn bar on a terminal, a log line per step otherwise."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._last_draw = 0.0
        self._open = False

    def pulled(self, stream: str, count: int) -> None:
        self._draw(f"pull {stream}: {count} records")

    def applied(self, step: str, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        self._draw(f"{step} [{bar}] {done}/{total}", final=done >= total)

    def _draw(self, text: str, final: bool = False) -> None:
        if not self.interactive:
            return
        now = time.monotonic()
        if not final and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[2K" + text)
        self._open = True
        if final:
            self.done()
        self.stream.flush()

    def done(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
