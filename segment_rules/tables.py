"""Typed access to parsed TOML tables that records problems instead of raising.

Both the connection settings (``sync.config``) and the segment rules read TOML through a
:class:`TableReader`, so every key in the product is checked the same way: unknown keys
get a did-you-mean hint, wrong types name the expected type and what was found, and
nothing stops at the first mistake.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from segment_rules.errors import Problem, did_you_mean

__all__ = ["TableReader", "describe", "key_path"]

_MAX_INT = 2**53  # beyond this TOML integers lose meaning as counts, days or amounts
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def key_path(base: str, key: str | int) -> str:
    """Join a key path the way TOML users read it: ``a.b``, ``a[0]``, ``a."odd key"``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    part = key if _BARE_KEY.match(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{base}.{part}" if base else part


def describe(value: object) -> str:
    """Name a TOML value's type as the TOML spec does, for error messages."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case dt.datetime():
            return "a datetime"
        case dt.date():
            return "a date"
        case dt.time():
            return "a time"
        case list():
            return "an array"
        case dict():
            return "a table"
    return type(value).__name__


class TableReader:
    """Reads values out of TOML tables, appending a :class:`Problem` for each mistake."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems

    def problem(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(path, message, hint))

    def table(self, value: object, path: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"must be a table (got {describe(value)})")
        return None

    def check_keys(self, table: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                self.problem(
                    key_path(path, key), "is not a known key", did_you_mean(key, allowed)
                )

    def required(self, table: Mapping[str, Any], key: str, path: str) -> bool:
        if key in table:
            return True
        self.problem(key_path(path, key), "is required")
        return False

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: str | None = None,
        choices: Collection[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_hint: str = "",
    ) -> str | None:
        if key not in table:
            return default
        value = table[key]
        where = key_path(path, key)
        if not isinstance(value, str):
            self.problem(where, f"must be a string (got {describe(value)})")
            return default
        if "\x00" in value:  # no file name, CRM name or value may hold one
            self.problem(where, "must not contain a NUL character")
            return default
        if choices is not None and value not in choices:
            options = ", ".join(repr(c) for c in sorted(choices))
            self.problem(
                where, f"must be one of {options} (got {value!r})", did_you_mean(value, choices)
            )
            return default
        if pattern is not None and not pattern.match(value):
            self.problem(where, f"{value!r} is not valid", pattern_hint)
            return default
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            self.problem(key_path(path, key), f"must be true or false (got {describe(value)})")
            return default
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        if key not in table:
            return default
        return self.check_integer(table[key], key_path(path, key), minimum, maximum, default)

    def check_integer(
        self,
        value: object,
        where: str,
        minimum: int | None = None,
        maximum: int | None = None,
        default: int | None = None,
    ) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(where, f"must be an integer (got {describe(value)})")
            return default
        hi = _MAX_INT if maximum is None else maximum
        if minimum is not None and value < minimum:
            self.problem(where, f"must be at least {minimum} (got {value})")
            return default
        if value > hi:
            self.problem(where, f"must be at most {hi} (got {value})")
            return default
        return value

    def number(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        if key not in table:
            return default
        return self.check_number(table[key], key_path(path, key), minimum, maximum, default)

    def check_number(
        self,
        value: object,
        where: str,
        minimum: float | None = None,
        maximum: float | None = None,
        default: float | None = None,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(where, f"must be a number (got {describe(value)})")
            return default
        number = float(value)
        if not math.isfinite(number) or abs(number) > 1e15:
            self.problem(where, f"must be a finite number of reasonable size (got {value})")
            return default
        if minimum is not None and number < minimum:
            self.problem(where, f"must be at least {minimum:g} (got {value})")
            return default
        if maximum is not None and number > maximum:
            self.problem(where, f"must be at most {maximum:g} (got {value})")
            return default
        return number
