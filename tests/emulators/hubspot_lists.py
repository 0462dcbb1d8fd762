"""Lists v3 endpoints of the HubSpot emulator (static MANUAL/SNAPSHOT lists and memberships).

Membership writes answer ``MembershipsUpdateResponse`` (``recordsIdsAdded`` sic); with an
UNATTRIBUTED fault they answer 207 with an error whose ``context.ids`` names no record and
leave the affected ids out of all three arrays. ``POST /crm/v3/lists/records/memberships/
batch/read`` answers every live list each input record is in (``BatchInputRecordIdInput``
-> ``BatchResponseRecordIdWithMemberships``, Lists v3 spec), 207 with an OBJECT_NOT_FOUND
error for records that do not exist (the error's ``context.ids`` key is an emulator
assumption; HubSpot documents only that ``context`` maps keys to id lists).
"""

from __future__ import annotations

from tests.emulators.hubspot_model import (
    TYPE_ID_TO_NAME,
    ApiError,
    HsList,
    Json,
    decode_cursor,
    encode_cursor,
    id_key,
    iso_ms,
    not_found,
    validation_error,
)
from tests.emulators.hubspot_routes import (
    SEG,
    Ctx,
    Handler,
    Reply,
    RouteGroup,
    batch_error,
    batch_reply,
)

PROCESSING_TYPES = frozenset({"MANUAL", "SNAPSHOT", "DYNAMIC"})


