"""Erasure (``segsync forget``): one person out of every table, the change log pseudonymised."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sync.store.base import StoreBase, now
from sync.store.keys import contact_key

__all__ = ["Erasure"]

#: Erasure requests carried out so far (meta key).
COUNT_KEY = "forget_count"


class Erasure(StoreBase):
    """Forgetting one person."""

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

    def log_erasure(self, run_id: int, pseudonym: str) -> int:
        """Record one carried-out erasure (under the pseudonym); returns how many so far."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO changes VALUES (?, '(forget)', NULL, ?, 'forget', 'ok', NULL, ?)",
                [run_id, pseudonym, now()])
            previous = conn.execute("SELECT value FROM meta WHERE key = ?",
                                    [COUNT_KEY]).fetchone()
            total = int(previous[0]) + 1 if previous else 1
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [COUNT_KEY, str(total)])
        return total


def _mask_words(text: str, words: Sequence[str], replacement: str) -> str:
    """Replace whole-word occurrences of ``words`` (ids, emails) in ``text``."""
    for word in words:
        text = re.sub(rf"(?<![\w@.-]){re.escape(word)}(?![\w@-])", replacement, text)
    return text
