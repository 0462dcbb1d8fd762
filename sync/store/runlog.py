"""The run log: runs, per-segment sizes, the change log and the retry queue."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sync.store.base import PlanTables, StoreBase, now

__all__ = ["RetryItem", "RunLog", "RunRow", "SegmentChangeRow"]


@dataclass(frozen=True)
class RunRow:
    """One run as recorded (``finished_at`` is None while it runs or if it was killed)."""

    run_id: int
    command: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    pulled: int
    adds: int
    removes: int
    failed: int
    api_calls: int
    message: str
    api_usage: dict[str, int]


class RetryItem(NamedTuple):
    """A change whose latest attempt the CRM refused, still needed."""

    segment: str
    contact: str
    op: str
    error: str


class SegmentChangeRow(NamedTuple):
    """One segment's changes in one run."""

    segment: str
    adds: int
    removes: int
    failed: int
    status: str


class RunLog(StoreBase):
    """Recording runs and reading their history."""

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
                [run_id, command, now()],
            )
        return run_id

    def finish_run(
        self, run_id: int, status: str, counts: Mapping[str, int], message: str,
        api_usage: Mapping[str, int] | None = None,
    ) -> None:
        usage = dict(api_usage or {})
        self._conn.execute(
            "UPDATE runs SET finished_at = ?, status = ?, pulled = ?, adds = ?, removes = ?, "
            "failed = ?, api_calls = ?, message = ?, api_usage = ? WHERE run_id = ?",
            [now(), status, counts.get("pulled", 0), counts.get("adds", 0),
             counts.get("removes", 0), counts.get("failed", 0),
             sum(usage.values()) if usage else counts.get("api_calls", 0),
             message, json.dumps(usage, sort_keys=True), run_id],
        )

    def record_segment_run(
        self, run_id: int, key: str, size: int, adds: int, removes: int, failed: int, status: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO segment_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, key, size, adds, removes, failed, status],
        )

    def recent_runs(self, limit: int = 10) -> list[RunRow]:
        """The last ``limit`` runs, newest first."""
        rows = self._conn.execute(
            "SELECT run_id, command, started_at, finished_at, status, pulled, adds, removes, "
            "failed, api_calls, message, api_usage FROM runs ORDER BY run_id DESC LIMIT ?",
            [limit]).fetchall()
        return [RunRow(int(r[0]), str(r[1]), r[2], r[3], str(r[4]), int(r[5] or 0),
                       int(r[6] or 0), int(r[7] or 0), int(r[8] or 0), int(r[9] or 0),
                       str(r[10] or ""), _usage(r[11])) for r in rows]

    def segment_history(self, runs: int = 5) -> dict[str, list[int]]:
        """Each segment's size after the last ``runs`` sync runs, oldest first."""
        rows = self._conn.execute(
            "SELECT segment_key, size FROM segment_runs WHERE run_id IN "
            "(SELECT DISTINCT run_id FROM segment_runs ORDER BY run_id DESC LIMIT ?) "
            "ORDER BY segment_key, run_id",
            [runs],
        ).fetchall()
        history: dict[str, list[int]] = {}
        for key, size in rows:
            history.setdefault(key, []).append(int(size))
        return history

    def size_history(self, runs: int) -> tuple[list[tuple[int, dt.datetime]],
                                                dict[str, list[int | None]]]:
        """The last ``runs`` sync runs (id, start; oldest first) and each segment's size
        after each of them (None where the segment did not exist yet)."""
        rows = self._conn.execute(
            "SELECT r.run_id, r.started_at FROM runs r WHERE r.run_id IN "
            "(SELECT DISTINCT run_id FROM segment_runs) ORDER BY r.run_id DESC LIMIT ?", [runs]
        ).fetchall()
        order = [(int(r[0]), r[1]) for r in reversed(rows)]
        position = {run_id: i for i, (run_id, _) in enumerate(order)}
        history: dict[str, list[int | None]] = {}
        if not order:
            return order, history
        for run_id, key, size in self._conn.execute(
            "SELECT run_id, segment_key, size FROM segment_runs WHERE run_id >= ? "
            "ORDER BY run_id", [order[0][0]]
        ).fetchall():
            if int(run_id) in position:
                history.setdefault(str(key), [None] * len(order))[position[int(run_id)]] = int(size)
        return order, history

    def last_changes(self) -> tuple[int | None, list[SegmentChangeRow]]:
        """The last run that changed a membership, and its per-segment changes."""
        row = self._conn.execute(
            "SELECT max(run_id) FROM segment_runs WHERE adds > 0 OR removes > 0").fetchone()
        if row is None or row[0] is None:
            return None, []
        run_id = int(row[0])
        rows = self._conn.execute(
            "SELECT segment_key, adds, removes, failed, status FROM segment_runs "
            "WHERE run_id = ? AND (adds > 0 OR removes > 0 OR failed > 0) "
            "ORDER BY adds + removes DESC, segment_key", [run_id]).fetchall()
        return run_id, [SegmentChangeRow(str(k), int(a), int(r), int(f), str(s))
                        for k, a, r, f, s in rows]

    def retry_queue(
        self, limit: int | None = None, *, plan: PlanTables | None = None
    ) -> list[RetryItem]:
        """Changes still to be retried: the latest attempt failed and the contact still
        needs that change.

        With a ``plan`` (the current one), "still needs" means the change is in its adds or
        removes; otherwise that the store still lacks it (an add not applied to a contact
        still stored, a remove still applied). Failures superseded by a later success and
        those of erased contacts (whose change-log rows carry no key) are left out, and so
        are segment-field writes.
        """
        if plan is not None:
            self._current(plan)
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
        rows = self._conn.execute(
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
        return [RetryItem(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def _usage(raw: object) -> dict[str, int]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, Mapping) else {}
