"""The literal values rules compare with, as TOML hands them over.

Kept apart from :mod:`segment_rules.schema` so that the operators and the condition kinds,
which the schema re-exports, can name them without importing the schema.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["Scalar", "Value"]

Scalar = str | int | float | bool | dt.date | dt.datetime
Value = Scalar | tuple[Scalar, ...] | None