class ListRoutes(RouteGroup):
    def table(self) -> list[tuple[str, str, Handler, bool]]:
        seg = SEG
        lists = "/crm/v3/lists"
        lid = rf"{lists}/(?P<list_id>{seg})"
        return [
            ("POST", lists, self.list_create, False),
            ("GET", lists, self.list_get_many, False),
            ("POST", f"{lists}/search", self.list_search, False),
            (
                "GET",
                rf"{lists}/object-type-id/(?P<type_id>{seg})/name/(?P<name>{seg})",
                self.list_by_name,
                False,
            ),
            (
                "GET",
                rf"{lists}/records/(?P<type_id>{seg})/(?P<record_id>{seg})/memberships",
                self.record_lists,
                False,
            ),
            ("POST", f"{lists}/records/memberships/batch/read", self.records_batch_read, False),
            ("GET", lid, self.list_get, False),
            ("DELETE", lid, self.list_delete, False),
            ("PUT", rf"{lid}/restore", self.list_restore, False),
            ("PUT", rf"{lid}/update-list-name", self.list_rename, False),
            ("PUT", rf"{lid}/memberships/add", self.members_add, False),
            ("PUT", rf"{lid}/memberships/remove", self.members_remove, False),
            ("PUT", rf"{lid}/memberships/add-and-remove", self.members_add_remove, False),
            ("DELETE", rf"{lid}/memberships", self.members_clear, False),
            ("GET", rf"{lid}/memberships", self.members_get, False),
            ("GET", rf"{lid}/memberships/join-order", self.members_join_order, False),
        ]

    # ------------------------------------------------------------------ lists v3

    def _list(self, list_id: str) -> HsList:
        lst = self.state.live_list(list_id)
        if lst is None:
            raise not_found(f"List {list_id} does not exist.", context={"listId": [list_id]})
        return lst

    def list_create(self, ctx: Ctx) -> Reply:
        ctx.require("crm.lists.write")
        body = ctx.json_object()
        ctx.required(body, "ListCreateRequest", "name", "objectTypeId", "processingType")
        name, type_id, processing = (
            body.get("name"),
            body.get("objectTypeId"),
            body.get("processingType"),
        )
        if not isinstance(name, str) or not name.strip():
            raise validation_error("List name must be a non-empty string")
        if type_id not in TYPE_ID_TO_NAME:
            raise validation_error(f"Unknown objectTypeId {type_id!r}")
        if processing not in PROCESSING_TYPES:
            raise validation_error(f"processingType must be one of {sorted(PROCESSING_TYPES)}")
        if processing == "DYNAMIC" and not body.get("filterBranch"):
            raise validation_error("DYNAMIC lists require a filterBranch")
        lst = self.state.create_list(
            name,
            object_type_id=type_id,
            processing_type=processing,
            foreign=False,
            filter_branch=body.get("filterBranch"),
        )
        return Reply(200, {"list": lst.to_json(include_filters=True)})

    def list_get(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.read")
        return Reply(
            200, {"list": self._list(list_id).to_json(include_filters=ctx.q_bool("includeFilters"))}
        )

    def list_get_many(self, ctx: Ctx) -> Reply:
        ctx.require("crm.lists.read")
        found = [self.state.live_list(i) for i in ctx.q_list("listIds")]
        return Reply(200, {"lists": [lst.to_json() for lst in found if lst is not None]})

    def list_by_name(self, ctx: Ctx, type_id: str, name: str) -> Reply:
        ctx.require("crm.lists.read")
        lst = self.state.find_list_by_name(name, type_id)
        if lst is None:
            raise not_found(f"List with name {name} does not exist.", context={"listName": [name]})
        return Reply(200, {"list": lst.to_json(include_filters=ctx.q_bool("includeFilters"))})

    def list_search(self, ctx: Ctx) -> Reply:
        ctx.require("crm.lists.read")
        body = ctx.json_object()
        ctx.required(body, "ListSearchRequest", "offset", "additionalProperties")
        count = body.get("count", 20)
        offset = body.get("offset", 0)
        if not isinstance(count, int) or not 1 <= count <= self.limits.list_search_count_max:
            raise validation_error(
                f"count must be between 1 and {self.limits.list_search_count_max}"
            )
        if not isinstance(offset, int) or offset < 0:
            raise validation_error("offset must be a non-negative integer")
        query = str(body.get("query") or "").casefold()
        types = set(body.get("processingTypes") or PROCESSING_TYPES)
        list_ids = {str(i) for i in body.get("listIds") or []}
        matches = [
            lst
            for lst in sorted(self.state.lists.values(), key=lambda x: id_key(x.list_id))
            if lst.deleted_at is None
            and query in lst.name.casefold()
            and lst.processing_type in types
            and (not list_ids or lst.list_id in list_ids)
        ]
        page = matches[offset : offset + count]
        extra = list(body.get("additionalProperties") or [])
        lists_out = []
        for lst in page:
            item = lst.to_json()
            size = item.pop("size")
            props = dict.fromkeys(extra)
            props["hs_list_size"] = str(size)
            item["additionalProperties"] = props
            lists_out.append(item)
        return Reply(
            200,
            {
                "lists": lists_out,
                "hasMore": offset + count < len(matches),
                "offset": offset + len(page),
                "total": len(matches),
            },
        )

    def list_rename(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.write")
        lst = self._list(list_id)
        if lst.foreign:
            self._foreign(ctx, "list", list_id, "rename")
        new_name = ctx.q("listName")
        if not new_name:
            raise validation_error("listName is required")
        clash = self.state.find_list_by_name(new_name, lst.object_type_id)
        if clash is not None and clash is not lst:
            raise ApiError(409, f"A list named '{new_name}' already exists.", "CONFLICT")
        lst.name = new_name
        lst.list_version += 1
        lst.updated_at = self.state.clock.now()
        return Reply(
            200, {"updatedList": lst.to_json(include_filters=ctx.q_bool("includeFilters"))}
        )

    def list_delete(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.write")
        lst = self._list(list_id)
        if lst.foreign:
            self._foreign(ctx, "list", list_id, "delete")
        lst.deleted_at = self.state.clock.now()
        return Reply(204)

    def list_restore(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.write")
        lst = self.state.lists.get(list_id)
        if lst is None or lst.deleted_at is None:
            raise not_found(f"No deleted list {list_id} to restore.")
        if lst.foreign:
            self._foreign(ctx, "list", list_id, "restore")
        lst.deleted_at = None
        return Reply(204)

    def _membership_list(self, ctx: Ctx, list_id: str, action: str) -> HsList:
        ctx.require("crm.lists.write")
        lst = self._list(list_id)
        if lst.foreign:
            self._foreign(ctx, "list_membership", list_id, action)
        if lst.processing_type == "DYNAMIC":
            raise validation_error(
                f"List {list_id} is DYNAMIC; memberships can only be changed on MANUAL or SNAPSHOT lists"
            )
        return lst

    def _id_array(self, ctx: Ctx, raw: Json, what: str) -> list[str]:
        if not isinstance(raw, list):
            raise validation_error(
                f"Invalid input JSON: {what} must be an array of record id strings"
            )
        if ctx.strict and not all(isinstance(i, str) for i in raw):
            raise validation_error(f"Invalid input JSON: {what} must contain strings")
        return [str(i) for i in raw]

    def _check_cap(self, count: int) -> None:
        if count > self.limits.membership_ids_per_call:
            raise validation_error(
                f"Too many record ids in one call: {count} (maximum {self.limits.membership_ids_per_call})"
            )

    @staticmethod
    def _membership_reply(
        ctx: Ctx,
        added: list[str],
        removed: list[str],
        missing: list[str],
        hidden: set[str],
        refused: list[str],
    ) -> Reply:
        """``MembershipsUpdateResponse``; 207 with errors when UNATTRIBUTED or PARTIAL fired."""
        # "recordsIdsAdded" (sic) is HubSpot's key (fact sheet §14.12).
        body: dict[str, Json] = {
            "recordsIdsAdded": [i for i in added if i not in hidden],
            "recordIdsRemoved": [i for i in removed if i not in hidden],
            "recordIdsMissing": [i for i in missing if i not in hidden],
        }
        errors = [e for e in (ctx.unattributed_error(),) if e is not None]
        if refused:
            errors.append(ctx.partial_error(refused))
        if not errors:
            return Reply(200, body)
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return Reply(207, body)

    def _change(self, ctx: Ctx, lst: HsList, to_add: list[str], to_remove: list[str]) -> Reply:
        """Remove, then add. PARTIAL refuses ids (an error names them; with a NOT_FOUND
        category they are reported missing instead); UNATTRIBUTED hides (and may skip) ids."""
        self._check_cap(len(to_add) + len(to_remove))
        failing = ctx.partial_ids(to_add + to_remove)
        refused = set() if ctx.partial is None or ctx.partial.not_found else failing
        hidden = ctx.unattributed_ids(to_add + to_remove)
        skip = hidden if ctx.unattributed is not None and not ctx.unattributed.applied else set()
        skip = skip | refused
        removed, missing_r = self.state.remove_members(
            lst, [i for i in to_remove if i not in skip], force_missing=failing - refused
        )
        added, missing_a = self.state.add_members(
            lst, [i for i in to_add if i not in skip], force_missing=failing - refused
        )
        missing = list(dict.fromkeys(missing_a + missing_r))
        named = [i for i in (*to_add, *to_remove) if i in refused]
        return self._membership_reply(ctx, added, removed, missing, hidden, named)

    def members_add(self, ctx: Ctx, list_id: str) -> Reply:
        lst = self._membership_list(ctx, list_id, "add")
        return self._change(ctx, lst, self._id_array(ctx, ctx.body, "request body"), [])

    def members_remove(self, ctx: Ctx, list_id: str) -> Reply:
        lst = self._membership_list(ctx, list_id, "remove")
        return self._change(ctx, lst, [], self._id_array(ctx, ctx.body, "request body"))

    def members_add_remove(self, ctx: Ctx, list_id: str) -> Reply:
        lst = self._membership_list(ctx, list_id, "add-and-remove")
        body = ctx.json_object()
        ctx.required(body, "MembershipChangeRequest", "recordIdsToAdd", "recordIdsToRemove")
        to_add = self._id_array(ctx, body.get("recordIdsToAdd", []), "recordIdsToAdd")
        to_remove = self._id_array(ctx, body.get("recordIdsToRemove", []), "recordIdsToRemove")
        return self._change(ctx, lst, to_add, to_remove)

    def members_clear(self, ctx: Ctx, list_id: str) -> Reply:
        lst = self._membership_list(ctx, list_id, "clear")
        if len(lst.members) >= 100_000:
            raise validation_error("Lists with 100,000 or more members cannot be cleared this way")
        lst.members.clear()
        return Reply(204)

    def members_get(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.read")
        lst = self._list(list_id)
        limit = ctx.q_int("limit", 100, self.limits.membership_page_max)
        ids = sorted(lst.members, key=id_key)
        after, before = ctx.q("after"), ctx.q("before")
        start, stop = 0, len(ids)
        if after:
            key = id_key(decode_cursor(after))
            start = next((i for i, rid in enumerate(ids) if id_key(rid) > key), len(ids))
        elif before:
            key = id_key(decode_cursor(before))
            stop = next((i for i, rid in enumerate(ids) if id_key(rid) >= key), len(ids))
            start = max(0, stop - limit)
        stop = min(stop, start + limit)
        page = ids[start:stop]
        paging: dict[str, Json] = {}
        if page and stop < len(ids):
            paging["next"] = {"after": encode_cursor(page[-1])}
        if page and start > 0:
            paging["prev"] = {"before": encode_cursor(page[0])}
        body: dict[str, Json] = {
            "results": [
                {"recordId": rid, "membershipTimestamp": iso_ms(lst.members[rid])} for rid in page
            ],
            "total": len(lst.members),
        }
        if paging:
            body["paging"] = paging
        return Reply(200, body)

    def members_join_order(self, ctx: Ctx, list_id: str) -> Reply:
        ctx.require("crm.lists.read")
        lst = self._list(list_id)
        limit = ctx.q_int("limit", 100, self.limits.membership_page_max)
        ids = list(lst.members)  # insertion order = join order
        start = int(decode_cursor(ctx.q("after") or encode_cursor(0)))
        page = ids[start : start + limit]
        body: dict[str, Json] = {
            "results": [
                {"recordId": r, "membershipTimestamp": iso_ms(lst.members[r])} for r in page
            ],
            "total": len(ids),
        }
        if start + limit < len(ids):
            body["paging"] = {"next": {"after": encode_cursor(start + limit)}}
        return Reply(200, body)

    def _memberships_of(self, type_id: str, record_id: str) -> list[Json]:
        """``RecordListMembership`` of every live list of ``type_id`` the record is in."""
        return [
            {
                "listId": lst.list_id,
                "listVersion": lst.list_version,
                "firstAddedTimestamp": iso_ms(
                    lst.first_added.get(record_id, lst.members[record_id])
                ),
                "lastAddedTimestamp": iso_ms(lst.members[record_id]),
            }
            for lst in self.state.lists.values()
            if lst.deleted_at is None and lst.object_type_id == type_id and record_id in lst.members
        ]

    def record_lists(self, ctx: Ctx, type_id: str, record_id: str) -> Reply:
        ctx.require("crm.lists.read")
        results = self._memberships_of(type_id, record_id)
        return Reply(200, {"results": results, "total": len(results)})

    def records_batch_read(self, ctx: Ctx) -> Reply:
        """The lists of up to ``record_memberships_batch_inputs`` records (spec: 200 or 207).

        A record that does not exist -- never created, archived, or the absorbed side of a
        merge (merge redirects are not followed: the answer must be about the id asked) --
        is named by an OBJECT_NOT_FOUND error; so are ids a PARTIAL fault picks.
        """
        ctx.require("crm.lists.read")
        body = ctx.json_object()
        ctx.required(body, "BatchInputRecordIdInput", "inputs")
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise validation_error("Invalid input JSON: 'inputs' must be an array")
        cap = self.limits.record_memberships_batch_inputs
        if len(inputs) > cap:
            raise validation_error(f"Too many inputs: {len(inputs)} (the maximum is {cap})")
        asked: list[tuple[str, str]] = []
        for item in inputs:
            if not isinstance(item, dict):
                raise validation_error("Invalid input JSON: every input must be an object")
            ctx.required(item, "RecordIdInput", "objectTypeId", "recordId")
            type_id, record_id = item.get("objectTypeId"), item.get("recordId")
            if ctx.strict and not (isinstance(type_id, str) and isinstance(record_id, str)):
                raise validation_error(
                    "Invalid input JSON: objectTypeId and recordId must be strings, got "
                    f"{type_id!r}, {record_id!r}"
                )
            if str(type_id) not in TYPE_ID_TO_NAME:
                raise validation_error(f"Unknown objectTypeId {type_id!r}")
            asked.append((str(type_id), str(record_id)))
        started = iso_ms(self.state.clock.now())
        failing = ctx.partial_ids([record_id for _, record_id in asked])
        results: list[Json] = []
        missing: list[str] = []
        for type_id, record_id in asked:
            if record_id in failing or not self.state.record_exists(type_id, record_id):
                missing.append(record_id)
                continue
            results.append(
                {
                    "objectTypeId": type_id,
                    "recordId": record_id,
                    "recordListMemberships": self._memberships_of(type_id, record_id),
                }
            )
        errors = []
        if missing:
            errors.append(
                batch_error(
                    "OBJECT_NOT_FOUND",
                    "Could not find records with the following ids; they may be deleted or "
                    "never have existed.",
                    {"ids": list(dict.fromkeys(missing))},
                )
            )
        return batch_reply(results, errors, started, iso_ms(self.state.clock.now()))
