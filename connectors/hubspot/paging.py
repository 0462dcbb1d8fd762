"""Paginators: read a response, say what to fetch next, never send anything.

* :class:`AfterCursor` -- HubSpot's ``paging.next.after`` (object lists, list memberships,
  associations). A cursor seen twice means the API is looping: stop with a clear error
  instead of fetching forever.
* :class:`IdWindow` -- the search recipe that never meets the 10,000-result wall (fact
  sheet §5): every query filters ``hs_object_id > last id`` and sorts by ``hs_object_id``
  ascending, so paging is by re-anchoring on the last id seen, not by a growing ``after``.
  Whether another page exists is decided by ``paging.next.after`` alone (fact sheet
  2026-12 update, 8): HubSpot may answer a short page -- even an empty one -- while more
  records match, so neither the page length nor ``total`` can end a pull. An empty page
  that still carries ``paging.next`` is followed with its ``after`` on the same anchor
  (there is no id to re-anchor on). A request (anchor, after) asked twice means HubSpot
  is looping, and a cursor at or past 10,000 would meet the wall: both stop with a clear
  :class:`~connectors.errors.CrmDataError`. The window also checks that the server
  honoured the sort: a page that is not strictly ascending (or not beyond the anchor)
  raises :class:`UnsortedPage`, which the caller answers by switching the sort syntax
  once (the object vs string ``sorts`` question is unverified, pitfall 3).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import CrmDataError

__all__ = ["SEARCH_WALL", "AfterCursor", "IdWindow", "UnsortedPage", "id_key", "next_after"]

#: HubSpot answers 400 to a search whose ``after`` reaches this many results (fact sheet §5).
SEARCH_WALL = 10_000


class UnsortedPage(CrmDataError):
    """A search page was not in ascending id order: the sort was ignored."""


def id_key(object_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order (HubSpot ids are decimal strings), anything else after."""
    return (0, int(object_id), "") if object_id.isdigit() else (1, 0, object_id)


def next_after(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    if not isinstance(paging, Mapping):
        return None
    nxt = paging.get("next")
    if not isinstance(nxt, Mapping):
        return None
    after = nxt.get("after")
    return str(after) if after not in (None, "") else None


class AfterCursor:
    """``after`` cursor paging with loop detection."""

    def __init__(self, what: str, start: str | None = None) -> None:
        self.what = what
        self.after = start
        self.pages = 0
        self._seen: set[str] = set()

    def advance(self, body: Mapping[str, Any]) -> bool:
        """Read one page's body; True when another page should be fetched."""
        self.pages += 1
        after = next_after(body)
        if after is None:
            self.after = None
            return False
        if after in self._seen:
            raise CrmDataError(
                f"HubSpot returned the same paging cursor twice while reading {self.what}; "
                "stopped to avoid an endless loop"
            )
        self._seen.add(after)
        self.after = after
        return True


class IdWindow:
    """Re-anchored search paging: ``hs_object_id > last_id``, ascending, ``after`` per anchor.

    ``last_id`` is the anchor of the next request (None: no anchor yet) and ``after`` the
    cursor to send with it: "0" after every re-anchoring, HubSpot's own cursor only after
    an empty page that said more exist.
    """

    def __init__(self, what: str, last_id: str | None = None) -> None:
        self.what = what
        self.last_id = last_id
        self.after = "0"
        self.pages = 0
        self._asked: set[tuple[str | None, str]] = {(last_id, "0")}

    def advance(self, results: Sequence[Mapping[str, Any]], next_cursor: str | None) -> bool:
        """Check one page and move the anchor; True when another page should be fetched.

        ``next_cursor`` is the page's ``paging.next.after`` (:func:`next_after`); its
        absence, and nothing else, ends the pull.
        """
        ids = [str(r.get("id", "")) for r in results]
        if any(not i for i in ids):
            raise CrmDataError(f"HubSpot returned a {self.what} record without an id")
        keys = [id_key(i) for i in ids]
        floor = id_key(self.last_id) if self.last_id is not None else None
        ascending = all(a < b for a, b in itertools.pairwise(keys))
        if not ascending or (floor is not None and keys and keys[0] <= floor):
            raise UnsortedPage(
                f"HubSpot search for {self.what} ignored the hs_object_id sort "
                f"(ids {', '.join(ids[:5])}...)"
            )
        self.pages += 1
        if next_cursor is None:
            return False
        if ids:
            self.last_id, self.after = ids[-1], "0"
        else:
            self.after = next_cursor
        anchor = f"hs_object_id > {self.last_id}" if self.last_id is not None else "no anchor"
        if (self.last_id, self.after) in self._asked:
            raise CrmDataError(
                f"HubSpot search for {self.what} answered an empty page whose paging cursor "
                f"({self.after!r}, {anchor}) repeats a request already made; stopped to "
                "avoid an endless loop"
            )
        if self.after.isdigit() and int(self.after) >= SEARCH_WALL:
            raise CrmDataError(
                f"HubSpot search for {self.what} kept answering empty pages until its cursor "
                f"reached {self.after} ({anchor}); HubSpot refuses to page past {SEARCH_WALL:,} "
                "results, so the pull stopped instead of failing there"
            )
        self._asked.add((self.last_id, self.after))
        return True
