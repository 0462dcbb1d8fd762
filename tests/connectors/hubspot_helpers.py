"""Shared bits of the HubSpot connector tests: fake time, a connector factory, a contact
search server for ``responses`` that behaves like HubSpot's (filters, sort, 10k wall)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from connectors.hubspot import HubSpotConnector, HubSpotSettings

BASE = "https://api.hubapi.com"
TOKEN = "pat-eu1-11111111-2222-3333-4444-555555555555"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


class FakeTime:
    """Monotonic clock + sleep that only moves when slept (shared with limiters)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class WallClock:
    def __init__(self, start: dt.datetime = NOW) -> None:
        self.value = start

    def __call__(self) -> dt.datetime:
        return self.value

    def advance(self, **kwargs: float) -> None:
        self.value += dt.timedelta(**kwargs)


def make_connector(
    time: FakeTime | None = None, now: WallClock | None = None, **overrides: Any
) -> HubSpotConnector:
    fake = time or FakeTime()
    settings = replace(HubSpotSettings(), **overrides)
    return HubSpotConnector(settings, now=now or WallClock(), sleep=fake.sleep,
                            monotonic=fake.monotonic)


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass
class SearchServer:
    """A ``responses`` callback serving ``POST .../search`` over generated records."""

    records: list[dict[str, Any]]
    modified_prop: str = "lastmodifieddate"
    honour_string_sort: bool = True
    honour_object_sort: bool = True
    bodies: list[dict[str, Any]] = field(default_factory=list)
    #: Request number (0-based) -> results that answer keeps: a short page that still
    #: carries ``paging.next`` (pointing just past what it returned) while more match.
    short_pages: dict[int, int] = field(default_factory=dict)

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        self.bodies.append(body)
        if int(body.get("after") or 0) >= 10_000:
            return 400, {}, json.dumps({"status": "error", "category": "VALIDATION_ERROR",
                                        "message": "Paging beyond 10000 results"})
        matches = [r for r in self.records if self._match(r, body)]
        sort = (body.get("sorts") or [None])[0]
        honoured = (isinstance(sort, str) and self.honour_string_sort) or (
            isinstance(sort, dict) and self.honour_object_sort)
        if honoured:
            matches.sort(key=lambda r: int(r["id"]))
        else:  # an ignored sort: HubSpot's own order (here: descending)
            matches.sort(key=lambda r: -int(r["id"]))
        start = int(body.get("after") or 0)
        size = self.short_pages.get(len(self.bodies) - 1, body["limit"])
        page = matches[start:start + size]
        out: dict[str, Any] = {"total": len(matches), "results": [
            {"id": r["id"], "properties": {k: r.get(k) for k in body["properties"]},
             "archived": False} for r in page]}
        if start + size < len(matches):
            out["paging"] = {"next": {"after": str(start + size)}}
        return 200, {}, json.dumps(out)

    def _match(self, record: dict[str, Any], body: dict[str, Any]) -> bool:
        groups = body.get("filterGroups") or []
        if not groups:
            return True
        return any(all(self._test(record, f) for f in g["filters"]) for g in groups)

    def _test(self, record: dict[str, Any], flt: dict[str, Any]) -> bool:
        name, op = flt["propertyName"], flt["operator"]
        if name == "hs_object_id":
            value: float = int(record["id"])
            wanted: float = int(flt["value"])
        else:
            raw = record.get(name)
            if raw is None:
                return False
            value = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp() * 1000
            wanted = int(flt["value"])
        comparisons: dict[str, Callable[[float, float], bool]] = {
            "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b,
            "LT": lambda a, b: a < b, "EQ": lambda a, b: a == b,
        }
        return comparisons[op](value, wanted)


def contact(i: int, modified: dt.datetime = NOW, **props: Any) -> dict[str, Any]:
    return {"id": str(i), "email": f"c{i}@example.com", "lastmodifieddate": iso(modified),
            **props}


def no_associations(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    inputs = json.loads(request.body or b"{}")["inputs"]
    assert len(inputs) <= 1000
    return 200, {}, json.dumps({"status": "COMPLETE", "results": []})
