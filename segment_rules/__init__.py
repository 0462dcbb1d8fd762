"""segsync's segment rule language: parse TOML rules, validate them, evaluate them in SQL.

This package depends on nothing else in segsync, so rules can be checked and tested on
their own. ``parse_segments`` turns ``[[segment]]`` tables into a validated rule tree,
``evaluate`` computes memberships over a DuckDB store in one pass.
"""

from segment_rules.errors import Problem, RuleError
from segment_rules.evaluate import Tables, evaluate, referenced_fields
from segment_rules.parse import parse_segments
from segment_rules.schema import Segment

__all__ = [
    "Problem",
    "RuleError",
    "Segment",
    "Tables",
    "evaluate",
    "parse_segments",
    "referenced_fields",
]
