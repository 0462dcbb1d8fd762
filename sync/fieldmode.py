"""Field write mode: every contact's segment names in one multi-value CRM field.

HubSpot (multi-checkbox property) and Salesforce (multi-select picklist) both keep a set
of names per contact. The plan (``sync.compute.plan_field``) lists contacts whose set
changed; this module writes them in batches and records each batch as it lands, so a
killed run resumes like list writes do.
"""

from __future__ import annotations

import json
import logging

from connectors.base import Connector, FieldWriter, field_writer
from sync.plan import Plan
from sync.store import Store

__all__ = ["apply_field", "field_writer", "writes_lists"]

log = logging.getLogger("segsync.apply")

OPTIONS_KEY = "field_options"


def writes_lists(connector: Connector) -> bool:
    """Whether memberships go to lists/campaigns (else they are only recorded)."""
    return connector.capabilities().lists


def _ensure_options(store: Store, writer: FieldWriter, options: list[str]) -> None:
    if store.meta(OPTIONS_KEY) != json.dumps(options):
        writer.ensure_field(options)
        store.set_meta(OPTIONS_KEY, json.dumps(options))


def apply_field(
    store: Store, writer: FieldWriter, plan: Plan, run_id: int, batch: int
) -> tuple[int, int, int]:
    """Write ``field_plan``; return (contacts written, failed, left unknown).

    Each chunk is recorded as intended before it is sent, like membership batches.
    """
    current = sorted({s.name for s in plan.expanded if not s.store_only})
    previous = json.loads(store.meta(OPTIONS_KEY) or "[]")
    # Old names stay selectable until no contact holds them any more.
    _ensure_options(store, writer, sorted(set(current) | set(previous)))
    assert plan.tables is not None
    rows = store.field_plan(plan.tables)
    written = failed = unknown = 0
    size = max(1, batch)
    for start in range(0, len(rows), size):
        chunk = {str(crm_id): str(names) for crm_id, names in rows[start : start + size]}
        fresh = store.intend_field(run_id, list(chunk))
        result = writer.write_field(
            {crm_id: tuple(n for n in names.split(";") if n) for crm_id, names in chunk.items()}
        )
        store.record_field_batch(run_id, chunk, result, fresh)
        failed += len(result.failed)
        unknown += len(result.unknown)
        written += len(chunk) - len(result.failed) - len(result.unknown) - len(result.gone)
    if not failed and not unknown:
        _ensure_options(store, writer, current)
    log.info("field: %d contact(s) written, %d failed, %d unknown", written, failed, unknown)
    return written, failed, unknown
