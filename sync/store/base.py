"""Opening, closing and transactions: what every part of the store shares."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import duckdb

from sync.errors import StoreError
from sync.store.schema import migrate

__all__ = ["PlanTables", "StalePlan", "StoreBase", "now"]


def now() -> dt.datetime:
    """Naive UTC, the store's convention for timestamps."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class PlanTables:
    """A handle to the tables one computed plan left in the store (desired memberships,
    adds, removes, unknown pairs, field values); valid until the next plan replaces them."""

    generation: int


class StalePlan(StoreError):
    """A plan whose tables a newer plan has replaced was used: applying it would write
    someone else's changes."""


class StoreBase:
    """A DuckDB store file; open with :meth:`open`, always close (or use as a context).

    The connection is private to the ``sync.store`` package: everything else asks for
    what it needs by name.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._plan_generation = 0

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        """Deprecated: the rule tests still evaluate on it directly; use named queries."""
        return self._conn

    def _new_plan(self) -> PlanTables:
        self._plan_generation += 1
        return PlanTables(self._plan_generation)

    def _current(self, tables: PlanTables | None) -> None:
        """Refuse loudly to read the tables of a plan a newer one has replaced."""
        if tables is None or tables.generation != self._plan_generation:
            raise StalePlan("internal error: a plan was used after a newer plan replaced its "
                            "tables; compute the plan again before applying it")

    @classmethod
    def open(cls, path: Path, memory_limit: str | None = None) -> Self:
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
        previous = os.umask(0o077)  # the WAL the migration writes is the owner's only too
        try:
            migrate(conn, path)
        finally:
            os.umask(previous)
        return store

    @classmethod
    def in_memory(cls) -> Self:
        """A throwaway store for tests and benchmarks."""
        conn = duckdb.connect()
        migrate(conn, Path(":memory:"))
        return cls(conn, Path(":memory:"))

    def close(self) -> None:
        previous = os.umask(0o077)
        try:
            self._conn.close()
        finally:
            os.umask(previous)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on the store's connection (for the store's own modules)."""
        previous = os.umask(0o077)
        self._conn.execute("BEGIN TRANSACTION")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            os.umask(previous)

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def checkpoint(self) -> None:
        """Write the WAL into the file, so deleted rows leave no trace in the WAL."""
        self._conn.execute("FORCE CHECKPOINT")
