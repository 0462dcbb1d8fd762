"""The local state store: one DuckDB file per CRM portal.

It holds the pulled records (only the fields the rules read), the pull watermarks, the
targets segsync owns, the memberships as last applied, the runs and the change log.
DuckDB was chosen because segments are evaluated by SQL over this very file, in place,
with no load step (see research/compute-bench.md: 1M contacts and 10M activities in
about 2 s).

Invariants the engine relies on:

* a page of records and the watermark that covers it are committed in one transaction;
* ``applied`` changes only when a batch's outcome is recorded, in the same transaction as
  its change-log rows, so a killed run resumes exactly where it stopped;
* a write is recorded as intended (``unknown``, ``field_unknown``) before it is sent, and
  leaves that table only when an answer proves its outcome: a lost answer, a kill between
  send and record, an answer that names no record, or a merge that moved memberships
  inside the CRM all leave the (target, record) pair unknown -- never assumed present or
  absent -- until a later run resolves it;
* the file is created readable by its owner only.

``applied`` holds the last *known* state; a row of ``unknown`` for the same pair
overrides it. So an explicit refusal restores nothing: the pair simply leaves
``unknown`` and ``applied`` still says what it said before the write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from connectors.base import BatchResult, MembershipRead, Page, Stream, TargetRef
from segment_rules.compile import quote_ident
from sync.errors import StoreError

__all__ = ["ENGINE_COLUMNS", "SCHEMA_VERSION", "Store", "TargetRow", "UnknownPair", "contact_key"]

SCHEMA_VERSION = 2

#: Columns the engine owns in each record table; every other column is a CRM property.
ENGINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("_cid", "_crm_id", "_kind", "_modified_at", "_company_id", "_opted_out",
                 "_lat", "_lon"),
    "companies": ("_crm_id", "_modified_at", "_lat", "_lon"),
}
_RECORD_TABLE: dict[Stream, str] = {
    "contacts": "contacts",
    "companies": "companies",
    "purchases": "events",
    "activities": "events",
}

_SCHEMA = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE contacts (
    _cid BIGINT, _crm_id VARCHAR, _kind VARCHAR, _modified_at TIMESTAMP,
    _company_id VARCHAR, _opted_out BOOLEAN, _lat DOUBLE, _lon DOUBLE, email VARCHAR);
CREATE TABLE companies (_crm_id VARCHAR, _modified_at TIMESTAMP, _lat DOUBLE, _lon DOUBLE);
CREATE TABLE events (
    _stream VARCHAR, _crm_id VARCHAR, _contact_id VARCHAR, _cid BIGINT, type VARCHAR,
    ts TIMESTAMP, amount DOUBLE, _modified_at TIMESTAMP);
CREATE TABLE watermarks (
    stream VARCHAR PRIMARY KEY, value VARCHAR, fields VARCHAR, updated_at TIMESTAMP);
CREATE TABLE segments (sid SMALLINT PRIMARY KEY, key VARCHAR UNIQUE);
CREATE TABLE targets (
    segment_key VARCHAR PRIMARY KEY, target_id VARCHAR, name VARCHAR, state VARCHAR,
    created_at TIMESTAMP, updated_at TIMESTAMP);
CREATE TABLE applied (sid SMALLINT, cid BIGINT, crm_id VARCHAR);
CREATE TABLE field_applied (cid BIGINT, crm_id VARCHAR, names VARCHAR);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY, command VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
    status VARCHAR, pulled BIGINT, adds BIGINT, removes BIGINT, failed BIGINT,
    api_calls BIGINT, message VARCHAR, api_usage VARCHAR);
CREATE TABLE segment_runs (
    run_id INTEGER, segment_key VARCHAR, size BIGINT, adds BIGINT, removes BIGINT,
    failed BIGINT, status VARCHAR);
CREATE TABLE changes (
    run_id INTEGER, segment_key VARCHAR, cid BIGINT, crm_id VARCHAR, op VARCHAR,
    result VARCHAR, error VARCHAR, changed_at TIMESTAMP);
"""

#: Schema 2: pairs and field values whose state in the CRM is not known.
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS unknown (
    sid SMALLINT, cid BIGINT, crm_id VARCHAR, op VARCHAR, reason VARCHAR, run_id INTEGER,
    since TIMESTAMP);
CREATE TABLE IF NOT EXISTS field_unknown (
    cid BIGINT, crm_id VARCHAR, reason VARCHAR, run_id INTEGER, since TIMESTAMP);
