"""Pull: move records changed since the last watermark from the CRM into the store.

Each stream (companies, contacts, purchases, activities) has its own watermark. Only the
fields the rules read are requested and only the streams they need are pulled; when the
rules start reading a new field or stream, it is pulled in full once so old records get
the value too, and data no rule reads any more is dropped from the store.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from connectors.base import STREAMS, Connector, Page, PullRequest, Stream
from connectors.errors import CrmDataError
from segment_rules import Requirements
from sync.errors import SafetyGuardTripped
from sync.failpoints import checkpoint
from sync.store import Store

__all__ = ["PullResult", "needed_streams", "pull_all", "stream_fields"]

log = logging.getLogger("segsync.pull")

#: Pages are buffered up to this many rows per transaction: fewer, larger commits.
COMMIT_ROWS = 20_000
#: Companies first, so a contact never points at a company the store has not seen.
PULL_ORDER: tuple[Stream, ...] = ("companies", "contacts", "purchases", "activities")
ALWAYS_PULLED = frozenset({"email"})

Progress = Callable[[str, int], None]


@dataclass
class PullResult:
    records: dict[str, int]
    full: dict[str, bool]

    @property
    def total(self) -> int:
        return sum(self.records.values())


def stream_fields(needs: Requirements) -> dict[Stream, frozenset[str]]:
    return {
        "contacts": needs.contact_fields | ALWAYS_PULLED,
        "companies": needs.company_fields,
        "purchases": needs.event_fields,
        "activities": frozenset(),
    }


def needed_streams(needs: Requirements) -> set[Stream]:
    wanted: set[Stream] = {"contacts"}
    if needs.companies:
        wanted.add("companies")
    if needs.purchases:
        wanted.add("purchases")
    if needs.activities:
        wanted.add("activities")
    return wanted


def _batched(pages: Iterable[Page]) -> Iterator[Page]:
    """Merge runs of plain record pages; pages carrying deletions stay on their own."""
    buffer: list[Page] = []
    rows = 0
    for page in pages:
        plain = not page.deleted and not page.merged and page.present_ids is None
        if buffer and (not plain or rows + len(page.records) > COMMIT_ROWS):
            yield _combine(buffer)
            buffer, rows = [], 0
        if plain:
            buffer.append(page)
            rows += len(page.records)
        else:
            yield page
    if buffer:
        yield _combine(buffer)


def _combine(pages: Sequence[Page]) -> Page:
    if len(pages) == 1:
        return pages[0]
    frames = [p.records for p in pages if not p.records.empty]
    records = pd.concat(frames, ignore_index=True) if frames else pages[-1].records
    marks = [p.watermark for p in pages if p.watermark is not None]
    return Page(records, marks[-1] if marks else None)


def pull_all(
    store: Store,
    connector: Connector,
    needs: Requirements,
    *,
    now: dt.datetime,
    lookback_days: int,
    full: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    fields = stream_fields(needs)
    wanted = needed_streams(needs)
    events_since = now - dt.timedelta(days=lookback_days)
    result = PullResult({}, {})
    for stream in PULL_ORDER:
        if stream not in wanted:
            store.clear_stream(stream)
            continue
        since, had_fields = store.watermark(stream)
        refetch = full or since is None or not fields[stream] <= had_fields
        if stream in ("contacts", "companies"):
            store.keep_properties(stream, fields[stream])
        elif stream == "purchases":  # attributes such as category, on the events table
            store.keep_properties("events", fields[stream])
        request = PullRequest(stream, None if refetch else since, fields[stream], events_since)
        count = 0
        for page in _batched(connector.pull(request)):
            if stream in ("contacts", "companies"):
                _check_not_emptied(store, stream, page, force)
            _check_attributes(stream, page, fields[stream])
            checkpoint(f"pull.{stream}.before-page")
            store.write_page(stream, page, fields[stream])
            checkpoint(f"pull.{stream}.page")
            count += len(page.records)
            if progress:
                progress(stream, count)
        if stream in ("purchases", "activities"):
            store.drop_events_before(stream, events_since)
        result.records[stream] = count
        result.full[stream] = refetch
        log.info("pulled %s: %d changed record(s)%s", stream, count, " (full)" if refetch else "")
    return result


def _check_attributes(stream: Stream, page: Page, fields: frozenset[str]) -> None:
    """A connector that cannot supply an event attribute the rules filter on must say so,
    not leave it empty (every such rule would silently match nobody)."""
    if stream != "purchases" or page.records.empty:
        return
    missing = sorted(fields - set(page.records.columns))
    if missing:
        raise CrmDataError(f"the CRM connector supplies no purchase attribute "
                           f"{', '.join(missing)}; map it in [crm.purchase_fields] or remove "
                           "the rule's where / trait's of")


def _check_not_emptied(store: Store, stream: Stream, page: Page, force: bool) -> None:
    """A CRM that suddenly lists no contacts (or no companies) is far likelier a permission
    change than real. Companies are checked too: they are pulled first, and emptying them
    would silently drop every company-based segment's members on the following runs."""
    if force or page.present_ids is None or page.present_ids:
        return
    held = store.count(stream)
    if held:
        raise SafetyGuardTripped(
            f"the CRM returned no {stream} at all, but the store holds {held}; nothing was "
            "changed. Check the connection's permissions, then rerun (use --force only if "
            "the CRM really is empty)"
        )


assert set(PULL_ORDER) == set(STREAMS)
