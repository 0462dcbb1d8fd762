"""Small hand-built stores for rule tests."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping, Sequence

import pandas as pd

from connectors.base import Page
from connectors.frames import columns
from segment_rules import evaluate
from segment_rules.errors import Problem
from segment_rules.parse import parse_rules
from segment_rules.schema import Segment
from sync.store import Store, contact_key

NOW = dt.datetime(2026, 6, 1, 12, 0)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def canonical(stream: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the engine columns it leaves out set to missing (test data states
    only what a test is about; the store insists on the canonical shape)."""
    missing = [c for c in columns(stream) if c not in frame.columns]
    return frame.assign(**dict.fromkeys(missing)) if missing else frame


def make_store(
    people: Mapping[str, Mapping[str, object]],
    companies: Mapping[str, Mapping[str, object]] | None = None,
    events: Sequence[tuple[str, str, dt.datetime, float | None]] = (),
) -> Store:
    """``people``: id -> props (``_lat``/``_lon``/``_company_id``/``_opted_out`` allowed);
    ``events``: (contact id, type, timestamp, amount)."""
    store = Store.in_memory()
    fields = sorted({k for row in people.values() for k in row if not k.startswith("_")})
    store.keep_properties("contacts", fields)
    rows = []
    for crm_id, props in people.items():
        row: dict[str, object] = {"_crm_id": crm_id, "_modified_at": NOW, "_kind": "contact",
                                  "_opted_out": bool(props.get("_opted_out", False))}
        for key, value in props.items():
            if key != "_opted_out":
                row[key] = value if key.startswith("_") or value is None else str(value)
        rows.append(row)
    store.write_page("contacts", Page(canonical("contacts", pd.DataFrame(rows))), fields)
    if companies:
        company_fields = sorted({k for row in companies.values() for k in row if not k.startswith("_")})
        store.keep_properties("companies", company_fields)
        frame = pd.DataFrame([
            {"_crm_id": cid, "_modified_at": NOW,
             **{k: (v if k.startswith("_") or v is None else str(v)) for k, v in props.items()}}
            for cid, props in companies.items()
        ])
        store.write_page("companies", Page(canonical("companies", frame)), company_fields)
    if events:
        for stream, is_purchase in (("purchases", True), ("activities", False)):
            chosen = [e for e in events if (e[1] == "purchase") == is_purchase]
            if not chosen:
                continue
            frame = pd.DataFrame({
                "_crm_id": [f"e{i}" for i, _ in enumerate(chosen)],
                "_contact_id": [e[0] for e in chosen],
                "type": [e[1] for e in chosen],
                "ts": [e[2] for e in chosen],
                "amount": [e[3] for e in chosen],
                "_modified_at": [NOW for _ in chosen],
            })
            store.write_page(stream, Page(frame), [])
    return store


def segments(text: str) -> list[Segment]:
    problems: list[Problem] = []
    rules = parse_rules(tomllib.loads(text)["segment"], problems)
    assert problems == [], problems
    return list(rules.segments)


def members(store: Store, segs: Sequence[Segment], now: dt.datetime = NOW) -> dict[str, set[str]]:
    sids = {s.key: i + 1 for i, s in enumerate(segs)}
    evaluate(store.conn, segs, sids, now)
    ids = {row[0]: row[1] for row in store.conn.execute(
        "SELECT _cid, _crm_id FROM contacts").fetchall()}
    out: dict[str, set[str]] = {s.key: set() for s in segs}
    keys = {v: k for k, v in sids.items()}
    for sid, cid in store.conn.execute("SELECT sid, cid FROM desired").fetchall():
        out[keys[sid]].add(ids[cid])
    return out


def one(store: Store, condition: str, **segment_keys: object) -> set[str]:
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in segment_keys.items())
    (seg,) = segments(f'[[segment]]\nkey = "s"\nexclude_opted_out = false\n{extra}all = [{condition}]\n')
    return members(store, [seg])["s"]


assert contact_key  # re-exported for tests that compare keys