"""

#: Why a pair is unknown when no answer was recorded for its write.
IN_FLIGHT = "sent, but no answer was recorded (lost answer or interrupted run)"
#: Change-log text for records the CRM says do not exist.
GONE = "the CRM has no such record"


def contact_key(crm_id: str) -> int:
    """The store's integer key for a CRM id: a stable 63-bit hash.

    Integer keys make the joins and group-bys of evaluation fast; deriving them from the
    CRM id (instead of a sequence) means every store, run and machine agrees on them,
    which holdout assignment and events arriving before their contact both rely on.
    """
    digest = hashlib.blake2b(crm_id.encode(), digest_size=8, person=b"segsync-cid").digest()
    return int.from_bytes(digest, "big") >> 1


def contact_keys(crm_ids: Iterable[str]) -> np.ndarray:
    return np.fromiter((contact_key(i) for i in crm_ids), dtype=np.int64)


@dataclass(frozen=True)
class TargetRow:
    """A write-back target as the store knows it; ``state`` is pending until its id is known."""

    segment_key: str
    target_id: str | None
    name: str
    state: str

    @property
    def ref(self) -> TargetRef | None:
        if self.state != "owned" or self.target_id is None:
            return None
        return TargetRef(self.target_id, self.name)


@dataclass(frozen=True)
class UnknownPair:
    """A (segment, record) membership whose state in the CRM is not known, and why."""

    sid: int
    cid: int
    crm_id: str
    op: str
    reason: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Store:
    """A DuckDB store file; open with :meth:`open`, always close (or use as a context)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, memory_limit: str | None = None) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        # DuckDB creates the file and its WAL itself; a tight umask makes both 0600 from
        # the first byte, and the chmod covers files made by older versions.
        previous = os.umask(0o077)
        try:
            conn = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        if memory_limit:
            conn.execute(f"SET memory_limit = '{memory_limit}'")
        store = cls(conn, path)
        store._migrate()
        return store

    @classmethod
    def in_memory(cls) -> Store:
        """A throwaway store for tests and benchmarks."""
        store = cls(duckdb.connect(), Path(":memory:"))
        store._migrate()
        return store

    def close(self) -> None:
        previous = os.umask(0o077)
        try:
            self.conn.close()
        finally:
            os.umask(previous)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        previous = os.umask(0o077)
        self.conn.execute("BEGIN TRANSACTION")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            os.umask(previous)

    def _migrate(self) -> None:
        tables = {row[0] for row in self.conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "meta" not in tables:
            with self.transaction() as conn:
                for statement in filter(str.strip, (_SCHEMA + _SCHEMA_2).split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            return
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer segsync (schema {version}); upgrade segsync"
            )
        if version < 2:
            with self.transaction() as conn:
                for statement in filter(str.strip, _SCHEMA_2.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             [str(SCHEMA_VERSION)])

    # -- records -----------------------------------------------------------------------

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(f"SELECT * FROM {table} LIMIT 0").description or []
        return [row[0] for row in rows]

    def property_columns(self, table: str) -> set[str]:
        return set(self.columns(table)) - set(ENGINE_COLUMNS[table])

    def keep_properties(self, table: str, fields: Iterable[str]) -> None:
        """Add missing property columns and drop unused ones: only fields rules read stay."""
        wanted = set(fields)
        have = self.property_columns(table)
        with self.transaction() as conn:
            for name in sorted(wanted - have):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} VARCHAR")
            for name in sorted(have - wanted):
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {quote_ident(name)}")

    def watermark(self, stream: Stream) -> tuple[str | None, frozenset[str]]:
        row = self.conn.execute(
            "SELECT value, fields FROM watermarks WHERE stream = ?", [stream]
        ).fetchone()
        if row is None:
            return None, frozenset()
        return row[0], frozenset(json.loads(row[1] or "[]"))

    def clear_stream(self, stream: Stream) -> None:
        """Forget a stream no rule reads: its rows and watermark (a later need refetches it)."""
        table = _RECORD_TABLE[stream]
        with self.transaction() as conn:
            conn.execute("DELETE FROM watermarks WHERE stream = ?", [stream])
            if table == "events":
                conn.execute("DELETE FROM events WHERE _stream = ?", [stream])
            elif table == "companies":
                conn.execute("DELETE FROM companies")

    def count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def write_page(self, stream: Stream, page: Page, fields: Iterable[str]) -> None:
        """Upsert a page, apply its deletes/merges and move the watermark, atomically."""
        table = _RECORD_TABLE[stream]
        records = page.records
        with self.transaction() as conn:
            if table == "events":
                self._write_events(conn, stream, records)
            else:
                self._write_objects(conn, table, records)
            self._forget_ids(conn, table, stream, page.deleted)
            if page.merged and table == "contacts":
                self._merge_contacts(conn, page.merged)
            if page.present_ids is not None:
                self._keep_only(conn, table, stream, page.present_ids)
            if page.watermark is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?)",
                    [stream, page.watermark, json.dumps(sorted(fields)), _now()],
                )

    def _write_objects(
        self, conn: duckdb.DuckDBPyConnection, table: str, records: pd.DataFrame
    ) -> None:
        if records.empty:
            return
        frame = records.drop_duplicates("_crm_id", keep="last")
        if table == "contacts":
            frame = frame.assign(_cid=contact_keys(frame["_crm_id"]))
        conn.register("page", frame)
        try:
            conn.execute(f"DELETE FROM {table} WHERE _crm_id IN (SELECT _crm_id FROM page)")
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM page")
            if table == "contacts":
                self._check_keys(conn)
        finally:
            conn.unregister("page")

    def _check_keys(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Two CRM ids hashing to one store key would merge two people: refuse (never seen)."""
        clash = conn.execute(
            "SELECT min(_crm_id), max(_crm_id) FROM contacts WHERE _cid IN (SELECT _cid FROM page) "
            "GROUP BY _cid HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if clash:
            raise StoreError(f"contact ids {clash[0]} and {clash[1]} share a store key")

    def _write_events(
        self, conn: duckdb.DuckDBPyConnection, stream: Stream, records: pd.DataFrame
    ) -> None:
        if records.empty:
            return
        frame = records.drop_duplicates(["_crm_id", "_contact_id"], keep="last")
        frame = frame.assign(_stream=stream, _cid=contact_keys(frame["_contact_id"]))
        conn.register("page", frame)
        try:
            conn.execute(
                "DELETE FROM events WHERE _stream = ? AND _crm_id IN (SELECT _crm_id FROM page)",
                [stream],
            )
            conn.execute("INSERT INTO events BY NAME SELECT * FROM page")
        finally:
            conn.unregister("page")

    def _forget_ids(
        self, conn: duckdb.DuckDBPyConnection, table: str, stream: Stream, ids: Sequence[str]
    ) -> None:
        if not ids:
            return
        gone = pd.DataFrame({"id": list(ids)})
        conn.register("gone", gone)
        try:
            if table == "events":
                conn.execute(
                    "DELETE FROM events WHERE _stream = ? AND _crm_id IN (SELECT id FROM gone)",
                    [stream],
                )
                return
            conn.execute(f"DELETE FROM {table} WHERE _crm_id IN (SELECT id FROM gone)")
            if table == "contacts":
                conn.execute("DELETE FROM events WHERE _contact_id IN (SELECT id FROM gone)")
        finally:
            conn.unregister("gone")

    def _merge_contacts(self, conn: duckdb.DuckDBPyConnection, merged: Mapping[str, str]) -> None:
        """Fold merged-away contacts into their survivors: drop the row, move the events.

        A merge (or a Salesforce lead conversion) moves memberships inside the CRM: the
        loser is no record any more, and what became of its list/campaign memberships
        (moved to the survivor, dropped as duplicates) is the CRM's business. So the
        loser's memberships and field value are forgotten and the survivor's, in every
        owned target, become unknown until a later run reads them. Only losers the store
        knows count: HubSpot lists every id ever merged into a contact on each read of it.
        """
        losers = list(merged)
        folded = pd.DataFrame({
            "loser": losers,
            "loser_cid": contact_keys(losers),
            "survivor": [merged[i] for i in losers],
            "survivor_cid": contact_keys(merged[i] for i in losers),
        })
        conn.register("folded", folded)
        try:
            conn.execute(
                "CREATE OR REPLACE TEMP TABLE moved AS SELECT DISTINCT survivor, survivor_cid, "
                "loser FROM folded f WHERE f.loser_cid IN (SELECT _cid FROM contacts) "
                "OR f.loser_cid IN (SELECT cid FROM applied) "
                "OR f.loser_cid IN (SELECT cid FROM unknown) "
                "OR f.loser_cid IN (SELECT cid FROM field_applied) "
                "OR f.loser_cid IN (SELECT cid FROM field_unknown)"
            )
            conn.execute("DELETE FROM contacts WHERE _crm_id IN (SELECT loser FROM folded)")
            conn.execute(
                "UPDATE events SET _contact_id = f.survivor, _cid = f.survivor_cid "
                "FROM folded f WHERE events._contact_id = f.loser"
            )
            for table in ("applied", "unknown", "field_applied", "field_unknown"):
                conn.execute(f"DELETE FROM {table} WHERE cid IN (SELECT loser_cid FROM folded)")
            now = _now()
            conn.execute(
                "INSERT INTO unknown SELECT t.sid, m.survivor_cid, m.survivor, 'moved', "
                "'merged with ' || m.loser || ': the CRM may have moved its memberships', "
                "NULL, ? FROM (SELECT survivor, survivor_cid, min(loser) AS loser FROM moved "
                "GROUP BY ALL) m CROSS JOIN (SELECT s.sid FROM targets t JOIN segments s "
                "ON s.key = t.segment_key WHERE t.state = 'owned') t "
                "WHERE NOT EXISTS (SELECT 1 FROM unknown u WHERE u.sid = t.sid "
                "AND u.cid = m.survivor_cid)", [now])
            conn.execute(
                "INSERT INTO field_unknown SELECT m.survivor_cid, m.survivor, "
                "'merged: the CRM may have combined the field values', NULL, ? "
                "FROM (SELECT DISTINCT survivor, survivor_cid FROM moved) m "
                "WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'field_options') "
                "AND m.survivor_cid NOT IN (SELECT cid FROM field_unknown)", [now])
        finally:
            conn.unregister("folded")

    def _keep_only(
        self, conn: duckdb.DuckDBPyConnection, table: str, stream: Stream, ids: frozenset[str]
    ) -> None:
        present = pd.DataFrame({"id": sorted(ids)}, dtype=object)
        conn.register("present", present)
        try:
            scope = "_stream = ? AND " if table == "events" else ""
            params = [stream] if table == "events" else []
            conn.execute(
                f"DELETE FROM {table} WHERE {scope}_crm_id NOT IN (SELECT id FROM present)",
                params,
            )
            if table == "contacts":
                conn.execute("DELETE FROM events WHERE _contact_id NOT IN (SELECT id FROM present)")
        finally:
            conn.unregister("present")

    def drop_events_before(self, stream: Stream, cutoff: dt.datetime) -> None:
        """Keep the store bounded: events older than the look-back window are never read."""
        self.conn.execute("DELETE FROM events WHERE _stream = ? AND ts < ?", [stream, cutoff])

    # -- segments and targets ------------------------------------------------------------

    def segment_ids(self, keys: Iterable[str]) -> dict[str, int]:
        """Stable small ids for segment keys, assigned on first sight."""
        wanted = list(dict.fromkeys(keys))
        known = dict(self.conn.execute("SELECT key, sid FROM segments").fetchall())
        missing = [k for k in wanted if k not in known]
        if missing:
            next_id = max(known.values(), default=0) + 1
            with self.transaction() as conn:
                for offset, key in enumerate(missing):
                    conn.execute("INSERT INTO segments VALUES (?, ?)", [next_id + offset, key])
                    known[key] = next_id + offset
        return {k: int(known[k]) for k in wanted}

    def targets(self) -> dict[str, TargetRow]:
        rows = self.conn.execute(
            "SELECT segment_key, target_id, name, state FROM targets ORDER BY segment_key"
        ).fetchall()
        return {r[0]: TargetRow(r[0], r[1], r[2], r[3]) for r in rows}

    def mark_target_pending(self, key: str, name: str) -> None:
        """Record the intent to create a target before asking the CRM to create it."""
        now = _now()
        self.conn.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, NULL, ?, 'pending', ?, ?)",
            [key, name, now, now],
        )

    def forget_pending_target(self, key: str) -> None:
        self.conn.execute(
            "DELETE FROM targets WHERE segment_key = ? AND state = 'pending'", [key]
        )

    def record_target(self, key: str, ref: TargetRef) -> None:
        now = _now()
        self.conn.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, ?, ?, 'owned', "
            "coalesce((SELECT created_at FROM targets WHERE segment_key = ?), ?), ?)",
            [key, ref.target_id, ref.name, key, now, now],
        )

    # -- memberships, runs and the change log ---------------------------------------------

    def applied_sizes(self) -> dict[int, int]:
        return {int(s): int(n) for s, n in self.conn.execute(
            "SELECT sid, count(*) FROM applied GROUP BY sid").fetchall()}

    def intend_batch(
        self, run_id: int, sid: int, adds: Sequence[str], removes: Sequence[str]
    ) -> frozenset[str]:
        """Record a batch as sent before sending it: its pairs become unknown.

        Returns the ids that were not unknown already; an explicit refusal of one of
        those restores its known state, while an already unknown pair stays unknown.
        """
        frame = _pairs_frame(adds, removes)
        with self.transaction() as conn:
            conn.register("batch", frame)
            try:
                fresh = conn.execute(
                    "SELECT crm_id FROM batch WHERE cid NOT IN "
                    "(SELECT cid FROM unknown WHERE sid = ?)", [sid]).fetchall()
                conn.execute(
                    "INSERT INTO unknown SELECT ?, cid, crm_id, op, ?, ?, ? FROM batch "
                    "WHERE cid NOT IN (SELECT cid FROM unknown WHERE sid = ?)",
                    [sid, IN_FLIGHT, run_id, _now(), sid])
            finally:
                conn.unregister("batch")
        return frozenset(str(r[0]) for r in fresh)

    def record_batch(
        self,
        run_id: int,
        segment_key: str,
        sid: int,
        adds: Sequence[str],
        removes: Sequence[str],
        outcome: BatchResult,
        fresh: frozenset[str] = frozenset(),
    ) -> None:
        """Record what one batch's answers proved: memberships, the unknown overlay and
        change-log rows, in one transaction.

        Done adds become present, done removes and gone records absent; unknown ids keep
        (or get) their unknown row with the answer's reason; refused ids leave the
        overlay only if this batch put them there (``fresh``).
        """
        frame = _pairs_frame(adds, removes)
        frame["result"] = pd.Series(
            [_result(i, outcome) for i in frame["crm_id"]], dtype=object)
        frame["error"] = pd.Series(
            [outcome.failed.get(i) or outcome.unknown.get(i)
             or (GONE if i in outcome.gone else None) for i in frame["crm_id"]], dtype=object)
        frame["fresh"] = frame["crm_id"].isin(fresh)
        with self.transaction() as conn:
            conn.register("batch", frame)
            try:
                conn.execute(
                    "DELETE FROM applied WHERE sid = ? AND cid IN "
                    "(SELECT cid FROM batch WHERE result IN ('ok', 'gone'))", [sid])
                conn.execute(
                    "INSERT INTO applied SELECT ?, cid, crm_id FROM batch "
                    "WHERE op = 'add' AND result = 'ok'", [sid])
                conn.execute(
                    "DELETE FROM unknown WHERE sid = ? AND cid IN (SELECT cid FROM batch WHERE "
                    "result IN ('ok', 'gone') OR (result = 'failed' AND fresh))", [sid])
                conn.execute(
                    "UPDATE unknown SET reason = b.error, run_id = ? FROM batch b "
                    "WHERE unknown.sid = ? AND unknown.cid = b.cid AND b.result = 'unknown'",
                    [run_id, sid])
                conn.execute(
                    "INSERT INTO unknown SELECT ?, cid, crm_id, op, error, ?, ? FROM batch b "
                    "WHERE result = 'unknown' AND cid NOT IN "
                    "(SELECT cid FROM unknown WHERE sid = ?)", [sid, run_id, _now(), sid])
                conn.execute(
                    "INSERT INTO changes SELECT ?, ?, cid, crm_id, op, result, error, ? FROM batch",
                    [run_id, segment_key, _now()],
                )
            finally:
                conn.unregister("batch")

    def unknown_pairs(self, sids: Iterable[int] | None = None) -> list[UnknownPair]:
        """Unknown memberships (of ``sids``, or all), oldest reason kept per pair."""
        wanted = list(sids) if sids is not None else None
        if wanted is not None and not wanted:
            return []
        where = f"WHERE sid IN ({', '.join('?' for _ in wanted)})" if wanted else ""
        rows = self.conn.execute(
            f"SELECT sid, cid, crm_id, op, coalesce(reason, '') FROM unknown {where} "
            "ORDER BY sid, crm_id", wanted or []).fetchall()
        return [UnknownPair(int(a), int(b), str(c), str(d), str(e)) for a, b, c, d, e in rows]

    def unknown_counts(self) -> dict[str, int]:
        """Unknown memberships per segment key, and field values under ``"(field)"``."""
        counts = {str(k): int(n) for k, n in self.conn.execute(
            "SELECT s.key, count(*) FROM unknown u JOIN segments s USING (sid) GROUP BY s.key"
        ).fetchall()}
        row = self.conn.execute("SELECT count(*) FROM field_unknown").fetchone()
        if row and row[0]:
            counts["(field)"] = int(row[0])
        return counts

    def record_read(
        self, sids: Mapping[str, int], pairs: Sequence[UnknownPair], read: MembershipRead
    ) -> int:
        """Settle unknown pairs with a live read (``sids``: target id -> segment id).

        A pair of a record the read covers (or says is gone) becomes known present or
        absent and leaves the overlay; the others stay unknown. Returns pairs settled.
        """
        present = {(sids[t], r) for t, r in read.present if t in sids}
        rows = [(p.sid, p.cid, p.crm_id, (p.sid, p.crm_id) in present) for p in pairs
                if p.crm_id in read.known or p.crm_id in read.gone]
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=["sid", "cid", "crm_id", "present"])
        frame["crm_id"] = frame["crm_id"].astype(object)
        with self.transaction() as conn:
            conn.register("settled", frame)
            try:
                for table in ("applied", "unknown"):
                    conn.execute(f"DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM settled s "
                                 "WHERE s.sid = t.sid AND s.cid = t.cid)")
                conn.execute("INSERT INTO applied SELECT sid, cid, crm_id FROM settled "
                             "WHERE present")
            finally:
                conn.unregister("settled")
        return len(rows)

    def replace_applied(self, sid: int, crm_ids: Sequence[str]) -> tuple[int, int]:
        """Make ``applied`` for one segment equal the CRM's live members (``--reconcile``).

        Returns (members the CRM has that segsync had not applied, members it lacks).
        """
        live = pd.DataFrame({"crm_id": pd.Series(list(crm_ids), dtype=object),
                             "cid": contact_keys(crm_ids)})
        with self.transaction() as conn:
            conn.register("live", live)
            try:
                extra, missing = conn.execute(
                    "SELECT (SELECT count(*) FROM live WHERE cid NOT IN "
                    "(SELECT cid FROM applied WHERE sid = ?)), "
                    "(SELECT count(*) FROM applied WHERE sid = ? AND cid NOT IN "
                    "(SELECT cid FROM live))", [sid, sid]).fetchone() or (0, 0)
                conn.execute("DELETE FROM applied WHERE sid = ?", [sid])
                conn.execute("INSERT INTO applied SELECT ?, cid, crm_id FROM live", [sid])
                conn.execute("DELETE FROM unknown WHERE sid = ?", [sid])  # now known
            finally:
                conn.unregister("live")
        return int(extra), int(missing)

    def intend_field(self, run_id: int, crm_ids: Sequence[str]) -> frozenset[str]:
        """Record field writes as sent before sending them (see :meth:`intend_batch`)."""
        frame = pd.DataFrame({"crm_id": pd.Series(list(crm_ids), dtype=object),
                              "cid": contact_keys(crm_ids)})
        with self.transaction() as conn:
            conn.register("batch", frame)
            try:
                fresh = conn.execute("SELECT crm_id FROM batch WHERE cid NOT IN "
                                     "(SELECT cid FROM field_unknown)").fetchall()
                conn.execute("INSERT INTO field_unknown SELECT cid, crm_id, ?, ?, ? FROM batch "
                             "WHERE cid NOT IN (SELECT cid FROM field_unknown)",
                             [IN_FLIGHT, run_id, _now()])
            finally:
                conn.unregister("batch")
        return frozenset(str(r[0]) for r in fresh)

    def record_field_batch(
        self, run_id: int, updates: Mapping[str, str], outcome: BatchResult,
        fresh: frozenset[str] = frozenset(),
    ) -> None:
        """Record written field values (crm id -> ';'-joined names) as the answers proved
        them, with their change rows (outcome rules as in :meth:`record_batch`)."""
        ids = list(updates)
        frame = pd.DataFrame({
            "crm_id": pd.Series(ids, dtype=object),
            "cid": contact_keys(ids),
            "names": pd.Series([updates[i] for i in ids], dtype=object),
            "result": pd.Series([_result(i, outcome) for i in ids], dtype=object),
            "error": pd.Series([outcome.failed.get(i) or outcome.unknown.get(i)
                                or (GONE if i in outcome.gone else None) for i in ids],
                               dtype=object),
            "fresh": pd.Series([i in fresh for i in ids], dtype=bool),
        })
        with self.transaction() as conn:
            conn.register("batch", frame)
            try:
                conn.execute("DELETE FROM field_applied WHERE cid IN "
                             "(SELECT cid FROM batch WHERE result IN ('ok', 'gone'))")
                conn.execute("INSERT INTO field_applied SELECT cid, crm_id, names FROM batch "
                             "WHERE result = 'ok' AND names <> ''")
                conn.execute("DELETE FROM field_unknown WHERE cid IN (SELECT cid FROM batch "
                             "WHERE result IN ('ok', 'gone') OR (result = 'failed' AND fresh))")
                conn.execute("UPDATE field_unknown SET reason = b.error, run_id = ? FROM batch b "
                             "WHERE field_unknown.cid = b.cid AND b.result = 'unknown'", [run_id])
                conn.execute("INSERT INTO field_unknown SELECT cid, crm_id, error, ?, ? "
                             "FROM batch WHERE result = 'unknown' AND cid NOT IN "
                             "(SELECT cid FROM field_unknown)", [run_id, _now()])
                conn.execute(
                    "INSERT INTO changes SELECT ?, '(field)', cid, crm_id, 'set', result, error, ? "
                    "FROM batch", [run_id, _now()])
            finally:
                conn.unregister("batch")

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def start_run(self, command: str) -> int:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = 'interrupted', "
                "message = 'the process stopped before the run finished' "
                "WHERE status = 'running'"
            )
            row = conn.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()
            run_id = int(row[0]) if row else 1
            conn.execute(
                "INSERT INTO runs (run_id, command, started_at, status) VALUES (?, ?, ?, 'running')",
                [run_id, command, _now()],
            )
        return run_id

    def finish_run(
        self, run_id: int, status: str, counts: Mapping[str, int], message: str,
        api_usage: Mapping[str, int] | None = None,
    ) -> None:
        usage = dict(api_usage or {})
        self.conn.execute(
            "UPDATE runs SET finished_at = ?, status = ?, pulled = ?, adds = ?, removes = ?, "
            "failed = ?, api_calls = ?, message = ?, api_usage = ? WHERE run_id = ?",
            [_now(), status, counts.get("pulled", 0), counts.get("adds", 0),
             counts.get("removes", 0), counts.get("failed", 0),
             sum(usage.values()) if usage else counts.get("api_calls", 0),
             message, json.dumps(usage, sort_keys=True), run_id],
        )

    def record_segment_run(
        self, run_id: int, key: str, size: int, adds: int, removes: int, failed: int, status: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO segment_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, key, size, adds, removes, failed, status],
        )

    def recent_runs(self, limit: int = 10) -> list[dict[str, object]]:
        cursor = self.conn.execute(
            "SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", [limit]
        )
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def segment_history(self, runs: int = 5) -> dict[str, list[int]]:
        """Each segment's size after the last ``runs`` sync runs, oldest first."""
        rows = self.conn.execute(
            "SELECT segment_key, size FROM segment_runs WHERE run_id IN "
            "(SELECT DISTINCT run_id FROM segment_runs ORDER BY run_id DESC LIMIT ?) "
            "ORDER BY segment_key, run_id",
            [runs],
        ).fetchall()
        history: dict[str, list[int]] = {}
        for key, size in rows:
            history.setdefault(key, []).append(int(size))
        return history

    # -- status, erasure and pruning (segsync status / forget / prune) -------------------

    def retry_queue(
        self, limit: int | None = None, *, planned: bool = False
    ) -> list[tuple[str, str, str, str]]:
        """(segment, contact, op, error) still to be retried: the latest attempt failed and
        the contact still needs that change.

        With ``planned`` (right after ``sync.compute.compute_plan``), "still needs" means
        the change is in ``plan_adds``/``plan_removes``; otherwise that the store still
        lacks it (an add not applied to a contact still stored, a remove still applied).
        Failures superseded by a later success and those of erased contacts (whose
        change-log rows carry no key) are left out, and so are segment-field writes.
        """
        if planned:
            needed = (
                "CASE WHEN l.op = 'add' THEN EXISTS (SELECT 1 FROM plan_adds p "
                "  WHERE p.sid = s.sid AND p.cid = l.cid) "
                "WHEN l.op = 'remove' THEN EXISTS (SELECT 1 FROM plan_removes p "
                "  WHERE p.sid = s.sid AND p.crm_id = l.crm_id) ELSE false END"
            )
        else:
            needed = (
                "CASE WHEN l.op = 'add' THEN NOT EXISTS (SELECT 1 FROM applied a "
                "  WHERE a.sid = s.sid AND a.cid = l.cid) "
                "  AND EXISTS (SELECT 1 FROM contacts c WHERE c._cid = l.cid) "
                "WHEN l.op = 'remove' THEN EXISTS (SELECT 1 FROM applied a "
                "  WHERE a.sid = s.sid AND a.cid = l.cid) ELSE false END"
            )
        rows = self.conn.execute(
            "WITH latest AS ("
            "  SELECT segment_key, cid, crm_id, op, result, error, row_number() OVER ("
            "    PARTITION BY segment_key, cid ORDER BY run_id DESC, changed_at DESC) AS n "
            "  FROM changes WHERE cid IS NOT NULL) "
            "SELECT l.segment_key, l.crm_id, l.op, coalesce(l.error, '') FROM latest l "
            "JOIN segments s ON s.key = l.segment_key "
            f"WHERE l.n = 1 AND l.result = 'failed' AND {needed} "
            "ORDER BY l.segment_key, l.crm_id "
            + ("LIMIT ?" if limit is not None else ""),
            [limit] if limit is not None else [],
        ).fetchall()
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def forget_contact(self, crm_id: str, pseudonym: str) -> dict[str, int]:
        """Erase one person: records, events and memberships go; change-log rows keep only
        ``pseudonym`` (a salted hash) instead of the CRM id. Returns rows per kind.

        Their CRM id and email address are also replaced in stored error messages.
        """
        cid = contact_key(crm_id)
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT email FROM contacts WHERE _crm_id = ? OR _cid = ? LIMIT 1", [crm_id, cid]
            ).fetchone()
            email = str(row[0]) if row and row[0] else None
            counts: dict[str, int] = {}

            def gone(name: str, sql: str, params: list[object]) -> None:
                found = conn.execute(sql.replace("DELETE", "SELECT count(*)", 1), params).fetchone()
                counts[name] = int(found[0]) if found else 0
                if counts[name]:
                    conn.execute(sql, params)

            gone("contacts", "DELETE FROM contacts WHERE _crm_id = ? OR _cid = ?", [crm_id, cid])
            gone("events", "DELETE FROM events WHERE _contact_id = ? OR _cid = ?", [crm_id, cid])
            gone("memberships", "DELETE FROM applied WHERE crm_id = ? OR cid = ?", [crm_id, cid])
            gone("field values", "DELETE FROM field_applied WHERE crm_id = ? OR cid = ?",
                 [crm_id, cid])
            # Memberships and values in an unknown state count with the known ones.
            for name, table in (("memberships", "unknown"), ("field values", "field_unknown")):
                known = counts[name]
                gone(name, f"DELETE FROM {table} WHERE crm_id = ? OR cid = ?", [crm_id, cid])
                counts[name] += known
            found = conn.execute(
                "SELECT count(*) FROM changes WHERE crm_id = ? OR cid = ?", [crm_id, cid]
            ).fetchone()
            counts["change-log rows"] = int(found[0]) if found else 0
            conn.execute(
                "UPDATE changes SET crm_id = ?, cid = NULL WHERE crm_id = ? OR cid = ?",
                [pseudonym, crm_id, cid],
            )
            words = [w for w in (crm_id, email) if w]
            for table, key, column in (("changes", "rowid", "error"),
                                       ("runs", "run_id", "message")):
                texts = conn.execute(
                    f"SELECT {key}, {column} FROM {table} WHERE "
                    + " OR ".join(f"contains({column}, ?)" for _ in words), words,
                ).fetchall()
                for ident, text in texts:
                    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
                                 [_mask_words(str(text), words, pseudonym), ident])
        return counts

    def drop_target(self, key: str) -> int:
        """Forget a deleted target: its row and its applied memberships. Returns members."""
        with self.transaction() as conn:
            found = conn.execute(
                "SELECT count(*) FROM applied WHERE sid = (SELECT sid FROM segments WHERE key = ?)",
                [key],
            ).fetchone()
            for table in ("applied", "unknown"):
                conn.execute(
                    f"DELETE FROM {table} WHERE sid = (SELECT sid FROM segments WHERE key = ?)",
                    [key])
            conn.execute("DELETE FROM targets WHERE segment_key = ?", [key])
        return int(found[0]) if found else 0

    def applied_sizes_by_key(self) -> dict[str, int]:
        """Members as last applied, by segment key."""
        return {str(k): int(n) for k, n in self.conn.execute(
            "SELECT s.key, count(*) FROM applied a JOIN segments s USING (sid) GROUP BY s.key"
        ).fetchall()}


def _pairs_frame(adds: Sequence[str], removes: Sequence[str]) -> pd.DataFrame:
    ids = [*adds, *removes]
    return pd.DataFrame({
        "crm_id": pd.Series(ids, dtype=object),
        "cid": contact_keys(ids),
        "op": pd.Series(["add"] * len(adds) + ["remove"] * len(removes), dtype=object),
    })


def _result(crm_id: str, outcome: BatchResult) -> str:
    """The change-log result of one id: failed, unknown, gone or ok."""
    if crm_id in outcome.failed:
        return "failed"
    if crm_id in outcome.unknown:
        return "unknown"
    return "gone" if crm_id in outcome.gone else "ok"


def _mask_words(text: str, words: Sequence[str], replacement: str) -> str:
    """Replace whole-word occurrences of ``words`` (ids, emails) in ``text``."""
    for word in words:
        text = re.sub(rf"(?<![\w@.-]){re.escape(word)}(?![\w@-])", replacement, text)
    return text
