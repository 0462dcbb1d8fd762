"""Geography conditions: ``{ near = [52.52, 13.405], within_km = 10 }``.

Within a distance of any of the points, measured from the contact's own location, or its
company's when the contact has none (great-circle distance, haversine in SQL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segment_rules.kinds.base import ConditionKind, Needs, is_missing
from segment_rules.sql import COMPANY_ALIAS, CONTACT_ALIAS, Predicate
from segment_rules.tables import TableReader, describe, key_path

if TYPE_CHECKING:
    from segment_rules.compile import Compiler

__all__ = ["EARTH_DIAMETER_KM", "KIND", "KM_PER_MILE", "NearCondition"]

NEAR_KEYS = ("near", "within_km", "within_miles")
KM_PER_MILE = 1.609344
EARTH_DIAMETER_KM = 12742.0176


@dataclass(frozen=True)
class NearCondition:
    """Within ``km`` of any of ``points`` (lat, lon), by the contact's or its company's location."""

    points: tuple[tuple[float, float], ...]
    km: float
    path: str = dataclasses.field(default="", compare=False)


def _point(reader: TableReader, value: object, where: str) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        reader.problem(where, f"must be [latitude, longitude] (got {describe(value)})")
        return None
    lat = reader.check_number(value[0], key_path(where, 0), -90.0, 90.0)
    lon = reader.check_number(value[1], key_path(where, 1), -180.0, 180.0)
    return None if lat is None or lon is None else (lat, lon)


class NearKind(ConditionKind[NearCondition]):
    name = "near"
    node = NearCondition
    markers = ("near",)
    keys = NEAR_KEYS

    def parse(
        self, reader: TableReader, table: Mapping[str, Any], path: str
    ) -> NearCondition | None:
        before = len(reader.problems)
        reader.check_keys(table, NEAR_KEYS, path)
        raw = table["near"]
        where = key_path(path, "near")
        many = isinstance(raw, list) and bool(raw) and all(isinstance(p, list) for p in raw)
        points = [_point(reader, p, key_path(where, i)) for i, p in enumerate(raw)] if many else [
            _point(reader, raw, where)]
        units = [k for k in ("within_km", "within_miles") if k in table]
        if len(units) != 1:
            reader.problem(path, "needs exactly one of within_km or within_miles")
            return None
        distance = reader.number(table, units[0], path, minimum=0.0, maximum=20_100.0)
        if len(reader.problems) > before or distance is None or None in points:
            return None
        km = distance * KM_PER_MILE if units[0] == "within_miles" else distance
        return NearCondition(tuple(p for p in points if p is not None), km, path)

    def predicate(self, node: NearCondition, compiler: Compiler) -> Predicate:
        distance = self.value(node, compiler)
        return Predicate(f"coalesce({distance.sql} <= ?, FALSE)", (*distance.params, node.km))

    def value(self, node: NearCondition, compiler: Compiler) -> Predicate:
        """Kilometres to the nearest point."""
        has_own = f"({CONTACT_ALIAS}._lat IS NOT NULL AND {CONTACT_ALIAS}._lon IS NOT NULL)"
        lat = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lat ELSE {COMPANY_ALIAS}._lat END)"
        lon = f"(CASE WHEN {has_own} THEN {CONTACT_ALIAS}._lon ELSE {COMPANY_ALIAS}._lon END)"
        parts = []
        params: list[object] = []
        for p_lat, p_lon in node.points:
            parts.append(
                f"{EARTH_DIAMETER_KM} * asin(sqrt(pow(sin(radians({lat} - ?) / 2), 2) + "
                f"cos(radians(?)) * cos(radians({lat})) * pow(sin(radians({lon} - ?) / 2), 2)))"
            )
            params.extend([p_lat, p_lat, p_lon])
        sql = parts[0] if len(parts) == 1 else "least(" + ", ".join(parts) + ")"
        return Predicate(sql, tuple(params))

    def describe(self, node: NearCondition) -> str:
        places = " or ".join(f"({lat:g}, {lon:g})" for lat, lon in node.points)
        return f"within {node.km:g} km of {places}"

    def shown(self, node: NearCondition, raw: object) -> str:
        return "no location" if is_missing(raw) else f"{float(raw):.1f} km"  # type: ignore[arg-type]

    def needs(self, node: NearCondition) -> Needs:
        return Needs(streams=frozenset({"companies"}))  # the company's location stands in


KIND = NearKind()
