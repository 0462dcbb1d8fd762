"""``segsync forget`` (right to erasure) and ``segsync prune`` (delete orphaned targets).

Forget erases one person from the local store: the contact row, their purchases and
activity, the memberships segsync applied for them and their segment-field value. The
change log keeps its rows (counts and history stay right) but each row of theirs carries
a pseudonym instead of the CRM id: ``forgotten-`` and an HMAC-SHA256 of the id under a
random salt created once per store. Knowing the id and holding the store, one can still
prove that a given erasure request was carried out, but the id cannot be read back. The
erasure is itself a run (command ``forget``) with a change-log row under the pseudonym.

Neither command reads the CRM's records; forget never writes to it, prune only deletes
targets segsync created (``connectors.base.TargetDeleter``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.base import Connector, TargetDeleter, target_deleter
from sync.errors import SegsyncError
from sync.runs import recording_run
from sync.store import Store, TargetRow

__all__ = ["SALT_KEY", "ForgetResult", "Orphan", "forget", "orphans", "prune", "pseudonym"]

SALT_KEY = "forget_salt"


def _salt(store: Store) -> bytes:
    """The store's erasure salt, created (random, 256 bits) on first use."""
    value = store.meta(SALT_KEY)
    if value is None:
        value = secrets.token_hex(32)
        store.set_meta(SALT_KEY, value)
    return bytes.fromhex(value)


def pseudonym(salt: bytes, crm_id: str) -> str:
    """What the change log keeps of an erased contact's id."""
    digest = hmac.new(salt, crm_id.encode(), hashlib.sha256).hexdigest()
    return f"forgotten-{digest[:32]}"


@dataclass(frozen=True)
class ForgetResult:
    run_id: int
    pseudonym: str
    counts: Mapping[str, int]

    @property
    def found(self) -> bool:
        return any(self.counts.values())


def forget(store: Store, crm_id: str) -> ForgetResult:
    """Erase ``crm_id`` from the store and log the erasure (without the id)."""
    if not crm_id.strip():
        raise SegsyncError("give the contact's CRM record id")
    token = pseudonym(_salt(store), crm_id)
    with recording_run(store, "forget") as run:
        counts = store.forget_contact(crm_id, token)
        run_id = run.run_id
        total = store.log_erasure(run_id, token)
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "nothing stored"
        run.message = f"erased one contact (request {total}): {summary}"
    # Deleted rows can linger in the file's free blocks and the WAL until a checkpoint.
    store.checkpoint()
    return ForgetResult(run_id, token, counts)


@dataclass(frozen=True)
class Orphan:
    """An owned target whose segment is no longer configured."""

    row: TargetRow
    members: int


def orphans(store: Store, configured: Iterable[str]) -> list[Orphan]:
    keys = set(configured)
    sizes = store.applied_sizes_by_key()
    return [Orphan(row, sizes.get(key, 0))
            for key, row in store.targets().items() if key not in keys]


def deleter(connector: Connector, crm_type: str) -> TargetDeleter:
    found = target_deleter(connector)
    if found is None:
        raise SegsyncError(f"the {crm_type} connector cannot delete lists/campaigns yet; "
                           "delete them in the CRM and nothing else is needed")
    return found


def prune(store: Store, connector: Connector, found: Iterable[Orphan]) -> list[str]:
    """Delete each orphan's target in the CRM, then forget it; return the deleted keys.

    A target still being created when a run stopped (no id recorded) cannot be deleted by
    id and is skipped.
    """
    done: list[str] = []
    removing = deleter(connector, type(connector).__name__)
    with recording_run(store, "prune", connector.api_usage) as run:
        run.message = "deleted nothing"
        for orphan in found:
            ref = orphan.row.ref
            if ref is None:
                continue
            removing.delete_target(ref)
            run.counts["removes"] = (run.counts.get("removes", 0)
                                     + store.drop_target(orphan.row.segment_key))
            done.append(orphan.row.segment_key)
            run.message = "deleted " + ", ".join(done)
    return done
