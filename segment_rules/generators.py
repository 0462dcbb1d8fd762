"""Generators: one TOML block that yields several segments, each written back on its own.

* ``nps``: promoters (9-10), passives (7-8), detractors (0-6) from a score field;
* ``rfm``: recency/frequency/monetary scores 1-5 from purchases, mapped to named tiers
  (first matching tier wins, see :data:`RFM_TIERS`);
* ``split``: an exclusive priority split: each contact lands in the first child it matches;
* ``per_value``: one segment per value of a field (top N) plus "other", expanded once the
  data is known (:func:`expand_per_value`);
* ``holdout_percent`` on any segment: a deterministic control group kept out of the
  written list and recorded as its own ``<key>-control`` segment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace

from segment_rules.schema import (
    Condition,
    Group,
    PerValueGenerator,
    PropertyCondition,
    RfmCondition,
    Segment,
)

__all__ = [
    "NPS_BUCKETS",
    "RFM_TIERS",
    "exclusive",
    "expand_per_value",
    "holdout_key",
    "nps_segments",
    "rfm_segments",
    "with_holdout",
]

#: (suffix, display name, condition on the score field)
NPS_BUCKETS: tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...] = (
    ("promoters", "promoters", (("gte", 9), ("lte", 10))),
    ("passives", "passives", (("gte", 7), ("lt", 9))),
    ("detractors", "detractors", (("gte", 0), ("lt", 7))),
)

#: (suffix, display name, recency range, frequency range, monetary range), in priority order.
RFM_TIERS: tuple[tuple[str, str, tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ("champions", "Champions", (4, 5), (4, 5), (1, 5)),
    ("cannot-lose", "Cannot lose them", (1, 2), (4, 5), (4, 5)),
    ("loyal", "Loyal", (3, 5), (3, 5), (1, 5)),
    ("at-risk", "At risk", (1, 2), (3, 5), (1, 5)),
    ("new", "New", (5, 5), (1, 1), (1, 5)),
    ("potential-loyalist", "Potential loyalist", (3, 5), (1, 2), (1, 5)),
    ("hibernating", "Hibernating", (2, 2), (1, 2), (1, 5)),
    ("lost", "Lost", (1, 1), (1, 2), (1, 5)),
)
RFM_TIER_NAMES = tuple(t[0] for t in RFM_TIERS)


def exclusive(rules: Sequence[Condition]) -> list[Condition]:
    """Rule i becomes ``rule_i and not (rule_1 or ... or rule_{i-1})``: first match wins."""
    out: list[Condition] = []
    for index, rule in enumerate(rules):
        if index == 0:
            out.append(rule)
        else:
            earlier = Group("not", (Group("any", tuple(rules[:index])),))
            out.append(Group("all", (rule, earlier)))
    return out


def nps_segments(base: Segment, field: str) -> list[Segment]:
    segments = []
    for suffix, label, bounds in NPS_BUCKETS:
        rule = Group("all", tuple(PropertyCondition(field, op, value, base.path)
                                  for op, value in bounds))
        segments.append(replace(base, key=f"{base.key}-{suffix}", name=f"{base.name} {label}",
                                rule=rule, generator=base.key, generator_kind="nps"))
    return segments


def rfm_segments(base: Segment, window_days: int, tiers: Sequence[str]) -> list[Segment]:
    rules = exclusive([RfmCondition(window_days, r, f, m, base.path)
                       for _, _, r, f, m in RFM_TIERS])
    return [
        replace(base, key=f"{base.key}-{suffix}", name=f"{base.name}: {label}", rule=rule,
                generator=base.key, generator_kind="rfm")
        for (suffix, label, *_), rule in zip(RFM_TIERS, rules, strict=True)
        if suffix in tiers
    ]


def holdout_key(segment_key: str) -> str:
    return f"{segment_key}-control"


def with_holdout(segment: Segment, write_control: bool) -> list[Segment]:
    """The treated segment and its control group, or the segment alone without a holdout."""
    if segment.holdout is None:
        return [segment]
    control = replace(
        segment, key=holdout_key(segment.key), name=f"{segment.name} (control)",
        control_of=segment.key, store_only=not write_control, mode="mirror",
    )
    return [segment, control]


def _slug(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:40]
    digest = hashlib.blake2b(value.encode(), digest_size=3).hexdigest()
    return slug if slug and slug == value else f"{slug}-{digest}".lstrip("-")


def expand_per_value(generator: PerValueGenerator, top_values: Sequence[str]) -> list[Segment]:
    """Segments for the most common values (given, most common first) and "other"."""
    field = generator.field.field
    segments = [
        Segment(
            key=f"{generator.key}-{_slug(value)}", name=f"{generator.name}: {value}",
            rule=PropertyCondition(field, "eq", value, generator.path), mode=generator.mode,
            exclude_opted_out=generator.exclude_opted_out, generator=generator.key,
            generator_kind="per_value", path=generator.path,
        )
        for value in top_values
    ]
    if generator.other:
        rest: list[Condition] = [PropertyCondition(field, "is_set", None, generator.path)]
        if top_values:
            rest.append(PropertyCondition(field, "not_in", tuple(top_values), generator.path))
        segments.append(Segment(
            key=f"{generator.key}-other", name=f"{generator.name}: other",
            rule=Group("all", tuple(rest)), mode=generator.mode,
            exclude_opted_out=generator.exclude_opted_out, generator=generator.key,
            generator_kind="per_value", path=generator.path,
        ))
    return segments


