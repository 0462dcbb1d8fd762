"""The validated rule tree: plain frozen values that the compiler and explainer walk.

Parsing (``segment_rules.parse``) is the only way to build these from TOML, so every
object here is already known to be well-formed: operators exist, values have the right
shape, referenced segments exist and do not form cycles. Generators (NPS, RFM, priority
splits, holdouts) are expanded by the parser into ordinary :class:`Segment` objects; only
one-segment-per-value waits for the data (:class:`PerValueGenerator`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACTIVITY_METRICS",
    "ACTIVITY_TYPES",
    "COMPANY_PREFIX",
    "ActivityCondition",
    "Condition",
    "Group",
    "Holdout",
    "NearCondition",
    "PerValueGenerator",
    "PropertyCondition",
    "RfmCondition",
    "Scalar",
    "Segment",
    "SegmentRef",
    "SyncMode",
    "Value",
]

Scalar = str | int | float | bool | dt.date | dt.datetime
Value = Scalar | tuple[Scalar, ...] | None
SyncMode = Literal["mirror", "add_only"]

#: Rules address company (account) fields as ``company.<field>``.
COMPANY_PREFIX = "company."

#: Canonical activity types; every connector maps its CRM's engagement kinds into these.
ACTIVITY_TYPES = (
    "email_open",
    "email_click",
    "email_sent",
    "email_received",
    "call",
    "meeting",
    "form_submission",
    "note",
    "task",
    "page_view",
    "purchase",
)
ActivityMetric = Literal["count", "sum_amount", "days_since_last"]
ACTIVITY_METRICS: tuple[ActivityMetric, ...] = ("count", "sum_amount", "days_since_last")


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
class ActivityCondition:
    """A number computed from a contact's activity, compared with a literal.

    ``types`` empty means any type; ``within_days`` None means all pulled history.
    Counts and sums of contacts without activity are 0; ``days_since_last`` of a contact
    who never had such activity is missing (so ``gt`` is false; use ``count`` = 0 for
    "never").
    """

    types: tuple[str, ...]
    metric: ActivityMetric
    op: str
    value: float | tuple[float, float]
    within_days: int | None = None
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class NearCondition:
    """Within ``km`` of any of ``points`` (lat, lon), by the contact's or its company's location."""

    points: tuple[tuple[float, float], ...]
    km: float
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class SegmentRef:
    """Membership of another segment (its rule and consent; holdouts do not matter)."""

    key: str
    negate: bool = False
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class RfmCondition:
    """Recency/frequency/monetary quintile scores (1-5) within a purchase window."""

    window_days: int
    recency: tuple[int, int]
    frequency: tuple[int, int]
    monetary: tuple[int, int]
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class Group:
    """``all`` (and), ``any`` (or) or ``not`` over child conditions."""

    kind: Literal["all", "any", "not"]
    children: tuple[Condition, ...]
    path: str = dataclasses.field(default="", compare=False)


Condition = PropertyCondition | ActivityCondition | NearCondition | SegmentRef | RfmCondition | Group


@dataclass(frozen=True)
class Holdout:
    """A deterministic control group: ``percent`` of members, chosen by hash(contact, key, salt)."""

    percent: float
    salt: str = ""


@dataclass(frozen=True)
class Segment:
    """One segment as written back to the CRM: a stable key, a display name and a rule.

    ``holdout`` removes a control group from the written members; the control group is
    its own segment (``control_of`` names the parent) that is kept in the store and only
    written to the CRM when ``store_only`` is false.
    """

    key: str
    name: str
    rule: Condition
    mode: SyncMode = "mirror"
    exclude_opted_out: bool = True
    description: str = ""
    holdout: Holdout | None = None
    control_of: str | None = None
    store_only: bool = False
    #: The generator block this segment came from (its key), or "" for a plain segment.
    generator: str = ""
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class PerValueGenerator:
    """One segment per value of ``field`` (the ``top`` most common), plus optional "other"."""

    key: str
    name: str
    field: PropertyCondition
    top: int
    other: bool
    mode: SyncMode = "mirror"
    exclude_opted_out: bool = True
    path: str = dataclasses.field(default="", compare=False)
