"""Request context, replies and the CRM object / search / association endpoints of the HubSpot
emulator. Lists are in ``hubspot_lists.py``, properties in ``hubspot_properties.py``; HTTP
plumbing, auth, limits and faults in ``hubspot_server.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from tests.emulators.hubspot_control import Fault
from tests.emulators.hubspot_model import (
    ApiError,
    CrmRecord,
    ForeignWrite,
    Json,
    created_property,
    decode_cursor,
    encode_cursor,
    id_key,
    iso_ms,
    modified_property,
    normalize_object_type,
    not_found,
    validation_error,
)
from tests.emulators.hubspot_search import SearchLimits, parse_search_request, run_search
from tests.emulators.hubspot_state import HubSpotState

#: Engagement objects (calls, emails, ...) are governed by the contacts scopes [unverified].
ENGAGEMENT_SCOPE = "contacts"

DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname"),
    "companies": ("name", "domain"),
    "deals": ("dealname", "amount", "closedate", "dealstage", "pipeline"),
}


@dataclass(frozen=True)
class ApiLimits:
    """Per-call sizes (fact sheet §4, §8, §10). Override in tests to exercise paging cheaply."""

    batch_read_inputs: int = 100
    batch_update_inputs: int = 100
    object_page_max: int = 100
    object_page_max_with_history: int = 50
    association_batch_inputs: int = 1_000
    association_batch_page_size: int = 500
    association_page_max: int = 500
    membership_page_max: int = 250
    membership_ids_per_call: int = 100_000
    record_memberships_batch_inputs: int = 100
    list_search_count_max: int = 500
    search: SearchLimits = field(default_factory=SearchLimits)


@dataclass
class Reply:
    status: int
    body: Json = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json;charset=utf-8"

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


@dataclass
class Ctx:
    """One request as the handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Json
    scopes: frozenset[str]
    base_url: str
    strict: bool
    partial: Fault | None = None
    unattributed: Fault | None = None
    short_page: Fault | None = None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def q_list(self, name: str) -> list[str]:
        return [part for value in self.query.get(name, []) for part in value.split(",") if part]

    def q_bool(self, name: str) -> bool:
        return (self.q(name) or "false").lower() == "true"

    def q_int(self, name: str, default: int, maximum: int) -> int:
        raw = self.q(name)
        if raw is None:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise validation_error(
                f"{name} must be an integer between 1 and {maximum}, got {raw!r}"
            )
        return int(raw)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiError(
                403,
                "This app hasn't been granted all required scopes to make this call. "
                "Read more about required scopes here: https://developers.hubspot.com/scopes.",
                "MISSING_SCOPES",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]},
                    }
                ],
                extra={"links": {"scopes": "https://developers.hubspot.com/scopes"}},
            )

    def partial_ids(self, inputs: list[str]) -> set[str]:
        if self.partial is None:
            return set()
        return set(self.partial.ids) if self.partial.ids else set(inputs[-1:])

    def partial_error(self, ids: list[str]) -> dict[str, Json]:
        """The 207 error of a PARTIAL refusal, naming the refused records."""
        assert self.partial is not None
        return batch_error(
            self.partial.category,
            "Some records could not be written; the CRM refused them.",
            {"ids": list(dict.fromkeys(ids))},
        )

    def unattributed_ids(self, inputs: list[str]) -> set[str]:
        """Ids an UNATTRIBUTED fault affects (its ``ids``, default every input)."""
        if self.unattributed is None:
            return set()
        return set(self.unattributed.ids) if self.unattributed.ids else set(inputs)

    def unattributed_error(self) -> dict[str, Json] | None:
        """The 207 error entry that names no record (``context.ids`` empty or ``[""]``)."""
        if self.unattributed is None:
            return None
        return batch_error(
            "VALIDATION_ERROR",
            "One or more records could not be processed.",
            {"ids": list(self.unattributed.context_ids)},
        )

    def json_object(self) -> dict[str, Json]:
        if not isinstance(self.body, dict):
            raise validation_error("Invalid input JSON: expected a JSON object body")
        return self.body

    def required(self, body: dict[str, Json], schema: str, *names: str) -> None:
        if self.strict:
            missing = [n for n in names if n not in body]
            if missing:
                raise validation_error(f"Invalid input JSON: {schema} requires {missing}")


