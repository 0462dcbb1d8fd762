"""Targets and memberships: what segsync owns in the CRM and what it holds there.

``applied`` holds the last *known* state of each (segment, contact) pair; a row of
``unknown`` for the same pair overrides it. A write is recorded as intended (its pairs
unknown) before it is sent, and leaves ``unknown`` only when an answer proves its
outcome: a lost answer, a kill between send and record, an answer that names no record,
or a merge that moved memberships inside the CRM all leave the pair unknown -- never
assumed present or absent -- until a later run settles it. So an explicit refusal
restores nothing: the pair simply leaves ``unknown`` and ``applied`` still says what it
said before. Field values (``field_applied``/``field_unknown``) follow the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from connectors.base import BatchResult, MembershipRead, TargetRef
from sync.store.base import StoreBase, now
from sync.store.keys import contact_keys

__all__ = ["GONE", "IN_FLIGHT", "Memberships", "TargetRow", "UnknownPair"]

#: Why a pair is unknown when no answer was recorded for its write.
IN_FLIGHT = "sent, but no answer was recorded (lost answer or interrupted run)"
#: Change-log text for records the CRM says do not exist.
GONE = "the CRM has no such record"


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


class Memberships(StoreBase):
    """Targets, applied memberships, unknown pairs and field values."""

    def segment_ids(self, keys: Iterable[str]) -> dict[str, int]:
        """Stable small ids for segment keys, assigned on first sight."""
        wanted = list(dict.fromkeys(keys))
        known = dict(self._conn.execute("SELECT key, sid FROM segments").fetchall())
        missing = [k for k in wanted if k not in known]
        if missing:
            next_id = max(known.values(), default=0) + 1
            with self.transaction() as conn:
                for offset, key in enumerate(missing):
                    conn.execute("INSERT INTO segments VALUES (?, ?)", [next_id + offset, key])
                    known[key] = next_id + offset
        return {k: int(known[k]) for k in wanted}

    def targets(self) -> dict[str, TargetRow]:
        rows = self._conn.execute(
            "SELECT segment_key, target_id, name, state FROM targets ORDER BY segment_key"
        ).fetchall()
        return {r[0]: TargetRow(r[0], r[1], r[2], r[3]) for r in rows}

    def mark_target_pending(self, key: str, name: str) -> None:
        """Record the intent to create a target before asking the CRM to create it."""
        stamp = now()
        self._conn.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, NULL, ?, 'pending', ?, ?)",
            [key, name, stamp, stamp],
        )

    def forget_pending_target(self, key: str) -> None:
        self._conn.execute(
            "DELETE FROM targets WHERE segment_key = ? AND state = 'pending'", [key]
        )

    def record_target(self, key: str, ref: TargetRef) -> None:
        stamp = now()
        self._conn.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, ?, ?, 'owned', "
            "coalesce((SELECT created_at FROM targets WHERE segment_key = ?), ?), ?)",
            [key, ref.target_id, ref.name, key, stamp, stamp],
        )

    def applied_sizes(self) -> dict[int, int]:
        return {int(s): int(n) for s, n in self._conn.execute(
            "SELECT sid, count(*) FROM applied GROUP BY sid").fetchall()}

    def applied_sizes_by_key(self) -> dict[str, int]:
        """Members as last applied, by segment key."""
        return {str(k): int(n) for k, n in self._conn.execute(
            "SELECT s.key, count(*) FROM applied a JOIN segments s USING (sid) GROUP BY s.key"
        ).fetchall()}

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
                    [sid, IN_FLIGHT, run_id, now(), sid])
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
                    "(SELECT cid FROM unknown WHERE sid = ?)", [sid, run_id, now(), sid])
                conn.execute(
                    "INSERT INTO changes SELECT ?, ?, cid, crm_id, op, result, error, ? FROM batch",
                    [run_id, segment_key, now()],
                )
            finally:
                conn.unregister("batch")

    def unknown_pairs(self, sids: Iterable[int] | None = None) -> list[UnknownPair]:
        """Unknown memberships (of ``sids``, or all), oldest reason kept per pair."""
        wanted = list(sids) if sids is not None else None
        if wanted is not None and not wanted:
            return []
        where = f"WHERE sid IN ({', '.join('?' for _ in wanted)})" if wanted else ""
        rows = self._conn.execute(
            f"SELECT sid, cid, crm_id, op, coalesce(reason, '') FROM unknown {where} "
            "ORDER BY sid, crm_id", wanted or []).fetchall()
        return [UnknownPair(int(a), int(b), str(c), str(d), str(e)) for a, b, c, d, e in rows]

    def unknown_counts(self) -> dict[str, int]:
        """Unknown memberships per segment key, and field values under ``"(field)"``."""
        counts = {str(k): int(n) for k, n in self._conn.execute(
            "SELECT s.key, count(*) FROM unknown u JOIN segments s USING (sid) GROUP BY s.key"
        ).fetchall()}
        row = self._conn.execute("SELECT count(*) FROM field_unknown").fetchone()
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
                             [IN_FLIGHT, run_id, now()])
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
                             "(SELECT cid FROM field_unknown)", [run_id, now()])
                conn.execute(
                    "INSERT INTO changes SELECT ?, '(field)', cid, crm_id, 'set', result, error, ? "
                    "FROM batch", [run_id, now()])
            finally:
                conn.unregister("batch")

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

    def applied_members(self) -> dict[str, set[str]]:
        """Members as last applied, by segment key (CRM ids)."""
        found: dict[str, set[str]] = {}
        for key, crm_id in self._conn.execute(
                "SELECT s.key, a.crm_id FROM applied a JOIN segments s USING (sid)").fetchall():
            found.setdefault(str(key), set()).add(str(crm_id))
        return found

    def overlap(self, keys: Sequence[str]) -> dict[tuple[str, str], int]:
        """Members two segments share (as applied), for each pair of ``keys`` (a <= b)."""
        if not keys:
            return {}
        sids = self.segment_ids(keys)
        marks = ", ".join("?" for _ in keys)
        ids = [sids[k] for k in keys]
        rows = self._conn.execute(
            "SELECT sa.key, sb.key, count(*) FROM applied a "
            "JOIN applied b ON a.cid = b.cid AND a.sid <= b.sid "
            "JOIN segments sa ON sa.sid = a.sid JOIN segments sb ON sb.sid = b.sid "
            f"WHERE a.sid IN ({marks}) AND b.sid IN ({marks}) GROUP BY ALL", [*ids, *ids]
        ).fetchall()
        return {(str(a), str(b)): int(n) for a, b, n in rows}


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
