"""The store's tables, in one place: the schema, its version, and migrations.

Every table the store keeps is created here; the modules beside this one read and write
them through named queries, so a table name appears in SQL only inside this package.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from connectors.base import Stream
from sync.errors import StoreError

__all__ = ["ENGINE_COLUMNS", "RECORD_TABLE", "SCHEMA_VERSION", "TABLES", "migrate"]

SCHEMA_VERSION = 2

#: Columns the engine owns in each record table; every other column is a CRM property.
ENGINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("_cid", "_crm_id", "_kind", "_modified_at", "_company_id", "_opted_out",
                 "_lat", "_lon"),
    "companies": ("_crm_id", "_modified_at", "_lat", "_lon"),
    "events": ("_stream", "_crm_id", "_contact_id", "_cid", "type", "ts", "amount",
               "_modified_at"),
}
#: The table each pulled stream lands in.
RECORD_TABLE: dict[Stream, str] = {
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

#: Every table, for erasure checks and diagnostics.
TABLES = ("meta", "contacts", "companies", "events", "watermarks", "segments", "targets",
          "applied", "field_applied", "runs", "segment_runs", "changes", "unknown",
          "field_unknown")


def migrate(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create a new store's tables, or bring an older one up to :data:`SCHEMA_VERSION`.

    Runs in one transaction per step; a store written by a newer segsync is refused.
    """
    tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "meta" not in tables:
        _run(conn, _SCHEMA + _SCHEMA_2)
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer segsync (schema {version}); upgrade segsync"
        )
    if version < 2:
        _run(conn, _SCHEMA_2)


def _run(conn: duckdb.DuckDBPyConnection, script: str) -> None:
    conn.execute("BEGIN TRANSACTION")
    try:
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                     [str(SCHEMA_VERSION)])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
