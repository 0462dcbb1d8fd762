"""The validated rule tree: plain frozen values that the compiler and explainer walk.

Parsing (``segment_rules.parse``) is the only way to build these from TOML, so every
object here is already known to be well-formed: operators exist, values have the right
shape, referenced segments exist and do not form cycles. Generators (NPS, RFM, priority
splits, holdouts) are expanded by the parser into ordinary :class:`Segment` objects; only
one-segment-per-value waits for the data (:class:`PerValueGenerator`).

The leaf conditions live with their kinds (``segment_rules.kinds.*``, one module each) and
are re-exported here under their old names; ``Condition`` is any node, group or leaf.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from segment_rules.kinds.activity import ACTIVITY_METRICS, ACTIVITY_TYPES, ActivityCondition
from segment_rules.kinds.activity import ActivityMetric as ActivityMetric
from segment_rules.kinds.base import Condition
from segment_rules.kinds.near import NearCondition
from segment_rules.kinds.property import COMPANY_PREFIX, PropertyCondition
from segment_rules.kinds.rfm import RfmCondition
from segment_rules.kinds.segment_ref import SegmentRef
from segment_rules.values import Scalar, Value

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

SyncMode = Literal["mirror", "add_only"]


@dataclass(frozen=True)
class Group:
    """``all`` (and), ``any`` (or) or ``not`` over child conditions."""

    kind: Literal["all", "any", "not"]
    children: tuple[Condition, ...]
    path: str = dataclasses.field(default="", compare=False)


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
    #: What made it: "nps", "rfm", "per_value", "split", or "" for a plain segment.
    generator_kind: str = ""
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
