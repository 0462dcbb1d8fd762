"""One typed reader for settings tables: a frozen dataclass says keys, types, defaults, ranges.

Each settings table (``[sync]``, ``[store]``, ``[alerts]``, and the tables later features
add) is a frozen dataclass whose fields are the table's keys. A field's annotation gives
its TOML type (``str``, ``bool``, ``int``, ``float``, optionally ``| None``), its default
is the dataclass default, and :func:`setting` adds what the type cannot say: a range, a
pattern, choices, a required key. :func:`read_settings` reads a table against it, so a
default is stated once -- in the dataclass -- and every problem is reported with its key
path and, for a typo, the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from segment_rules.tables import TableReader

__all__ = ["Check", "read_settings", "setting"]

T = TypeVar("T")
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Check:
    """What a field's type does not say: bounds, a pattern, choices, whether it is required."""

    minimum: float | None = None
    maximum: float | None = None
    pattern: re.Pattern[str] | None = None
    hint: str = ""
    choices: Collection[str] | None = None
    required: bool = False


def setting(
    default: Any = _MISSING, *, minimum: float | None = None, maximum: float | None = None,
    pattern: re.Pattern[str] | None = None, hint: str = "",
    choices: Collection[str] | None = None,
) -> Any:
    """A settings field: its default (none: the key is required) and its checks."""
    check = Check(minimum, maximum, pattern, hint, choices, required=default is _MISSING)
    if default is _MISSING:
        return dataclasses.field(metadata={"check": check})
    return dataclasses.field(default=default, metadata={"check": check})


def read_settings(
    reader: TableReader, table: Mapping[str, Any], cls: type[T], where: str,
    *, extra_keys: Collection[str] = (), **given: Any,
) -> T | None:
    """Read ``table`` (at key path ``where``) into ``cls``; None (problems recorded on
    ``reader``) if it is invalid.

    Fields named in ``given`` are not read from the table (the caller computed them, e.g.
    a path made absolute); ``extra_keys`` are keys the caller reads itself.
    """
    before = len(reader.problems)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in given]  # type: ignore[arg-type]
    reader.check_keys(table, [*(f.name for f in fields), *given, *extra_keys], where)
    values: dict[str, Any] = dict(given)
    for f in fields:
        check: Check = f.metadata.get("check", Check())
        if check.required and not reader.required(table, f.name, where):
            continue
        default = None if f.default is _MISSING else f.default
        values[f.name] = _read(reader, table, f.name, where, hints[f.name], default, check)
    if len(reader.problems) > before:
        return None
    return cls(**values)


def _read(reader: TableReader, table: Mapping[str, Any], key: str, path: str, kind: Any,
          default: Any, check: Check) -> Any:
    base = _base(kind)
    if base is bool:
        return reader.boolean(table, key, path, default=bool(default))
    if base is int:
        minimum = None if check.minimum is None else int(check.minimum)
        maximum = None if check.maximum is None else int(check.maximum)
        return reader.integer(table, key, path, default=default, minimum=minimum,
                              maximum=maximum)
    if base is float:
        value = reader.number(table, key, path, default=default, minimum=check.minimum,
                              maximum=check.maximum)
        return None if value is None else float(value)
    if base is str:
        return reader.string(table, key, path, default=default, choices=check.choices,
                             pattern=check.pattern, pattern_hint=check.hint)
    raise TypeError(f"settings field {key!r} has a type the reader cannot read: {kind!r}")


def _base(kind: Any) -> Any:
    """``float`` for ``float | None`` and the like."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind
