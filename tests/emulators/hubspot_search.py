"""CRM search (``POST /crm/v3/objects/{objectType}/search``) for the HubSpot emulator.

Validates a ``PublicObjectSearchRequest`` body, evaluates filterGroups against the portal state,
sorts and pages (``after`` is a stringified offset; the 10,000-result wall answers 400).
Search index lag is not modelled: writes are visible to the next search.
"""

from __future__ import annotations

import bisect
import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from tests.emulators.hubspot_model import (
    ApiError,
    CrmRecord,
    id_key,
    normalize_object_type,
    parse_hs_time,
    validation_error,
)
from tests.emulators.hubspot_state import DATETIME_TYPES, HubSpotState

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
_NEEDS_VALUE = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}

#: Properties matched by the free-text ``query`` (HubSpot's default searchable properties).
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname", "phone", "company"),
    "companies": ("name", "domain", "website", "phone"),
    "deals": ("dealname", "pipeline", "dealstage", "description"),
}


@dataclass(frozen=True)
class SearchLimits:
    max_limit: int = 200
    result_cap: int = 10_000
    max_groups: int = 5
    max_filters_per_group: int = 10
    max_filters_total: int = 25


@dataclass(frozen=True)
class Sort:
    property_name: str
    descending: bool


@dataclass(frozen=True)
class SearchRequest:
    filter_groups: list[list[dict[str, Any]]]
    sorts: list[Sort]
    properties: list[str]
    limit: int
    after: int
    query: str | None


@dataclass(frozen=True)
class SearchPage:
    total: int
    results: list[CrmRecord]
    next_after: str | None


def parse_search_request(body: Any, limits: SearchLimits, *, strict: bool) -> SearchRequest:
    if not isinstance(body, dict):
        raise validation_error("Search request body must be a JSON object")
    if strict:
        # PublicObjectSearchRequest's required fields (fact sheet §13a).
        missing = [
            k for k in ("after", "filterGroups", "limit", "properties", "sorts") if k not in body
        ]
        if missing:
            raise validation_error(
                f"Invalid input JSON: missing required field(s) {missing} of PublicObjectSearchRequest"
            )
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise validation_error("filterGroups must be an array")
    if len(groups_raw) > limits.max_groups:
        raise validation_error(
            f"Too many filter groups ({len(groups_raw)}); the maximum is {limits.max_groups}"
        )
    groups: list[list[dict[str, Any]]] = []
    total_filters = 0
    for group in groups_raw:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise validation_error("Each filterGroup needs a 'filters' array")
        if len(filters) > limits.max_filters_per_group:
            raise validation_error(
                f"Too many filters in a group ({len(filters)}); the maximum is "
                f"{limits.max_filters_per_group}"
            )
        total_filters += len(filters)
        for flt in filters:
            _check_filter(flt)
        groups.append(filters)
    if total_filters > limits.max_filters_total:
        raise validation_error(
            f"Too many filters ({total_filters}); the maximum is {limits.max_filters_total}"
        )

    limit = body.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise validation_error(f"limit must be a non-negative integer, got {limit!r}")
    if limit > limits.max_limit:
        raise validation_error(f"limit must be at most {limits.max_limit}, got {limit}")
    after_raw = body.get("after")
    after = 0
    if after_raw not in (None, ""):
        if not re.fullmatch(r"\d+", str(after_raw)):
            raise validation_error(f"after must be a stringified offset, got {after_raw!r}")
        after = int(after_raw)
    if after >= limits.result_cap:
        raise validation_error(
            f"Paging beyond {limits.result_cap} results is not supported (after={after}). "
            "Narrow the filter instead.",
            sub_category="SEARCH_RESULT_LIMIT_EXCEEDED",
        )
    properties = body.get("properties") or []
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise validation_error("properties must be an array of strings")
    query = body.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > 3000):
        raise validation_error("query must be a string of at most 3000 characters")
    return SearchRequest(groups, _parse_sorts(body.get("sorts")), properties, limit, after, query)


def _check_filter(flt: Any) -> None:
    if not isinstance(flt, dict) or "propertyName" not in flt or "operator" not in flt:
        raise validation_error("Filter requires propertyName and operator")
    operator = flt["operator"]
    if operator not in OPERATORS:
        raise validation_error(f"Unknown filter operator {operator!r}")
    if operator in _NEEDS_VALUE and flt.get("value") is None:
        raise validation_error(f"Operator {operator} requires 'value'")
    if operator == "BETWEEN" and flt.get("highValue") is None:
        raise validation_error("Operator BETWEEN requires 'value' and 'highValue'")
    if operator in {"IN", "NOT_IN"} and not isinstance(flt.get("values"), list):
        raise validation_error(f"Operator {operator} requires a 'values' array")
    for key in ("value", "highValue"):
        if key in flt and flt[key] is not None and not isinstance(flt[key], str | int | float):
            raise validation_error(f"Filter {key} must be a string")


def _parse_sorts(raw: Any) -> list[Sort]:
    """Both the documented object form and the spec's string form (``"-createdate"``)."""
    sorts: list[Sort] = []
    for item in raw or []:
        if isinstance(item, str):
            sorts.append(Sort(item.lstrip("-"), item.startswith("-")))
        elif isinstance(item, dict) and isinstance(item.get("propertyName"), str):
            direction = str(item.get("direction", "ASCENDING")).upper()
            if direction not in {"ASCENDING", "DESCENDING"}:
                raise validation_error(f"Unknown sort direction {direction!r}")
            sorts.append(Sort(item["propertyName"], direction == "DESCENDING"))
        else:
            raise validation_error(f"Invalid sort {item!r}")
    return sorts


# --------------------------------------------------------------------------- evaluation


def run_search(state: HubSpotState, object_type: str, request: SearchRequest) -> SearchPage:
    anchored = _anchored_search(state, object_type, request)
    if anchored is not None:
        return anchored
    matches = _matches(state, object_type, request.filter_groups, request)
    total = len(matches)
    end = request.after + request.limit
    page = matches[request.after : end]
    return SearchPage(total, page, str(end) if end < total else None)


def _matches(
    state: HubSpotState,
    object_type: str,
    filter_groups: list[list[dict[str, Any]]],
    request: SearchRequest,
) -> list[CrmRecord]:
    evaluator = _Evaluator(state, object_type)
    matches = [
        record
        for record in state.live_records(object_type)
        if (not filter_groups or any(evaluator.group(record, g) for g in filter_groups))
        and evaluator.query(record, request.query)
    ]
    for sort in reversed(request.sorts):
        matches.sort(key=evaluator.sort_key(sort.property_name), reverse=sort.descending)
    return matches


_ANCHOR_OPERATORS = frozenset({"GT", "GTE"})


def _anchored_search(
    state: HubSpotState, object_type: str, request: SearchRequest
) -> SearchPage | None:
    """The same answer as the general path, fast, for the re-anchored paging recipe.

    A search sorted by ``hs_object_id`` ascending whose every filter group holds the same
    ``hs_object_id GT/GTE n`` anchor is the rest of one fixed result (the search without
    the anchor) from the first id past ``n``. That result is evaluated once and cached
    until the portal changes (``state.version``), so paging through 100,000 records costs
    one evaluation instead of one per page (the general path is quadratic). Anything
    else -- other sorts, mixed anchors, non-numeric ids -- takes the general path.
    """
    if [(s.property_name, s.descending) for s in request.sorts] != [("hs_object_id", False)]:
        return None
    if not request.filter_groups:
        return None
    anchor: tuple[str, float] | None = None
    rest: list[list[dict[str, Any]]] = []
    for group in request.filter_groups:
        found = [
            f
            for f in group
            if f.get("propertyName") == "hs_object_id" and f.get("operator") in _ANCHOR_OPERATORS
        ]
        if len(found) != 1:
            return None
        try:
            value = float(str(found[0]["value"]))
        except (TypeError, ValueError):
            return None
        this = (str(found[0]["operator"]), value)
        if anchor is not None and this != anchor:
            return None
        anchor = this
        rest.append([f for f in group if f is not found[0]])
    assert anchor is not None
    key = (
        object_type,
        json.dumps(rest, sort_keys=True, default=str),
        request.query,
    )
    cached = state.search_cache.get(key)
    if cached is None:
        matches = _matches(state, object_type, rest, request)
        if not all(r.object_id.isdigit() for r in matches):
            return None
        cached = (matches, [int(r.object_id) for r in matches])
        state.search_cache[key] = cached
    matches, ids = cast(tuple[list[CrmRecord], list[int]], cached)
    operator, value = anchor
    start = bisect.bisect_right(ids, value) if operator == "GT" else bisect.bisect_left(ids, value)
    total = len(matches) - start
    end = request.after + request.limit
    page = matches[start + request.after : start + end]
    return SearchPage(total, page, str(end) if end < total else None)


class _Evaluator:
    def __init__(self, state: HubSpotState, object_type: str) -> None:
        self.state = state
        self.object_type = object_type

    def group(self, record: CrmRecord, filters: list[dict[str, Any]]) -> bool:
        return all(self.filter(record, f) for f in filters)

    def query(self, record: CrmRecord, query: str | None) -> bool:
        if not query:
            return True
        needle = query.casefold().strip("*")
        fields = QUERY_PROPERTIES.get(self.object_type, ())
        return any(needle in record.properties.get(f, "").casefold() for f in fields) or (
            needle == record.object_id
        )

    def filter(self, record: CrmRecord, flt: dict[str, Any]) -> bool:
        name: str = flt["propertyName"]
        operator: str = flt["operator"]
        if name.startswith("associations."):
            return self._association_filter(record, name, operator, flt)
        raw = record.properties.get(name)
        present = raw not in (None, "")
        if operator == "HAS_PROPERTY":
            return present
        if operator == "NOT_HAS_PROPERTY":
            return not present
        if not present:
            # Records without a value only match the negative operators (emulator assumption).
            return operator in {"NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN"}
        assert raw is not None
        prop = self.state.property_def(self.object_type, name)
        ptype = prop.type if prop is not None else "string"
        if prop is not None and prop.multi_valued and operator in {"EQ", "NEQ", "IN", "NOT_IN"}:
            tokens = {t.casefold() for t in raw.split(";")}
            wanted = {str(v).casefold() for v in (flt.get("values") or [flt.get("value")])}
            hit = bool(tokens & wanted)
            return hit if operator in {"EQ", "IN"} else not hit
        if operator in {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}:
            hit = _contains_token(raw, str(flt["value"]))
            return hit if operator == "CONTAINS_TOKEN" else not hit
        value = _coerce(ptype, raw, name, strict=False)
        if value is None:
            return False
        if operator in {"IN", "NOT_IN"}:
            candidates = {_coerce(ptype, str(v), name, strict=True) for v in flt["values"]}
            return (value in candidates) == (operator == "IN")
        low = _coerce(ptype, str(flt["value"]), name, strict=True)
        if operator == "BETWEEN":
            high = _coerce(ptype, str(flt["highValue"]), name, strict=True)
            return _cmp(low, value) <= 0 <= _cmp(high, value)
        comparison = _cmp(value, low)
        return {
            "EQ": comparison == 0,
            "NEQ": comparison != 0,
            "LT": comparison < 0,
            "LTE": comparison <= 0,
            "GT": comparison > 0,
            "GTE": comparison >= 0,
        }[operator]

    def _association_filter(
        self, record: CrmRecord, name: str, operator: str, flt: dict[str, Any]
    ) -> bool:
        to_type = normalize_object_type(name.split(".", 1)[1])
        if to_type is None:
            raise validation_error(f"Unknown association filter {name!r}")
        ids = {
            to_id for to_id, _ in self.state.associated(self.object_type, record.object_id, to_type)
        }
        if operator == "HAS_PROPERTY":
            return bool(ids)
        if operator == "NOT_HAS_PROPERTY":
            return not ids
        wanted = {str(v) for v in (flt.get("values") or [flt.get("value")])}
        hit = bool(ids & wanted)
        if operator in {"EQ", "IN"}:
            return hit
        if operator in {"NEQ", "NOT_IN"}:
            return not hit
        raise validation_error(f"Operator {operator} is not supported on associations")

    def sort_key(self, name: str) -> Callable[[CrmRecord], tuple[Any, ...]]:
        ptype = self.state.property_type(self.object_type, name)

        def key(record: CrmRecord) -> tuple[Any, ...]:
            raw = record.object_id if name == "hs_object_id" else record.properties.get(name)
            value = _coerce(ptype, raw, name, strict=False) if raw else None
            if value is None:
                return (1, 0, "", id_key(record.object_id))
            if isinstance(value, str):
                return (0, 0, value, id_key(record.object_id))
            return (0, value, "", id_key(record.object_id))

        return key


def _coerce(ptype: str, raw: str, name: str, *, strict: bool) -> Any:
    """Comparable value: epoch ms for dates, float for numbers, casefolded text otherwise."""
    if ptype in DATETIME_TYPES:
        parsed: Any = parse_hs_time(raw)
    elif ptype == "number":
        try:
            parsed = float(raw)
        except ValueError:
            parsed = None
    else:
        return raw.casefold()
    if parsed is None and strict:
        raise ApiError(
            400,
            f"There was a problem with the request: {raw!r} is not a valid value for "
            f"{ptype} property {name!r} (use epoch milliseconds for dates).",
            "VALIDATION_ERROR",
        )
    return parsed


def _cmp(left: Any, right: Any) -> int:
    if isinstance(left, str) != isinstance(right, str):
        left, right = str(left), str(right)
    return int(left > right) - int(left < right)


def _contains_token(raw: str, token: str) -> bool:
    token = token.casefold()
    words = [w for w in re.split(r"[\s;,]+", raw.casefold()) if w]
    if "*" in token:
        return any(fnmatch.fnmatchcase(w, token) for w in words) or fnmatch.fnmatchcase(
            raw.casefold(), token
        )
    return token in words
