"""Every request body the connector sends, rebuilt through hubspot-api-client's models.

The connector talks to a local emulator through each code path (pull of all four streams,
full and incremental, list create/rename/apply/members, property create/update, batch
update, check). Each recorded JSON body is then deserialised into the SDK model class of
its endpoint (client-side validation on) and serialised back: a key the schema does not
know is dropped, a wrong type is coerced, so the round trip must give back exactly the
body that was sent. Because the v12 models do not enforce every required field, the
spec-required keys listed in the fact sheet (§13a) are checked explicitly as well.

hubspot-api-client 12 has no model for the Lists v3 records-memberships batch read, so
that body is checked against the schema copied from HubSpot's spec (``SPEC_SCHEMAS``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import hubspot.crm.associations.v4 as associations_v4
import hubspot.crm.contacts as contacts_pkg
import hubspot.crm.lists as lists_pkg
import hubspot.crm.properties as properties_pkg
import pytest

from connectors.base import Batch, PullRequest, TargetSpec
from connectors.hubspot import HubSpotConnector
from connectors.hubspot import mapping as m
from tests.connectors.hubspot_helpers import FakeTime, make_connector
from tests.emulators.hubspot import Clock, HubSpotEmulator, RecordedRequest

TOKEN = "pat-na1-schema00-1111-2222-3333-444444444444"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

#: (method, path regex) -> (SDK package, model name, spec-required keys, per-item check)
SCHEMAS: list[tuple[str, str, Any, str, tuple[str, ...]]] = [
    ("POST", r"/crm/v3/objects/[^/]+/search$", contacts_pkg, "PublicObjectSearchRequest",
     ("after", "filterGroups", "limit", "properties", "sorts")),
    ("POST", r"/crm/v4/associations/[^/]+/[^/]+/batch/read$", associations_v4,
     "BatchInputPublicFetchAssociationsBatchRequest", ("inputs",)),
    ("POST", r"/crm/v3/lists$", lists_pkg, "ListCreateRequest",
     ("name", "objectTypeId", "processingType")),
    ("PUT", r"/crm/v3/lists/[^/]+/memberships/add-and-remove$", lists_pkg,
     "MembershipChangeRequest", ("recordIdsToAdd", "recordIdsToRemove")),
    ("POST", r"/crm/v3/properties/contacts$", properties_pkg, "PropertyCreate",
     ("name", "label", "type", "fieldType", "groupName")),
    ("PATCH", r"/crm/v3/properties/contacts/[^/]+$", properties_pkg, "PropertyUpdate", ()),
    ("POST", r"/crm/v3/properties/contacts/groups$", properties_pkg, "PropertyGroupCreate",
     ("name", "label")),
    ("POST", r"/crm/v3/objects/contacts/batch/update$", contacts_pkg,
     "BatchInputSimplePublicObjectBatchInput", ("inputs",)),
]
#: Nested spec-required keys (fact sheet §13a).
NESTED: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "BatchInputPublicFetchAssociationsBatchRequest": lambda b: b["inputs"],
    "BatchInputSimplePublicObjectBatchInput": lambda b: b["inputs"],
    "PropertyCreate": lambda b: b.get("options", []),
    "PropertyUpdate": lambda b: b.get("options", []),
}
NESTED_REQUIRED = {
    "BatchInputPublicFetchAssociationsBatchRequest": ("id",),
    "BatchInputSimplePublicObjectBatchInput": ("id", "properties"),
    "PropertyCreate": ("label", "value", "hidden"),
    "PropertyUpdate": ("label", "value", "hidden"),
}


#: Schemas copied from HubSpot/HubSpot-public-api-spec-collection,
#: PublicApiSpecs/CRM/Lists/Rollouts/144891/v3/lists.json (identical in the 2026-03 file),
#: for bodies the v12 SDK has no model for: (method, path regex, schema name, schema).
SPEC_SCHEMAS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", r"/crm/v3/lists/records/memberships/batch/read$", "BatchInputRecordIdInput", {
        "required": ["inputs"], "type": "object", "properties": {"inputs": {
            "type": "array", "items": {
                "required": ["objectTypeId", "recordId"], "type": "object", "properties": {
                    "objectTypeId": {"type": "string"}, "recordId": {"type": "string"}}}}}}),
]
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def spec_problems(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """The spec subset these schemas use: type, required, properties (no others), items."""
    if not isinstance(value, _JSON_TYPES[schema["type"]]):
        return [f"{where}: expected {schema['type']}, got {type(value).__name__}"]
    problems = []
    if schema["type"] == "object":
        known = schema.get("properties", {})
        problems += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        problems += [f"{where}: unknown key {k}" for k in value if k not in known]
        for key, sub in known.items():
            if key in value:
                problems += spec_problems(sub, value[key], f"{where}.{key}")
    if schema["type"] == "array":
        for i, item in enumerate(value):
            problems += spec_problems(schema["items"], item, f"{where}[{i}]")
    return problems


def through_sdk(package: Any, model: str, body: Any) -> Any:
    configuration = package.Configuration()
    configuration.client_side_validation = True  # the generated default is False
    client = package.ApiClient(configuration)
    built = client._ApiClient__deserialize(body, model)
    return client.sanitize_for_serialization(built)


def validate(request: RecordedRequest) -> str | None:
    """The model name a request was checked against, None if it carries no JSON body."""
    for method, pattern, package, model, required in SCHEMAS:
        if request.method == method and re.search(pattern, request.path):
            body = request.body
            assert isinstance(body, dict), request.path
            assert [k for k in required if k not in body] == [], (model, body)
            for item in NESTED.get(model, lambda b: [])(body):
                missing = [k for k in NESTED_REQUIRED[model] if k not in item]
                assert missing == [], (model, item)
            assert through_sdk(package, model, body) == body, model
            return model
    for method, pattern, model, schema in SPEC_SCHEMAS:
        if request.method == method and re.search(pattern, request.path):
            assert spec_problems(schema, request.body) == [], (model, request.body)
            return model
    assert request.body is None or request.path.startswith("/oauth/"), (
        f"unchecked body for {request.method} {request.path}")
    return None


@pytest.fixture
def traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordedRequest]]:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    fake = FakeTime()
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0), monotonic=fake.monotonic) as hs:
        company = hs.add_company(name="Acme", numberofemployees=300)
        people = [hs.add_contact(email=f"p{i}@example.com", city="Berlin") for i in range(5)]
        for person in people:
            hs.associate("contacts", person, "companies", company)
        deal = hs.add_deal(dealstage="closedwon", amount=10, closedate=T0)
        hs.associate("deals", deal, "contacts", people[0])
        for kind in ("calls", "meetings", "emails", "notes", "tasks"):
            engagement = hs.add_engagement(kind, hs_timestamp=T0, hs_email_direction="EMAIL")
            hs.associate(kind, engagement, "contacts", people[1])
        connector: HubSpotConnector = make_connector(fake, lambda: hs.clock.now(),  # type: ignore[arg-type]
                                                     base_url=hs.base_url, write_mode="both")
        since = T0 - dt.timedelta(days=400)
        for stream, fields in (("companies", {"employees"}), ("contacts", {"city"}),
                               ("purchases", set()), ("activities", set())):
            request = PullRequest(stream, None, frozenset(fields), since)  # type: ignore[arg-type]
            pages = list(connector.pull(request))
            incremental = PullRequest(stream, pages[-1].watermark, frozenset(fields), since)  # type: ignore[arg-type]
            list(connector.pull(incremental))
        ref = connector.ensure_target(TargetSpec("k", "segsync: Berlin"), None, False)
        connector.apply(ref, Batch(tuple(people[:3]), ()))
        connector.apply(ref, Batch((), (people[0],)))
        ref = connector.ensure_target(TargetSpec("k", "segsync: Berliners"), ref, False)
        list(connector.members(ref))
        read = connector.read_memberships([ref], [*people, "424242"])
        assert read.known == frozenset(people)
        connector.ensure_field(["Berliners"])
        connector.ensure_field(["Berliners", "Buyers"])
        connector.write_field({people[0]: ("Berliners", "Buyers"), people[1]: ()})
        connector.check()
        assert hs.internal_errors == []
        yield hs.requests


def test_every_body_sent_matches_its_sdk_model(traffic: list[RecordedRequest]) -> None:
    checked = {validate(r) for r in traffic} - {None}
    # every kind of body was exercised
    assert checked == {s[3] for s in SCHEMAS} | {s[2] for s in SPEC_SCHEMAS}


def test_the_spec_check_catches_what_the_sdk_would() -> None:
    schema = SPEC_SCHEMAS[0][3]
    assert spec_problems(schema, m.membership_read_body(["1", "2"])) == []
    assert spec_problems(schema, {"inputs": [{"recordId": "1"}]}) == [
        "$.inputs[0]: missing objectTypeId"]
    assert spec_problems(schema, {"inputs": [{"objectTypeId": "0-1", "recordId": 1}]}) == [
        "$.inputs[0].recordId: expected string, got int"]
    assert spec_problems(schema, {"inputs": [], "limit": 5}) == ["$: unknown key limit"]


def test_the_sdk_models_enforce_required_fields() -> None:
    with pytest.raises(ValueError, match="record_ids_to_remove"):
        through_sdk(lists_pkg, "MembershipChangeRequest", {"recordIdsToAdd": ["1"]})


def test_search_sorts_use_the_spec_string_form() -> None:
    body = m.search_body([m.gte("lastmodifieddate", 1)], ["email"])
    assert through_sdk(contacts_pkg, "PublicObjectSearchRequest", body) == body
    # The object form HubSpot's guides show does not survive the spec's list[str] typing;
    # segsync only falls back to it when HubSpot rejects or ignores the string form.
    objects = m.search_body([], ["email"], sort_style="object")
    assert through_sdk(contacts_pkg, "PublicObjectSearchRequest", objects) != objects
