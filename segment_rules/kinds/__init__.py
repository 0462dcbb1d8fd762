"""Condition kinds: one module per kind of leaf condition, and the :data:`KINDS` registry.

A rule tree is boolean groups (``all``/``any``/``not``, :class:`~segment_rules.schema.Group`)
over leaves. The groups are the generic part: parsing, compiling, explaining and walking
them is done once, in ``conditions``, ``compile``, ``explain`` and ``parse``. Everything
about a leaf is asked of its kind (:class:`~segment_rules.kinds.base.ConditionKind`):

========  ==================================================  =====================
kind      written as                                          module
========  ==================================================  =====================
activity  ``{ activity = "call", at_least = 2 }``             :mod:`.activity`
near      ``{ near = [lat, lon], within_km = 10 }``           :mod:`.near`
segment   ``{ in_segment = "..." }``, ``{ not_in_segment }``  :mod:`.segment_ref`
property  ``{ field = "age", op = "gte", value = 18 }``       :mod:`.property`
rfm       made by ``kind = "rfm"`` segments                   :mod:`.rfm`
rollup    activity a CRM keeps as roll-ups (``sources``)      :mod:`.rollup`
========  ==================================================  =====================

Who reads the registry: ``conditions.parse_condition`` (which kind claims a table, and
the keys for a did-you-mean), ``Compiler.predicate``/``value`` (SQL), ``explain`` (words
and actual values), ``evaluate.requirements`` and the pulled-column check (``needs``), and
``parse`` (``references``: unknown segments and cycles). The order of :data:`KINDS` is the
order in which kinds are offered a table; put a kind that claims by value before a more
general kind claiming the same key.

How to add a kind, e.g. a trait reference ``{ field = "trait.rfm_tier", op = "eq", ... }``:
write ``segment_rules/kinds/trait.py`` holding a frozen node dataclass (with a
``path: str = field(default="", compare=False)``) and a ``ConditionKind`` subclass for it:
``name``, ``node``, ``markers``/``keys`` (or ``claims`` when the value decides, here
``field`` starting with ``trait.``), ``parse`` (report through the ``TableReader`` with key
paths and did-you-mean, like the others), ``predicate`` and ``value`` (SQL over ``c``,
``co`` or a per-contact table requested with ``compiler.join``), ``describe``, ``shown``,
``needs`` and, if it depends on other segments, ``references``. Then add its ``KIND`` to
the ``KINDS`` list below, before ``property`` since it claims ``field`` too. Nothing else
changes: the abstract methods make an incomplete kind fail at import and in mypy, not in
explain (``tests/segment_rules/test_kinds.py`` registers a kind written in the test and
uses it end to end). A kind over data the store does not keep yet (a new source table,
event attributes) also needs that data pulled and stored: ``Requirements`` and
``sync.pull`` on one side, ``Tables``/``Sources`` on the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segment_rules.kinds.activity import KIND as ACTIVITY
from segment_rules.kinds.base import Condition, ConditionKind, FieldUse, Needs
from segment_rules.kinds.near import KIND as NEAR
from segment_rules.kinds.property import KIND as PROPERTY
from segment_rules.kinds.rfm import KIND as RFM
from segment_rules.kinds.rollup import KIND as ROLLUP
from segment_rules.kinds.segment_ref import KIND as SEGMENT_REF

__all__ = ["KINDS", "Condition", "ConditionKind", "FieldUse", "Needs", "kind_for"]


def _table(kinds: Sequence[ConditionKind[Any]]) -> dict[str, ConditionKind[Any]]:
    """Name -> kind, in recognition order; names and node classes must be unique."""
    table: dict[str, ConditionKind[Any]] = {}
    for kind in kinds:
        if kind.name in table or any(k.node is kind.node for k in table.values()):
            raise ValueError(f"condition kind {kind.name!r} is registered twice")
        if (kind.markers or kind.hints) and type(kind).parse is ConditionKind.parse:
            raise ValueError(f"condition kind {kind.name!r} claims tables but has no parse")
        table[kind.name] = kind
    return table


KINDS: dict[str, ConditionKind[Any]] = _table(
    [
        ACTIVITY,
        NEAR,
        SEGMENT_REF,
        PROPERTY,
        RFM,
        ROLLUP,
    ]
)


def kind_for(node: object) -> ConditionKind[Any]:
    """The registered kind that built this leaf (TypeError for groups and strangers)."""
    for kind in KINDS.values():
        if type(node) is kind.node:
            return kind
    raise TypeError(f"{type(node).__name__} is not a registered condition kind")
