"""Pulled records: contacts, companies and events, with their watermarks.

Invariant: a page of records and the watermark that covers it are committed in one
transaction, and so are the deletions and merges the page carries.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence

import duckdb
import pandas as pd

from connectors.base import Page, Stream
from connectors.frames import check_page
from segment_rules.compile import quote_ident
from sync.errors import StoreError
from sync.store.base import StoreBase, now
from sync.store.keys import contact_keys
from sync.store.schema import ENGINE_COLUMNS, RECORD_TABLE

__all__ = ["Records"]


class Records(StoreBase):
    """Reading and writing the record tables."""

    def columns(self, table: str) -> list[str]:
        rows = self._conn.execute(f"SELECT * FROM {table} LIMIT 0").description or []
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
        row = self._conn.execute(
            "SELECT value, fields FROM watermarks WHERE stream = ?", [stream]
        ).fetchone()
        if row is None:
            return None, frozenset()
        return row[0], frozenset(json.loads(row[1] or "[]"))

    def clear_stream(self, stream: Stream) -> None:
        """Forget a stream no rule reads: its rows and watermark (a later need refetches it)."""
        table = RECORD_TABLE[stream]
        with self.transaction() as conn:
            conn.execute("DELETE FROM watermarks WHERE stream = ?", [stream])
            if table == "events":
                conn.execute("DELETE FROM events WHERE _stream = ?", [stream])
            elif table == "companies":
                conn.execute("DELETE FROM companies")

    def count(self, table: str) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def write_page(self, stream: Stream, page: Page, fields: Iterable[str]) -> None:
        """Upsert a page, apply its deletes/merges and move the watermark, atomically."""
        table = RECORD_TABLE[stream]
        records = page.records
        check_page(stream, records)
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
                    [stream, page.watermark, json.dumps(sorted(fields)), now()],
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
            stamp = now()
            conn.execute(
                "INSERT INTO unknown SELECT t.sid, m.survivor_cid, m.survivor, 'moved', "
                "'merged with ' || m.loser || ': the CRM may have moved its memberships', "
                "NULL, ? FROM (SELECT survivor, survivor_cid, min(loser) AS loser FROM moved "
                "GROUP BY ALL) m CROSS JOIN (SELECT s.sid FROM targets t JOIN segments s "
                "ON s.key = t.segment_key WHERE t.state = 'owned') t "
                "WHERE NOT EXISTS (SELECT 1 FROM unknown u WHERE u.sid = t.sid "
                "AND u.cid = m.survivor_cid)", [stamp])
            conn.execute(
                "INSERT INTO field_unknown SELECT m.survivor_cid, m.survivor, "
                "'merged: the CRM may have combined the field values', NULL, ? "
                "FROM (SELECT DISTINCT survivor, survivor_cid FROM moved) m "
                "WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'field_options') "
                "AND m.survivor_cid NOT IN (SELECT cid FROM field_unknown)", [stamp])
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
        self._conn.execute("DELETE FROM events WHERE _stream = ? AND ts < ?", [stream, cutoff])
