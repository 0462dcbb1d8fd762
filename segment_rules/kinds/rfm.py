"""RFM conditions: recency, frequency and monetary scores (1-5) within a purchase window.

Made by the ``kind = "rfm"`` generator (:func:`segment_rules.generators.rfm_segments`),
never written as a condition table, so this kind has no markers and no parser. Scores are
quintiles among everyone who bought in the window, one table per window the rules use
(:class:`RfmScores`), which is why it reads every contact's purchases even when explain
asks about one contact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segment_rules.kinds.base import ConditionKind, Needs, is_missing
from segment_rules.sql import Predicate, Sources

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = ["KIND", "RfmCondition", "RfmScores"]


@dataclass(frozen=True)
class RfmCondition:
    """Recency/frequency/monetary quintile scores (1-5) within a purchase window."""

    window_days: int
    recency: tuple[int, int]
    frequency: tuple[int, int]
    monetary: tuple[int, int]
    path: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True)
class RfmScores:
    """Scores 1-5 per buyer in one window; ties share the lower score (``rank``), so
    one-time buyers are F=1."""

    window_days: int

    @property
    def alias(self) -> str:
        return f"r{self.window_days}"

    @property
    def table(self) -> str:
        return f"segment_{self.alias}"

    def select(self, sources: Sources, now: dt.datetime) -> Predicate:
        start = now - dt.timedelta(days=self.window_days)

        def score(column: str) -> str:
            return (f"least(5, 1 + floor(5 * (rank() OVER (ORDER BY {column}) - 1) / buyers))"
                    "::INTEGER")

        sql = (
            f"WITH p AS (SELECT _cid AS cid, max(ts) AS last_purchase, count(*) AS purchases, "
            f"sum(coalesce(amount, 0)) AS revenue FROM {sources.all_events} "
            "WHERE type = 'purchase' AND ts BETWEEN ? AND ? GROUP BY ALL), "
            "n AS (SELECT count(*) AS buyers FROM p) "
            f"SELECT cid, last_purchase, purchases, revenue, {score('last_purchase')} AS r, "
            f"{score('purchases')} AS f, {score('revenue')} AS m FROM p, n"
        )
        return Predicate(sql, (start, now))


def _scores(node: RfmCondition, compiler: Compiler) -> str:
    """The alias of the node's window table, asking the compiler for it on first use."""
    return compiler.join(RfmScores(node.window_days)).alias


class RfmKind(ConditionKind[RfmCondition]):
    name = "rfm"
    node = RfmCondition

    def predicate(self, node: RfmCondition, compiler: Compiler) -> Predicate:
        alias = _scores(node, compiler)
        checks = " AND ".join(f"{alias}.{score} BETWEEN ? AND ?" for score in ("r", "f", "m"))
        scores = (*node.recency, *node.frequency, *node.monetary)
        return Predicate(f"coalesce({checks}, FALSE)", scores)

    def value(self, node: RfmCondition, compiler: Compiler) -> Predicate:
        alias = _scores(node, compiler)
        return Predicate(f"({alias}.r || '-' || {alias}.f || '-' || {alias}.m)")

    def describe(self, node: RfmCondition) -> str:
        r, f, m = node.recency, node.frequency, node.monetary
        return (f"RFM scores over the last {node.window_days} days: "
                f"R {r[0]}-{r[1]}, F {f[0]}-{f[1]}, M {m[0]}-{m[1]}")

    def shown(self, node: RfmCondition, raw: object) -> str:
        if is_missing(raw):
            return "no purchases in the window"
        r, f, m = str(raw).split("-")
        return f"R{r} F{f} M{m}"

    def needs(self, node: RfmCondition) -> Needs:
        return Needs(streams=frozenset({"purchases"}))


KIND = RfmKind()
