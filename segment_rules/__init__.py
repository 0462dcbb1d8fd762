"""segsync's segment rule language: parse TOML rules, validate them, evaluate them in SQL.

This package depends on nothing else in segsync, so rules can be checked and tested on
their own. ``parse_rules`` turns ``[[segment]]`` tables into validated segments (generators
expanded), ``evaluate`` computes memberships over a DuckDB store in one pass and
``explain`` says why one contact is or is not in each segment.

Leaf conditions (property, activity, near, segment reference, RFM) are kinds in a
registry, one module each: ``segment_rules.kinds`` says how to add one.
"""

from segment_rules.errors import Problem, RuleError
from segment_rules.evaluate import (
    Requirements,
    Tables,
    evaluate,
    requirements,
    top_values,
)
from segment_rules.parse import Rules, parse_rules, parse_segments
from segment_rules.schema import PerValueGenerator, Segment

__segsync_package__ = True

__all__ = [
    "PerValueGenerator",
    "Problem",
    "Requirements",
    "RuleError",
    "Rules",
    "Segment",
    "Tables",
    "evaluate",
    "parse_rules",
    "parse_segments",
    "requirements",
    "top_values",
]