def object_scope(object_type: str, access: str) -> str:
    base = ENGAGEMENT_SCOPE if object_type not in DEFAULT_PROPERTIES else object_type
    return f"crm.objects.{base}.{access}"


def schema_scope(object_type: str, access: str) -> str:
    base = ENGAGEMENT_SCOPE if object_type not in DEFAULT_PROPERTIES else object_type
    return f"crm.schemas.{base}.{access}"


def resolve_type(raw: str) -> str:
    object_type = normalize_object_type(raw)
    if object_type is None:
        raise ApiError(400, f"Unable to infer object type from: {raw}", "VALIDATION_ERROR")
    return object_type


def object_json(
    record: CrmRecord,
    properties: list[str] | None,
    *,
    history: list[str] | None = None,
    associations: dict[str, Json] | None = None,
) -> dict[str, Json]:
    always = (
        "hs_object_id",
        created_property(record.object_type),
        modified_property(record.object_type),
    )
    names = list(
        dict.fromkeys([*always, *(properties or DEFAULT_PROPERTIES.get(record.object_type, ()))])
    )
    out: dict[str, Json] = {
        "id": record.object_id,
        "properties": {n: record.properties.get(n) for n in names},
        "createdAt": iso_ms(record.created_at),
        "updatedAt": iso_ms(record.updated_at),
        "archived": record.archived,
    }
    if record.archived_at is not None:
        out["archivedAt"] = iso_ms(record.archived_at)
    if history:
        out["propertiesWithHistory"] = {
            name: [
                {
                    "value": change.value,
                    "timestamp": iso_ms(change.timestamp),
                    "sourceType": change.source_type,
                }
                for change in reversed(record.history.get(name, []))
            ]
            for name in history
        }
    if associations:
        out["associations"] = associations
    return out


def batch_reply(
    results: list[Json], errors: list[dict[str, Json]], started: str, done: str
) -> Reply:
    body: dict[str, Json] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": done,
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return Reply(207, body)
    return Reply(200, body)


def batch_error(
    category: str, message: str, context: dict[str, list[str]], **extra: Json
) -> dict[str, Json]:
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": [],
        "links": {},
        **extra,
    }


Handler = Callable[..., Reply]


class RouteGroup:
    """A family of endpoints; ``table()`` gives (method, path regex, handler, is_search)."""

    def __init__(self, state: HubSpotState, limits: ApiLimits) -> None:
        self.state = state
        self.limits = limits

    def table(self) -> list[tuple[str, str, Handler, bool]]:
        raise NotImplementedError

    def _foreign(self, ctx: Ctx, kind: str, target: str, detail: str = "") -> None:
        self.state.foreign_writes.append(ForeignWrite(kind, target, ctx.method, ctx.path, detail))


SEG = "[^/]+"


class ObjectRoutes(RouteGroup):
    """CRM objects v3 (list, get, batch read/update, search) and associations v4."""

    def table(self) -> list[tuple[str, str, Handler, bool]]:
        seg = SEG
        return [
            ("POST", rf"/crm/v3/objects/(?P<otype>{seg})/search", self.search, True),
            ("POST", rf"/crm/v3/objects/(?P<otype>{seg})/batch/read", self.batch_read, False),
            ("POST", rf"/crm/v3/objects/(?P<otype>{seg})/batch/update", self.batch_update, False),
            ("GET", rf"/crm/v3/objects/(?P<otype>{seg})", self.list_objects, False),
            ("GET", rf"/crm/v3/objects/(?P<otype>{seg})/(?P<oid>{seg})", self.get_object, False),
            (
                "POST",
                rf"/crm/v4/associations/(?P<from_type>{seg})/(?P<to_type>{seg})/batch/read",
                self.assoc_batch_read,
                False,
            ),
            (
                "GET",
                rf"/crm/v4/objects/(?P<from_type>{seg})/(?P<oid>{seg})/associations/(?P<to_type>{seg})",
                self.assoc_get,
                False,
            ),
            (
                "GET",
                rf"/crm/v4/associations/(?P<from_type>{seg})/(?P<to_type>{seg})/labels",
                self.assoc_labels,
                False,
            ),
        ]

    # ------------------------------------------------------------------ objects

    def list_objects(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "read"))
        history = ctx.q_list("propertiesWithHistory")
        cap = self.limits.object_page_max_with_history if history else self.limits.object_page_max
        limit = ctx.q_int("limit", 10, cap)
        records = (
            self.state.archived_records(object_type)
            if ctx.q_bool("archived")
            else self.state.live_records(object_type)
        )
        after = ctx.q("after")
        if after:
            last = id_key(decode_cursor(after))
            records = [r for r in records if id_key(r.object_id) > last]
        page = records[:limit]
        assoc_types = [resolve_type(t) for t in ctx.q_list("associations")]
        results = [
            object_json(
                r,
                ctx.q_list("properties"),
                history=history,
                associations=self._inline_associations(r, assoc_types),
            )
            for r in page
        ]
        body: dict[str, Json] = {"results": results}
        if len(records) > limit:
            cursor = encode_cursor(page[-1].object_id)
            body["paging"] = {
                "next": {"after": cursor, "link": f"{ctx.base_url}{ctx.path}?after={quote(cursor)}"}
            }
        return Reply(200, body)

    def _inline_associations(
        self, record: CrmRecord, to_types: list[str]
    ) -> dict[str, Json] | None:
        out: dict[str, Json] = {}
        for to_type in to_types:
            targets = self.state.associated(record.object_type, record.object_id, to_type)
            if targets:
                kind = f"{record.object_type[:-1]}_to_{to_type[:-1]}"
                out[to_type] = {
                    "results": [{"id": to_id, "type": kind} for to_id, _ in targets[:100]]
                }
        return out or None

    def get_object(self, ctx: Ctx, otype: str, oid: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "read"))
        id_property = ctx.q("idProperty")
        archived = ctx.q_bool("archived")
        record = (
            self.state.find_by_property(object_type, id_property, oid)
            if id_property
            else self.state.get_record(object_type, oid, archived=archived)
        )
        if record is None:
            raise not_found(
                "Object not found.  objectId are usually numeric.", context={"id": [oid]}
            )
        assoc_types = [resolve_type(t) for t in ctx.q_list("associations")]
        return Reply(
            200,
            object_json(
                record,
                ctx.q_list("properties"),
                history=ctx.q_list("propertiesWithHistory"),
                associations=self._inline_associations(record, assoc_types),
            ),
        )

    def batch_read(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "read"))
        body = ctx.json_object()
        ctx.required(
            body,
            "BatchReadInputSimplePublicObjectId",
            "inputs",
            "properties",
            "propertiesWithHistory",
        )
        ids = self._input_ids(ctx, body, self.limits.batch_read_inputs)
        started = iso_ms(self.state.clock.now())
        failing = ctx.partial_ids(ids)
        id_property = body.get("idProperty")
        archived = ctx.q_bool("archived")
        results: list[Json] = []
        missing: list[str] = []
        for oid in ids:
            record = (
                self.state.find_by_property(object_type, id_property, oid)
                if id_property
                else self.state.get_record(object_type, oid, archived=archived)
            )
            if record is None or oid in failing:
                missing.append(oid)
            else:
                results.append(
                    object_json(
                        record, body.get("properties"), history=body.get("propertiesWithHistory")
                    )
                )
        errors = []
        if missing:
            errors.append(
                batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {object_type[:-1].upper()} objects, they may be deleted or "
                    "not exist. Check that ids are valid.",
                    {"ids": missing},
                )
            )
        return batch_reply(results, errors, started, iso_ms(self.state.clock.now()))

    def _input_ids(self, ctx: Ctx, body: dict[str, Json], cap: int) -> list[str]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise validation_error("Invalid input JSON: 'inputs' must be an array")
        if len(inputs) > cap:
            raise validation_error(f"Too many inputs: {len(inputs)} (the maximum is {cap})")
        ids: list[str] = []
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item:
                raise validation_error("Invalid input JSON: every input needs an 'id'")
            raw = item["id"]
            if ctx.strict and not isinstance(raw, str):
                raise validation_error(f"Invalid input JSON: id must be a string, got {raw!r}")
            ids.append(str(raw))
        return ids

    def batch_update(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "write"))
        body = ctx.json_object()
        ctx.required(body, "BatchInputSimplePublicObjectBatchInput", "inputs")
        ids = self._input_ids(ctx, body, self.limits.batch_update_inputs)
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise validation_error(
                f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique"
            )
        started = iso_ms(self.state.clock.now())
        # Validate every value before touching anything: an invalid value fails the whole batch.
        planned: list[tuple[str, dict[str, str], str | None]] = []
        for item in body["inputs"]:
            ctx.required(item, "SimplePublicObjectBatchInput", "id", "properties")
            props = item.get("properties")
            if not isinstance(props, dict):
                raise validation_error("Invalid input JSON: 'properties' must be an object")
            clean: dict[str, str] = {}
            for name, value in props.items():
                if isinstance(value, dict | list):
                    raise validation_error(
                        f"Invalid input JSON: value of {name!r} must be a string"
                    )
                text = (
                    "" if value is None else value if isinstance(value, str) else json.dumps(value)
                )
                clean[name] = self.state.validate_value(object_type, name, text)
            planned.append((str(item["id"]), clean, item.get("idProperty")))
        # PARTIAL: some records refused (or reported not found); they are not written.
        failing = ctx.partial_ids(ids)
        refused = [] if ctx.partial is None or ctx.partial.not_found else failing
        # UNATTRIBUTED: the affected records are written (or not) but left out of results[],
        # and the 207 error that covers them names no record (fact sheet 2026-12 update, 8).
        affected = ctx.unattributed_ids(ids)
        skip = affected if ctx.unattributed is not None and not ctx.unattributed.applied else set()
        results: list[Json] = []
        missing: list[str] = []
        for oid, props, id_property in planned:
            if oid in refused:
                continue
            record = (
                self.state.find_by_property(object_type, id_property, oid)
                if id_property
                else self.state.get_record(object_type, oid)
            )
            if record is None or oid in failing:
                missing.append(oid)
                continue
            if oid in skip:
                continue
            for name in props:
                prop = self.state.property_def(object_type, name)
                if prop is not None and prop.foreign and not prop.hubspot_defined:
                    self._foreign(ctx, "property_value", name, f"{object_type}/{record.object_id}")
            self.state.update_record(record, props, source="INTEGRATION")
            if oid not in affected:
                results.append(object_json(record, list(props)))
        errors = []
        unattributed = ctx.unattributed_error()
        if unattributed is not None:
            errors.append(unattributed)
        named = [oid for oid in ids if oid in refused]
        if named and ctx.partial is not None:
            errors.append(ctx.partial_error(named))
        if missing:
            errors.append(
                batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not find {object_type[:-1].upper()}(s) with id(s): {', '.join(missing)}",
                    {"ids": missing},
                )
            )
        return batch_reply(results, errors, started, iso_ms(self.state.clock.now()))

    def search(self, ctx: Ctx, otype: str) -> Reply:
        object_type = resolve_type(otype)
        ctx.require(object_scope(object_type, "read"))
        request = parse_search_request(ctx.body, self.limits.search, strict=ctx.strict)
        page = run_search(self.state, object_type, request)
        results, next_after = page.results, page.next_after
        if ctx.short_page is not None:
            # HubSpot may answer fewer results than ``limit`` while more match (fact sheet
            # 2026-12 update, 8). The cursor points just past what was returned, so no
            # record is skipped whichever way a client pages on; like HubSpot's, it is
            # there exactly while more records match.
            keep = ctx.short_page.keep
            results = results[: len(results) // 2 if keep is None else keep]
            shown = request.after + len(results)
            next_after = str(shown) if shown < page.total else None
        body: dict[str, Json] = {
            "total": page.total,
            "results": [object_json(r, request.properties) for r in results],
        }
        if next_after is not None:
            body["paging"] = {"next": {"after": next_after}}
        return Reply(200, body)

    # ------------------------------------------------------------------ associations v4

    def _assoc_page(
        self, from_type: str, from_id: str, to_type: str, after: str | None, size: int
    ) -> tuple[list[Json], str | None, int]:
        targets = self.state.associated(from_type, from_id, to_type)
        start = int(decode_cursor(after)) if after else 0
        chunk = targets[start : start + size]
        results = [
            {"toObjectId": to_id, "associationTypes": [e.to_json() for e in edges]}
            for to_id, edges in chunk
        ]
        nxt = encode_cursor(start + size) if start + size < len(targets) else None
        return results, nxt, len(targets)

    def assoc_batch_read(self, ctx: Ctx, from_type: str, to_type: str) -> Reply:
        src, dst = resolve_type(from_type), resolve_type(to_type)
        ctx.require(object_scope(src, "read"))
        ctx.require(object_scope(dst, "read"))
        body = ctx.json_object()
        ctx.required(body, "BatchInputPublicFetchAssociationsBatchRequest", "inputs")
        ids = self._input_ids(ctx, body, self.limits.association_batch_inputs)
        started = iso_ms(self.state.clock.now())
        results: list[Json] = []
        errors: list[dict[str, Json]] = []
        for oid, item in zip(ids, body["inputs"], strict=True):
            record = self.state.get_record(src, oid)
            page, nxt, total = (
                self._assoc_page(
                    src,
                    record.object_id,
                    dst,
                    item.get("after"),
                    self.limits.association_batch_page_size,
                )
                if record is not None
                else ([], None, 0)
            )
            if total == 0:
                errors.append(
                    batch_error(
                        "OBJECT_NOT_FOUND",
                        f"No {dst} is associated with {src[:-1]} {oid}.",
                        {"fromObjectId": [oid], "toObjectType": [dst]},
                        subCategory="crm.associations.NO_ASSOCIATIONS_FOUND",
                    )
                )
                continue
            entry: dict[str, Json] = {"from": {"id": oid}, "to": page}
            if nxt is not None:
                entry["paging"] = {"next": {"after": nxt}}
            results.append(entry)
        return batch_reply(results, errors, started, iso_ms(self.state.clock.now()))

    def assoc_get(self, ctx: Ctx, from_type: str, oid: str, to_type: str) -> Reply:
        src, dst = resolve_type(from_type), resolve_type(to_type)
        ctx.require(object_scope(src, "read"))
        ctx.require(object_scope(dst, "read"))
        limit = ctx.q_int("limit", 500, self.limits.association_page_max)
        record = self.state.get_record(src, oid)
        if record is None:
            return Reply(200, {"results": []})
        page, nxt, _ = self._assoc_page(src, record.object_id, dst, ctx.q("after"), limit)
        body: dict[str, Json] = {"results": page}
        if nxt is not None:
            link = f"{ctx.base_url}{ctx.path}?after={quote(nxt)}&limit={limit}"
            body["paging"] = {"next": {"after": nxt, "link": link}}
        return Reply(200, body)

    def assoc_labels(self, ctx: Ctx, from_type: str, to_type: str) -> Reply:
        src, dst = resolve_type(from_type), resolve_type(to_type)
        ctx.require(object_scope(src, "read"))
        seen: dict[tuple[str, int], Json] = {}
        for (f_type, _, t_type), targets in self.state.associations.items():
            if f_type == src and t_type == dst:
                for edges in targets.values():
                    for edge in edges:
                        seen.setdefault((edge.category, edge.type_id), edge.to_json())
        return Reply(200, {"results": list(seen.values())})
