"""What a condition kind provides, and the values kinds hand back to the generic code.

A kind owns one frozen node class (the leaf it builds) and everything the rest of the
package needs to know about it: how to recognise and parse its TOML table, its SQL, its
words and actual value in ``segsync explain``, the data it reads, and the segments it
depends on. The generic code (:mod:`segment_rules.conditions`, ``compile``, ``evaluate``,
``explain``, ``parse``) walks the boolean groups itself and asks the kind of each leaf,
found with :func:`segment_rules.kinds.kind_for`, for the rest.

Every method but ``parse`` and ``references`` is abstract, so a kind that leaves one out
cannot be instantiated (mypy says so too) rather than failing later in explain.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from segment_rules.sql import Predicate
from segment_rules.tables import TableReader

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = ["Condition", "ConditionKind", "FieldUse", "Needs", "Stream", "is_missing"]

N = TypeVar("N")

#: The streams a pull can fetch (``sync.pull`` names them the same way).
Stream = Literal["contacts", "companies", "purchases", "activities"]


class Condition(Protocol):
    """Any node of a rule tree: a boolean :class:`~segment_rules.schema.Group` or a leaf
    built by a registered kind. Every node knows where in the configuration it was written."""

    @property
    def path(self) -> str: ...


@dataclass(frozen=True)
class FieldUse:
    """A stored column a leaf reads, and the name the rule gave it (for error messages)."""

    stream: Literal["contacts", "companies", "events"]
    column: str
    name: str
    path: str


@dataclass(frozen=True)
class Needs:
    """What one leaf reads: its stored columns and the streams the pull must fetch for it."""

    fields: tuple[FieldUse, ...] = ()
    streams: frozenset[Stream] = frozenset()


def is_missing(raw: object) -> bool:
    """A value the contact does not have: NULL, or NaN from an aggregate over nothing."""
    return raw is None or (isinstance(raw, float) and math.isnan(raw))


class ConditionKind(ABC, Generic[N]):
    """One kind of leaf condition; subclass it once per kind and register an instance.

    ``N`` is the kind's frozen node dataclass; it must have a ``path`` field (compare=False)
    holding the key path it was parsed from.
    """

    #: The registry key (``KINDS[name]``).
    name: str
    #: The node class this kind builds; ``kind_for`` finds the kind by it.
    node: type[N]
    #: Keys that make a table this kind of condition. Kinds are tried in registry order,
    #: before the boolean groups (``all``/``any``/``not``).
    markers: tuple[str, ...] = ()
    #: Keys that point to this kind when no kind claims the table and it is no group, so
    #: that ``{ op = "eq" }`` is reported as a property condition without a field.
    hints: tuple[str, ...] = ()
    #: Every key the kind's table may hold; an unrecognised table is checked against the
    #: keys of all kinds, for the did-you-mean.
    keys: tuple[str, ...] = ()

    def claims(self, table: Mapping[str, Any]) -> bool:
        """Is this table this kind of condition? Override to decide by values too (a kind
        for ``field = "trait.<name>"`` would, and be registered before ``property``)."""
        return any(key in table for key in self.markers)

    def parse(self, reader: TableReader, table: Mapping[str, Any], path: str) -> N | None:
        """The node for a claimed table, or None with every problem added to ``reader``.

        Kinds without markers are built by generators, not written, and keep this default.
        """
        raise TypeError(f"{self.name} conditions are made by generators, not written in TOML")

    @abstractmethod
    def predicate(self, node: N, compiler: Compiler) -> Predicate:
        """A never-NULL boolean SQL expression: does the contact meet the condition?"""

    @abstractmethod
    def value(self, node: N, compiler: Compiler) -> Predicate:
        """The value the condition tests, as ``segsync explain`` shows it (may be NULL)."""

    @abstractmethod
    def describe(self, node: N) -> str:
        """The condition in plain words."""

    @abstractmethod
    def shown(self, node: N, raw: object) -> str:
        """``value``'s result for one contact, as explain prints it (``raw`` may be missing)."""

    @abstractmethod
    def needs(self, node: N) -> Needs:
        """The columns and streams the condition reads (what ``requirements`` collects)."""

    def references(self, node: N) -> tuple[str, ...]:
        """Keys of the segments the condition depends on (checked to exist, without cycles)."""
        return ()
