"""Problems found in configuration and rules, collected rather than raised one by one.

An admin editing a TOML file wants every mistake listed in one go, each with the exact
place (``segment[lapsed].all[1].op``) and, for typos, the nearest valid spelling. Code
that reads configuration therefore appends :class:`Problem` objects to a list and raises
one :class:`RuleError` at the end.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Problem", "RuleError", "did_you_mean"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, located by a key path."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.hint})" if self.hint else text


class RuleError(Exception):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: Iterable[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        count = len(self.problems)
        head = f"{where}{count} problem{'s' if count != 1 else ''} in the configuration"
        return head + "".join(f"\n  - {p}" for p in self.problems)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A click-style hint naming the closest valid spelling, or an empty string."""
    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else ""
