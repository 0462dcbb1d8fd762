"""An in-memory connector implementing ``connectors.base.Connector`` for engine tests.

Records are plain dicts; a test edits them between runs the way a CRM user would. Every
write call is logged, and failures can be scripted: a whole batch raising after N calls
(a crash mid-apply), a batch applied whose answer is then lost (``lose_after_calls``),
single ids rejected (per-record failures), applied but not proven (``unproven``), or not
existing (``missing``). ``merge`` folds one contact into another the way a CRM merge
does, moving its list memberships or dropping them. :class:`ReadingFakeConnector` adds
the optional live membership read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pandas as pd

from connectors.base import (
    Batch,
    BatchResult,
    Capabilities,
    MembershipRead,
    Page,
    PullRequest,
    TargetRef,
    TargetSpec,
)
from connectors.errors import RetriableAPIError, TargetConflict
from connectors.frames import EVENT_COLUMNS, empty_frame

BASE_TIME = dt.datetime(2026, 1, 1)


class Crash(RuntimeError):
    """Stands in for the process dying mid-apply."""


class LostAnswer(RetriableAPIError):
    """The CRM applied the write, but its answer never arrived (retries exhausted)."""


@dataclass
class FakeConnector:
    contacts: dict[str, dict[str, object]] = field(default_factory=dict)
    companies: dict[str, dict[str, object]] = field(default_factory=dict)
    events: list[dict[str, object]] = field(default_factory=list)
    max_batch: int = 3
    lists: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    crash_after_calls: int | None = None
    reject: dict[str, str] = field(default_factory=dict)
    clock: int = 0
    writes_lists: bool = True
    writes_field: bool = False
    max_field_batch: int = 2
    field_options: list[str] = field(default_factory=list)
    field_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Write calls after this many apply/field calls are applied, then their answer is lost.
    lose_after_calls: int | None = None
    lose_calls: int = 1
    #: Ids applied as asked but reported unknown (the answer did not prove them).
    unproven: set[str] = field(default_factory=set)
    #: Ids the CRM does not know: adds and field writes of them report ``gone``.
    missing: set[str] = field(default_factory=set)
    #: Merges (loser -> survivor) the next contacts pull reports.
    merged: dict[str, str] = field(default_factory=dict)

    # -- test helpers ----------------------------------------------------------------
    def put_contact(self, crm_id: str, **props: object) -> None:
        self.clock += 1
        record = {**self.contacts.get(crm_id, {}), **props}
        record["_modified_at"] = BASE_TIME + dt.timedelta(seconds=self.clock)
        self.contacts[crm_id] = record

    def write_calls(self) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        return [c for c in self.calls if c[0] in ("apply", "create", "rename", "field",
                                                   "field-options")]

    def merge(self, loser: str, survivor: str, *, move_memberships: bool = True) -> None:
        """What a CRM merge does: the loser disappears (its events follow the survivor,
        which is modified), and its list memberships move to the survivor or are dropped."""
        del self.contacts[loser]
        for event in self.events:
            if event["_contact_id"] == loser:
                event["_contact_id"] = survivor
        for members in self.lists.values():
            if loser in members:
                members.discard(loser)
                if move_memberships:
                    members.add(survivor)
        self.merged[loser] = survivor
        self.put_contact(survivor)

    def _write_call(self, kind: str) -> None:
        """Raise ``LostAnswer`` after the write took effect, when so scripted."""
        done = sum(1 for c in self.calls if c[0] in ("apply", "field"))
        start = self.lose_after_calls
        if start is not None and start < done <= start + self.lose_calls:
            raise LostAnswer(f"{kind}: connection reset after the CRM committed")

    # -- Connector -------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return Capabilities(max_batch=self.max_batch, lists=self.writes_lists,
                            field=self.writes_field, max_field_batch=self.max_field_batch,
                            delete_targets=True)

    def check(self) -> list[str]:
        return ["fake CRM reachable"]

    def pull(self, request: PullRequest) -> Iterator[Page]:
        if request.stream == "contacts":
            yield self._object_page(self.contacts, request, contact=True)
        elif request.stream == "companies":
            yield self._object_page(self.companies, request, contact=False)
        else:
            rows = [e for e in self.events if e["stream"] == request.stream]
            frame = pd.DataFrame(
                [{k: v for k, v in e.items() if k != "stream"} for e in rows],
                columns=list(EVENT_COLUMNS),
            )
            yield Page(frame, None, present_ids=frozenset(frame["_crm_id"]))

    def _object_page(
        self, records: dict[str, dict[str, object]], request: PullRequest, contact: bool
    ) -> Page:
        since = dt.datetime.fromisoformat(request.since) if request.since else None
        rows = []
        for crm_id, record in sorted(records.items()):
            if since is not None and record["_modified_at"] < since:  # type: ignore[operator]
                continue
            row: dict[str, object] = {
                "_crm_id": crm_id,
                "_modified_at": record["_modified_at"],
                "_lat": record.get("_lat"),
                "_lon": record.get("_lon"),
            }
            if contact:
                row["_company_id"] = record.get("_company_id")
                row["_opted_out"] = bool(record.get("_opted_out", False))
                row["_kind"] = "contact"
            for name in request.fields:
                value = record.get(name)
                row[name] = None if value is None else str(value)
            rows.append(row)
        frame = pd.DataFrame(rows)
        if frame.empty:
            frame = empty_frame(request.stream, request.fields)
        marks = [r["_modified_at"] for r in records.values()]
        watermark = max(marks).isoformat() if marks else None  # type: ignore[type-var]
        merged = dict(self.merged) if contact else {}
        if contact:
            self.merged.clear()
        return Page(frame, watermark, merged=merged, present_ids=frozenset(records))

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        if current is None:
            clash = [i for i, n in self.names.items() if n == spec.name]
            if clash and not adopt:
                raise TargetConflict(f"a list named {spec.name!r} exists")
            if clash:
                return TargetRef(clash[0], spec.name)
            target_id = f"L{len(self.names) + 1}"
            self.lists[target_id] = set()
            self.names[target_id] = spec.name
            self.calls.append(("create", target_id, (), ()))
            return TargetRef(target_id, spec.name)
        self.names[current.target_id] = spec.name
        self.calls.append(("rename", current.target_id, (), ()))
        return TargetRef(current.target_id, spec.name)

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        applied = sum(1 for c in self.calls if c[0] == "apply")
        if self.crash_after_calls is not None and applied >= self.crash_after_calls:
            raise Crash("process killed")
        self.calls.append(("apply", target.target_id, batch.adds, batch.removes))
        failed = {i: self.reject[i] for i in batch.adds + batch.removes if i in self.reject}
        gone = frozenset(i for i in batch.adds + batch.removes
                         if i in self.missing and i not in failed)
        members = self.lists[target.target_id]
        members |= {i for i in batch.adds if i not in failed and i not in gone}
        members -= {i for i in batch.removes if i not in failed}
        self._write_call("apply")
        unknown = {i: "207 without ids" for i in batch.adds + batch.removes
                   if i in self.unproven and i not in failed}
        return BatchResult(failed=failed, api_calls=1, unknown=unknown, gone=gone)

    def members(self, target: TargetRef) -> Iterator[str]:
        yield from sorted(self.lists[target.target_id])

    def finish(self) -> None:
        self.calls.append(("finish", "", (), ()))

    def ensure_field(self, options) -> None:  # type: ignore[no-untyped-def]
        self.field_options = list(options)
        self.calls.append(("field-options", "", tuple(options), ()))

    def write_field(self, updates) -> BatchResult:  # type: ignore[no-untyped-def]
        self.calls.append(("field", "", tuple(sorted(updates)), ()))
        failed = {i: self.reject[i] for i in updates if i in self.reject}
        gone = frozenset(i for i in updates if i in self.missing and i not in failed)
        for crm_id, names in updates.items():
            if crm_id not in failed and crm_id not in gone:
                assert set(names) <= set(self.field_options), names
                self.field_values[crm_id] = tuple(names)
        self._write_call("field")
        unknown = {i: "207 without ids" for i in updates if i in self.unproven and i not in failed}
        return BatchResult(failed=failed, api_calls=1, unknown=unknown, gone=gone)

    def delete_target(self, target: TargetRef) -> None:
        self.calls.append(("delete", target.target_id, (), ()))
        self.lists.pop(target.target_id, None)
        self.names.pop(target.target_id, None)

    def api_usage(self) -> dict[str, int]:
        return {"apply": sum(1 for c in self.calls if c[0] == "apply")}

    def list_named(self, name: str) -> set[str]:
        (target_id,) = [i for i, n in self.names.items() if n == name]
        return self.lists[target_id]


@dataclass
class ReadingFakeConnector(FakeConnector):
    """The fake with the optional :class:`connectors.base.MembershipReader` capability."""

    max_read_batch: int = 100

    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), read_memberships=True,
                       max_read_batch=self.max_read_batch)

    def read_memberships(self, targets, record_ids) -> MembershipRead:  # type: ignore[no-untyped-def]
        ids = list(record_ids)
        calls = -(-len(ids) // self.max_read_batch)
        for start in range(0, len(ids), self.max_read_batch):
            self.calls.append(("read", "", tuple(ids[start:start + self.max_read_batch]), ()))
        present = frozenset((t.target_id, i) for t in targets for i in ids
                            if i in self.lists.get(t.target_id, set()))
        gone = frozenset(i for i in ids if i in self.missing)
        return MembershipRead(present, frozenset(ids) - gone, gone, api_calls=calls)
