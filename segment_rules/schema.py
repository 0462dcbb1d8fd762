"""The validated rule tree: plain frozen values that the compiler and explainer walk.

Parsing (``segment_rules.parse``) is the only way to build these from TOML, so every
object here is already known to be well-formed: operators exist, values have the right
shape, referenced segments exist and do not form cycles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COMPANY_PREFIX",
    "Condition",
    "Group",
    "PropertyCondition",
    "Scalar",
    "Segment",
    "SyncMode",
    "Value",
]

Scalar = str | int | float | bool | dt.date | dt.datetime
Value = Scalar | tuple[Scalar, ...] | None
SyncMode = Literal["mirror", "add_only"]

#: Rules address company (account) fields as ``company.<field>``.
COMPANY_PREFIX = "company."


@dataclass(frozen=True)
class PropertyCondition:
    """Compare one contact or company field with a literal, e.g. ``age between [25, 40]``."""

    field: str
    op: str
    value: Value
    path: str = dataclasses.field(default="", compare=False)

    @property
    def on_company(self) -> bool:
        return self.field.startswith(COMPANY_PREFIX)

    @property
    def column(self) -> str:
        """The stored column name, without the ``company.`` namespace."""
        return self.field.removeprefix(COMPANY_PREFIX)


@dataclass(frozen=True)
class Group:
    """``all`` (and), ``any`` (or) or ``not`` over child conditions."""

    kind: Literal["all", "any", "not"]
    children: tuple[Condition, ...]
    path: str = dataclasses.field(default="", compare=False)


Condition = PropertyCondition | Group


@dataclass(frozen=True)
class Segment:
    """One segment as written back to the CRM: a stable key, a display name and a rule."""

    key: str
    name: str
    rule: Condition
    mode: SyncMode = "mirror"
    exclude_opted_out: bool = True
    description: str = ""
    path: str = dataclasses.field(default="", compare=False)
