"""Raw access to a store's tables, for tests that check the store's own invariants.

Application code asks the store for what it needs by name; tests sometimes must look at
the tables themselves (every row, for secrets; a table's exact contents after a merge).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from sync.store import Store


def connection(store: Store) -> duckdb.DuckDBPyConnection:
    """The store's DuckDB connection (private to ``sync.store``; tests only)."""
    return store._conn


def sql(store: Store, query: str, params: Sequence[object] = ()) -> duckdb.DuckDBPyConnection:
    """Run ``query`` on the store's connection; chain ``.fetchall()`` and friends."""
    return store._conn.execute(query, list(params))
