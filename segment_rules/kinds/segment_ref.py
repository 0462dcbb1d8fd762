"""Segment references: ``{ in_segment = "nps-promoters" }``, ``{ not_in_segment = "..." }``.

Membership of another segment means its rule and its consent setting; holdouts do not
matter. The parser checks that referenced segments exist and form no cycle
(:meth:`SegmentRefKind.references`); the compiler inlines the referenced rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segment_rules.kinds.base import ConditionKind, Needs
from segment_rules.sql import Predicate
from segment_rules.tables import TableReader, key_path

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = ["KIND", "SegmentRef"]

REF_KEYS = ("in_segment", "not_in_segment")


@dataclass(frozen=True)
class SegmentRef:
    """Membership of another segment (its rule and consent; holdouts do not matter)."""

    key: str
    negate: bool = False
    path: str = dataclasses.field(default="", compare=False)


class SegmentRefKind(ConditionKind[SegmentRef]):
    name = "segment"
    node = SegmentRef
    markers = REF_KEYS
    keys = REF_KEYS

    def parse(self, reader: TableReader, table: Mapping[str, Any], path: str) -> SegmentRef | None:
        reader.check_keys(table, REF_KEYS, path)
        present = [k for k in REF_KEYS if k in table]
        if len(present) != 1:
            reader.problem(path, "use either in_segment or not_in_segment, not both")
            return None
        key = reader.string(table, present[0], path)
        if key is None:
            return None
        return SegmentRef(key, negate=present[0] == "not_in_segment",
                          path=key_path(path, present[0]))

    def predicate(self, node: SegmentRef, compiler: Compiler) -> Predicate:
        inner = self.value(node, compiler)
        return Predicate(f"(NOT {inner.sql})", inner.params) if node.negate else inner

    def value(self, node: SegmentRef, compiler: Compiler) -> Predicate:
        """The referenced membership itself (explain shows it for ``not_in_segment`` too)."""
        return compiler.matches(compiler.segments[node.key])

    def describe(self, node: SegmentRef) -> str:
        return f"{'not ' if node.negate else ''}in segment '{node.key}'"

    def shown(self, node: SegmentRef, raw: object) -> str:
        return "member" if raw else "not a member"

    def needs(self, node: SegmentRef) -> Needs:
        return Needs()  # the referenced segment's own conditions say what they read

    def references(self, node: SegmentRef) -> tuple[str, ...]:
        return (node.key,)


KIND = SegmentRefKind()
