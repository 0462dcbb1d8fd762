"""Tests of the HubSpot emulator itself, driven with plain ``requests`` (plus one SDK call)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.emulators.hubspot import (
    ApiLimits,
    Clock,
    Fault,
    HubSpotEmulator,
    RateLimitConfig,
    SearchLimits,
)
from tests.emulators.hubspot_model import epoch_ms

TOKEN = "pat-test-123"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


class Api:
    """Tiny requests wrapper: base URL + bearer token + short timeout."""

    def __init__(self, base_url: str, token: str | None = TOKEN) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PUT", path, json=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def close(self) -> None:
        self.session.close()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hs() -> Iterator[HubSpotEmulator]:
    # Functional tests switch the limiter off; the limit tests build their own emulators.
    no_limits = RateLimitConfig(enabled=False)
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0), rate_limits=no_limits) as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture
def api(hs: HubSpotEmulator) -> Iterator[Api]:
    client = Api(hs.base_url)
    yield client
    client.close()


def search_body(filters: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A PublicObjectSearchRequest with every spec-required field present."""
    body: dict[str, Any] = {
        "filterGroups": [{"filters": filters}] if filters else [],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
        "limit": 200,
        "after": "0",
    }
    body.update(overrides)
    return body


def search_ids(api: Api, filters: list[dict[str, Any]], object_type: str = "contacts") -> list[str]:
    response = api.post(f"/crm/v3/objects/{object_type}/search", search_body(filters))
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


# --------------------------------------------------------------------------- lifecycle & auth


def test_context_manager_binds_ephemeral_localhost_port() -> None:
    with HubSpotEmulator(token=TOKEN) as emulator:
        assert emulator.base_url.startswith("http://127.0.0.1:")
        assert int(emulator.base_url.rsplit(":", 1)[1]) > 0
        response = requests.get(emulator.base_url + "/crm/v3/objects/contacts", timeout=5)
        assert response.status_code == 401
    assert emulator.base_url == ""


def test_missing_and_invalid_token_get_hubspot_401(hs: HubSpotEmulator) -> None:
    anonymous = Api(hs.base_url, token=None)
    wrong = Api(hs.base_url, token="pat-wrong")
    try:
        for client in (anonymous, wrong):
            response = client.get("/crm/v3/objects/contacts")
            assert response.status_code == 401
            body = response.json()
            assert body["status"] == "error"
            assert body["category"] == "INVALID_AUTHENTICATION"
            assert body["correlationId"]
    finally:
        anonymous.close()
        wrong.close()


def test_missing_scope_is_403(hs: HubSpotEmulator, api: Api) -> None:
    hs.set_scopes({"crm.objects.contacts.read"})
    assert api.get("/crm/v3/objects/contacts").status_code == 200
    response = api.post(
        "/crm/v3/lists", {"name": "x", "objectTypeId": "0-1", "processingType": "MANUAL"}
    )
    assert response.status_code == 403
    body = response.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.lists.write"]


def test_private_app_token_introspection(hs: HubSpotEmulator, api: Api) -> None:
    response = api.post("/oauth/v2/private-apps/get/access-token-info", {"tokenKey": TOKEN})
    assert response.status_code == 200
    assert "crm.lists.write" in response.json()["scopes"]
    assert (
        api.post("/oauth/v2/private-apps/get/access-token-info", {"tokenKey": "x"}).status_code
        == 404
    )


def test_oauth_refresh_expiry_and_introspection(hs: HubSpotEmulator, api: Api) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
        "refresh_token": "test-refresh-token",
    }
    response = requests.post(hs.base_url + "/oauth/v1/token", data=form, timeout=5)
    assert response.status_code == 200
    token = response.json()
    assert token["expires_in"] == 1800
    assert token["refresh_token"] == "test-refresh-token"
    oauth = Api(hs.base_url, token=token["access_token"])
    try:
        assert oauth.get("/crm/v3/objects/contacts").status_code == 200
        info = api.get(f"/oauth/v1/access-tokens/{token['access_token']}").json()
        assert info["token_type"] == "access"
        assert info["expires_in"] == 1800
        assert "crm.objects.contacts.read" in info["scopes"]

        hs.clock.advance(minutes=31)  # natural expiry on the injectable clock
        expired = oauth.get("/crm/v3/objects/contacts")
        assert expired.status_code == 401
        assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
        assert "expired" in expired.json()["message"]

        fresh = requests.post(hs.base_url + "/oauth/v1/token", data=form, timeout=5).json()
        oauth.session.headers["Authorization"] = f"Bearer {fresh['access_token']}"
        assert oauth.get("/crm/v3/objects/contacts").status_code == 200
        assert hs.expire_tokens() == 2  # on demand
        assert oauth.get("/crm/v3/objects/contacts").json()["category"] == "EXPIRED_AUTHENTICATION"
    finally:
        oauth.close()

    bad = requests.post(
        hs.base_url + "/oauth/v1/token", data={**form, "refresh_token": "nope"}, timeout=5
    )
    assert bad.status_code == 400
    assert bad.json()["status"] == "BAD_REFRESH_TOKEN"


# --------------------------------------------------------------------------- objects


def test_list_objects_pages_with_opaque_cursor(hs: HubSpotEmulator, api: Api) -> None:
    created = [hs.add_contact(email=f"c{i}@example.com") for i in range(25)]
    assert created[:3] == ["101", "102", "103"]  # deterministic ids
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10, "properties": "email,firstname"}
        if after:
            params["after"] = after
        body = api.get("/crm/v3/objects/contacts", params=params).json()
        pages += 1
        seen += [r["id"] for r in body["results"]]
        assert set(body["results"][0]["properties"]) >= {"email", "firstname", "hs_object_id"}
        after = body.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
        assert not after.isdigit()  # opaque, not an offset
    assert pages == 3
    assert seen == created
    assert api.get("/crm/v3/objects/contacts", params={"limit": 101}).status_code == 400


def test_get_by_id_and_id_property(hs: HubSpotEmulator, api: Api) -> None:
    cid = hs.add_contact(email="Ann@Example.com", firstname="Ann")
    assert api.get(f"/crm/v3/objects/contacts/{cid}").json()["properties"]["firstname"] == "Ann"
    by_email = api.get(
        "/crm/v3/objects/contacts/ann@example.com", params={"idProperty": "email"}
    ).json()
    assert by_email["id"] == cid
    missing = api.get("/crm/v3/objects/contacts/999999")
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND"


def test_archived_sweep_lists_only_archived_records(hs: HubSpotEmulator, api: Api) -> None:
    keep = hs.add_contact(email="keep@example.com")
    gone = hs.add_contact(email="gone@example.com")
    before = hs.contact(gone)
    assert before is not None
    hs.clock.advance(hours=1)
    hs.archive_contact(gone)
    live = api.get("/crm/v3/objects/contacts").json()["results"]
    assert [r["id"] for r in live] == [keep]
    archived = api.get("/crm/v3/objects/contacts", params={"archived": "true"}).json()["results"]
    assert [r["id"] for r in archived] == [gone]
    assert archived[0]["archived"] is True
    assert archived[0]["archivedAt"] == "2024-05-01T11:00:00.000Z"
    # archiving does not bump the modified date (fact sheet §5.4)
    assert archived[0]["properties"]["lastmodifieddate"] == before["properties"]["lastmodifieddate"]
    assert search_ids(api, []) == [keep]


def test_mutations_bump_modified_dates_from_clock(hs: HubSpotEmulator, api: Api) -> None:
    cid = hs.add_contact(email="a@example.com")
    company = hs.add_company(name="Acme")
    assert hs.contact(cid)["properties"]["lastmodifieddate"] == "2024-05-01T10:00:00.000Z"  # type: ignore[index]
    hs.clock.set(T0 + timedelta(days=2))
    hs.update_contact(cid, lifecyclestage="customer")
    hs.update_object("companies", company, industry="SOFTWARE")
    contact = hs.contact(cid)
    assert contact is not None
    assert contact["properties"]["lastmodifieddate"] == "2024-05-03T10:00:00.000Z"
    assert "hs_lastmodifieddate" not in contact["properties"]  # contacts use lastmodifieddate
    company_props = hs.get_object("companies", company)["properties"]  # type: ignore[index]
    assert company_props["hs_lastmodifieddate"] == "2024-05-03T10:00:00.000Z"


def test_merge_reports_absorbed_ids_and_redirects(hs: HubSpotEmulator, api: Api) -> None:
    survivor = hs.add_contact(email="a@example.com")
    absorbed = hs.add_contact(email="a2@example.com", firstname="Al")
    company = hs.add_company(name="Acme")
    hs.associate("contacts", absorbed, "companies", company)
    list_id = hs.add_list("VIP", members=[absorbed], foreign=False)
    hs.clock.advance(minutes=5)
    hs.merge_contacts(survivor, absorbed)

    body = api.get(
        f"/crm/v3/objects/contacts/{survivor}",
        params={"properties": "hs_merged_object_ids,firstname"},
    ).json()
    assert body["properties"]["hs_merged_object_ids"] == absorbed
    assert body["properties"]["firstname"] == "Al"
    assert body["properties"]["lastmodifieddate"] == "2024-05-01T10:05:00.000Z"
    assert api.get(f"/crm/v3/objects/contacts/{absorbed}").json()["id"] == survivor
    assert api.get("/crm/v3/objects/contacts", params={"archived": "true"}).json()["results"] == []
    assert hs.list_members(list_id) == [survivor]
    assoc = api.get(f"/crm/v4/objects/contacts/{survivor}/associations/companies").json()
    assert [r["toObjectId"] for r in assoc["results"]] == [company]


def test_batch_read_returns_207_for_missing_ids(hs: HubSpotEmulator, api: Api) -> None:
    ids = [hs.add_contact(email=f"b{i}@example.com") for i in range(3)]
    body = {
        "inputs": [{"id": i} for i in [*ids, "424242"]],
        "properties": ["email"],
        "propertiesWithHistory": [],
    }
    response = api.post("/crm/v3/objects/contacts/batch/read", body)
    assert response.status_code == 207
    data = response.json()
    assert sorted(r["id"] for r in data["results"]) == ids
    assert data["numErrors"] == 1
    assert data["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert data["errors"][0]["context"]["ids"] == ["424242"]

    too_many = {**body, "inputs": [{"id": str(i)} for i in range(101)]}
    assert api.post("/crm/v3/objects/contacts/batch/read", too_many).status_code == 400
    # BatchReadInputSimplePublicObjectId requires propertiesWithHistory (strict schema)
    incomplete = {"inputs": [{"id": ids[0]}], "properties": ["email"]}
    assert api.post("/crm/v3/objects/contacts/batch/read", incomplete).status_code == 400


def test_batch_update_200_207_and_validation(hs: HubSpotEmulator, api: Api) -> None:
    hs.define_property(
        "segsync_segments",
        type="enumeration",
        field_type="checkbox",
        options=[
            {"label": "Champions", "value": "champions"},
            {"label": "At risk", "value": "at_risk"},
        ],
        foreign=False,
    )
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    hs.clock.advance(minutes=1)
    path = "/crm/v3/objects/contacts/batch/update"
    ok = api.post(
        path, {"inputs": [{"id": a, "properties": {"segsync_segments": "champions;at_risk"}}]}
    )
    assert ok.status_code == 200
    assert ok.json()["results"][0]["properties"]["segsync_segments"] == "champions;at_risk"
    assert hs.contact(a)["properties"]["lastmodifieddate"] == "2024-05-01T10:01:00.000Z"  # type: ignore[index]

    partial = api.post(
        path,
        {
            "inputs": [
                {"id": b, "properties": {"segsync_segments": "at_risk"}},
                {"id": "999999", "properties": {"segsync_segments": "at_risk"}},
            ]
        },
    )
    assert partial.status_code == 207
    assert partial.json()["errors"][0]["context"]["ids"] == ["999999"]
    assert hs.contact(b)["properties"]["segsync_segments"] == "at_risk"  # type: ignore[index]

    # Labels instead of option values fail the whole batch; nothing is applied.
    invalid = api.post(
        path,
        {
            "inputs": [
                {"id": a, "properties": {"segsync_segments": ""}},
                {"id": b, "properties": {"segsync_segments": "At risk"}},
            ]
        },
    )
    assert invalid.status_code == 400
    assert invalid.json()["category"] == "VALIDATION_ERROR"
    assert hs.contact(a)["properties"]["segsync_segments"] == "champions;at_risk"  # type: ignore[index]

    cleared = api.post(path, {"inputs": [{"id": a, "properties": {"segsync_segments": ""}}]})
    assert cleared.status_code == 200
    assert "segsync_segments" not in hs.contact(a)["properties"]  # type: ignore[index]

    dupes = {"inputs": [{"id": a, "properties": {}}, {"id": a, "properties": {}}]}
    assert api.post(path, dupes).status_code == 400
    many = {"inputs": [{"id": str(i), "properties": {}} for i in range(101)]}
    assert api.post(path, many).status_code == 400
    unknown = api.post(path, {"inputs": [{"id": a, "properties": {"nope": "1"}}]})
    assert unknown.status_code == 400
    assert hs.foreign_writes() == []


# --------------------------------------------------------------------------- search


@pytest.fixture
def people(hs: HubSpotEmulator) -> dict[str, str]:
    ids = {
        "ann": hs.add_contact(email="ann@example.com", lifecyclestage="customer", hs_email_open=5),
        "bob": hs.add_contact(email="bob@example.com", lifecyclestage="lead", hs_email_open=1),
        "cyd": hs.add_contact(email="cyd@corp.test", lifecyclestage="customer"),
    }
    hs.clock.set(T0 + timedelta(days=1))
    hs.update_contact(ids["bob"], firstname="Bob")
    return ids


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"}, ["ann", "cyd"]),
        ({"propertyName": "lifecyclestage", "operator": "NEQ", "value": "customer"}, ["bob"]),
        ({"propertyName": "hs_email_open", "operator": "GT", "value": "1"}, ["ann"]),
        ({"propertyName": "hs_email_open", "operator": "GTE", "value": "1"}, ["ann", "bob"]),
        ({"propertyName": "hs_email_open", "operator": "LT", "value": "5"}, ["bob"]),
        ({"propertyName": "hs_email_open", "operator": "LTE", "value": "5"}, ["ann", "bob"]),
        (
            {
                "propertyName": "hs_email_open",
                "operator": "BETWEEN",
                "value": "2",
                "highValue": "9",
            },
            ["ann"],
        ),
        (
            {
                "propertyName": "email",
                "operator": "IN",
                "values": ["ann@example.com", "cyd@corp.test"],
            },
            ["ann", "cyd"],
        ),
        (
            {"propertyName": "lifecyclestage", "operator": "NOT_IN", "values": ["lead"]},
            ["ann", "cyd"],
        ),
        ({"propertyName": "hs_email_open", "operator": "HAS_PROPERTY"}, ["ann", "bob"]),
        ({"propertyName": "hs_email_open", "operator": "NOT_HAS_PROPERTY"}, ["cyd"]),
        (
            {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@example.com"},
            ["ann", "bob"],
        ),
        (
            {
                "propertyName": "lastmodifieddate",
                "operator": "GTE",
                "value": str(epoch_ms(T0 + timedelta(hours=1))),
            },
            ["bob"],
        ),
        (
            {
                "propertyName": "lastmodifieddate",
                "operator": "LT",
                "value": str(epoch_ms(T0 + timedelta(hours=1))),
            },
            ["ann", "cyd"],
        ),
    ],
)
def test_search_operators(
    api: Api, people: dict[str, str], flt: dict[str, Any], expected: list[str]
) -> None:
    assert search_ids(api, [flt]) == [people[name] for name in expected]


def test_search_groups_sorts_properties_and_bad_dates(api: Api, people: dict[str, str]) -> None:
    body = search_body(
        sorts=[{"propertyName": "email", "direction": "DESCENDING"}],
        properties=["email", "firstname"],
    )
    body["filterGroups"] = [
        {"filters": [{"propertyName": "email", "operator": "EQ", "value": "ann@example.com"}]},
        {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "bob"}]},
    ]
    data = api.post("/crm/v3/objects/contacts/search", body).json()
    assert data["total"] == 2
    assert [r["id"] for r in data["results"]] == [people["bob"], people["ann"]]
    assert data["results"][1]["properties"]["firstname"] is None
    assert "paging" not in data

    string_sort = search_body(sorts=["-hs_object_id"])
    ids = [
        r["id"] for r in api.post("/crm/v3/objects/contacts/search", string_sort).json()["results"]
    ]
    assert ids == sorted(people.values(), key=int, reverse=True)

    iso_value = [{"propertyName": "lastmodifieddate", "operator": "GT", "value": "yesterday"}]
    assert api.post("/crm/v3/objects/contacts/search", search_body(iso_value)).status_code == 400


def test_search_paging_caps_and_schema(hs: HubSpotEmulator, api: Api) -> None:
    for i in range(450):
        hs.add_contact(email=f"p{i}@example.com")
    path = "/crm/v3/objects/contacts/search"
    first = api.post(path, search_body(limit=200)).json()
    assert first["total"] == 450
    assert first["paging"]["next"]["after"] == "200"
    last = api.post(path, search_body(limit=200, after="400")).json()
    assert len(last["results"]) == 50
    assert "paging" not in last

    assert api.post(path, search_body(limit=201)).status_code == 400
    capped = api.post(path, search_body(after="10000"))
    assert capped.status_code == 400
    assert capped.json()["category"] == "VALIDATION_ERROR"
    six_groups = search_body()
    six_groups["filterGroups"] = [
        {"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}
    ] * 6
    assert api.post(path, six_groups).status_code == 400
    no_sorts = search_body()
    del no_sorts["sorts"]
    assert api.post(path, no_sorts).status_code == 400  # PublicObjectSearchRequest requires sorts


def test_search_result_cap_with_small_limit_config() -> None:
    limits = ApiLimits(search=SearchLimits(result_cap=5))
    with HubSpotEmulator(token=TOKEN, limits=limits) as emulator:
        for i in range(8):
            emulator.add_contact(email=f"x{i}@example.com")
        client = Api(emulator.base_url)
        try:
            page = client.post("/crm/v3/objects/contacts/search", search_body(limit=5)).json()
            assert page["total"] == 8
            assert page["paging"]["next"]["after"] == "5"
            follow = client.post("/crm/v3/objects/contacts/search", search_body(limit=5, after="5"))
            assert follow.status_code == 400  # the 10k wall, scaled down
        finally:
            client.close()


def test_search_by_association_and_other_objects(hs: HubSpotEmulator, api: Api) -> None:
    contact = hs.add_contact(email="a@example.com")
    won = hs.add_deal(dealname="Big", dealstage="closedwon", amount=1000, closedate=T0)
    hs.add_deal(dealname="Lost", dealstage="closedlost", amount=50)
    hs.associate("contacts", contact, "deals", won)
    flt = [{"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"}]
    assert search_ids(api, flt, "deals") == [won]
    assert search_ids(
        api, [{"propertyName": "associations.contact", "operator": "EQ", "value": contact}], "deals"
    ) == [won]
    note = hs.add_engagement("notes", hs_timestamp=T0, hs_note_body="hello")
    window = [{"propertyName": "hs_timestamp", "operator": "LTE", "value": str(epoch_ms(T0))}]
    assert search_ids(api, window, "notes") == [note]


# --------------------------------------------------------------------------- associations


def test_associations_batch_read_paging_and_errors() -> None:
    limits = ApiLimits(association_batch_page_size=2)
    with HubSpotEmulator(token=TOKEN, limits=limits) as emulator:
        company = emulator.add_company(name="Acme")
        loner = emulator.add_company(name="Solo")
        contacts = [emulator.add_contact(email=f"e{i}@example.com") for i in range(5)]
        for cid in contacts:
            emulator.associate("companies", company, "contacts", cid)
        client = Api(emulator.base_url)
        try:
            path = "/crm/v4/associations/companies/contacts/batch/read"
            found: list[str] = []
            after: str | None = None
            while True:
                item: dict[str, str] = {"id": company}
                if after:
                    item["after"] = after
                inputs = [item] if after else [item, {"id": loner}]
                response = client.post(path, {"inputs": inputs})
                data = response.json()
                result = data["results"][0]
                assert result["from"]["id"] == company
                assert result["to"][0]["associationTypes"][0] == {
                    "category": "HUBSPOT_DEFINED",
                    "typeId": 280,
                    "label": None,
                }
                found += [t["toObjectId"] for t in result["to"]]
                if not after:
                    assert response.status_code == 207  # the loner has no associations
                    assert data["errors"][0]["context"]["fromObjectId"] == [loner]
                after = result.get("paging", {}).get("next", {}).get("after")
                if after is None:
                    break
            assert found == contacts

            single = client.get(
                f"/crm/v4/objects/contacts/{contacts[0]}/associations/companies",
                params={"limit": 500},
            ).json()
            assert single["results"] == [
                {
                    "toObjectId": company,
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}
                    ],
                }
            ]
            too_many = {"inputs": [{"id": str(i)} for i in range(1001)]}
            assert client.post(path, too_many).status_code == 400
            assert (
                client.get(
                    f"/crm/v4/objects/contacts/{contacts[0]}/associations/companies",
                    params={"limit": 501},
                ).status_code
                == 400
            )
        finally:
            client.close()


# --------------------------------------------------------------------------- lists


def test_list_create_duplicate_rename_search_delete(hs: HubSpotEmulator, api: Api) -> None:
    hs.add_list("Marketing newsletter")  # foreign list, not segsync's
    create = {"name": "segsync · Champions", "objectTypeId": "0-1", "processingType": "MANUAL"}
    created = api.post("/crm/v3/lists", create)
    assert created.status_code == 200
    lst = created.json()["list"]
    assert lst["processingType"] == "MANUAL"
    list_id = lst["listId"]
    assert list_id == "2"

    dup = api.post("/crm/v3/lists", {**create, "name": "SEGSYNC · champions"})
    assert dup.status_code == 409
    assert dup.json()["status"] == "error"

    by_name = api.get(f"/crm/v3/lists/object-type-id/0-1/name/{quote('segsync · champions')}")
    assert by_name.json()["list"]["listId"] == list_id
    assert api.get("/crm/v3/lists/object-type-id/0-1/name/nope").status_code == 404

    renamed = api.put(
        f"/crm/v3/lists/{list_id}/update-list-name", params={"listName": "segsync · Heroes"}
    )
    assert renamed.json()["updatedList"]["name"] == "segsync · Heroes"
    assert renamed.json()["updatedList"]["listVersion"] == 2
    clash = api.put(
        f"/crm/v3/lists/{list_id}/update-list-name", params={"listName": "marketing newsletter"}
    )
    assert clash.status_code == 409

    for i in range(3):
        hs.add_list(f"segsync · extra {i}", foreign=False)
    search = {
        "query": "segsync",
        "processingTypes": ["MANUAL"],
        "offset": 0,
        "count": 2,
        "additionalProperties": [],
    }
    page1 = api.post("/crm/v3/lists/search", search).json()
    assert page1["total"] == 4
    assert page1["hasMore"] is True
    page2 = api.post("/crm/v3/lists/search", {**search, "offset": page1["offset"]}).json()
    assert page2["hasMore"] is False
    names = [x["name"] for x in page1["lists"] + page2["lists"]]
    assert "Marketing newsletter" not in names
    assert len(names) == 4
    assert (
        api.post("/crm/v3/lists/search", {"query": "x"}).status_code == 400
    )  # offset+additionalProperties required

    assert api.delete(f"/crm/v3/lists/{list_id}").status_code == 204
    assert api.get(f"/crm/v3/lists/{list_id}").status_code == 404
    assert api.post("/crm/v3/lists", {**create, "name": "segsync · Heroes"}).status_code == 200
    assert hs.foreign_writes() == []


def test_memberships_add_remove_paging_and_caps(hs: HubSpotEmulator, api: Api) -> None:
    contacts = [hs.add_contact(email=f"m{i}@example.com") for i in range(300)]
    list_id = api.post(
        "/crm/v3/lists", {"name": "segsync · A", "objectTypeId": "0-1", "processingType": "MANUAL"}
    ).json()["list"]["listId"]
    base = f"/crm/v3/lists/{list_id}/memberships"

    added = api.put(f"{base}/add", [*contacts[:260], "999999"]).json()
    assert added["recordsIdsAdded"] == contacts[:260]  # HubSpot's (sic) key
    assert added["recordIdsMissing"] == ["999999"]
    again = api.put(f"{base}/add", contacts[:2]).json()
    assert again == {"recordsIdsAdded": [], "recordIdsRemoved": [], "recordIdsMissing": []}

    removed = api.put(f"{base}/remove", [contacts[0], contacts[299]]).json()
    assert removed["recordIdsRemoved"] == [contacts[0]]

    both = api.put(
        f"{base}/add-and-remove",
        {"recordIdsToAdd": [contacts[299]], "recordIdsToRemove": [contacts[1], "888888"]},
    ).json()
    assert both == {
        "recordsIdsAdded": [contacts[299]],
        "recordIdsRemoved": [contacts[1]],
        "recordIdsMissing": ["888888"],
    }
    expected = sorted([*contacts[2:260], contacts[299]], key=int)

    members: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 250}
        if after:
            params["after"] = after
        page = api.get(base, params=params).json()
        assert page["total"] == len(expected)
        members += [m["recordId"] for m in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    assert members == expected
    before = api.get(base, params={"limit": 250, "after": page["paging"]["prev"]["before"]})
    assert before.status_code == 200
    prev = api.get(base, params={"limit": 5, "before": page["paging"]["prev"]["before"]}).json()
    assert [m["recordId"] for m in prev["results"]] == expected[245:250]

    assert api.get(base, params={"limit": 251}).status_code == 400
    assert api.put(f"{base}/add", [int(contacts[5])]).status_code == 400  # ids travel as strings
    incomplete = api.put(f"{base}/add-and-remove", {"recordIdsToAdd": [contacts[5]]})
    assert incomplete.status_code == 400  # MembershipChangeRequest requires both arrays
    assert hs.list_members(list_id)[-1] == contacts[299]


def test_membership_cap_and_dynamic_lists() -> None:
    with HubSpotEmulator(token=TOKEN, limits=ApiLimits(membership_ids_per_call=3)) as emulator:
        ids = [emulator.add_contact(email=f"d{i}@example.com") for i in range(4)]
        manual = emulator.add_list("segsync · cap", foreign=False)
        dynamic = emulator.add_list("Dyn", processing_type="DYNAMIC", foreign=False)
        client = Api(emulator.base_url)
        try:
            assert client.put(f"/crm/v3/lists/{manual}/memberships/add", ids).status_code == 400
            assert client.put(f"/crm/v3/lists/{manual}/memberships/add", ids[:3]).status_code == 200
            refused = client.put(f"/crm/v3/lists/{dynamic}/memberships/add", ids[:1])
            assert refused.status_code == 400
        finally:
            client.close()


def test_foreign_lists_and_properties_writes_are_recorded(hs: HubSpotEmulator, api: Api) -> None:
    contact = hs.add_contact(email="f@example.com")
    foreign = hs.add_list("Sales team list", members=[contact])
    hs.define_property(
        "interests",
        type="enumeration",
        field_type="checkbox",
        options=[{"label": "Golf", "value": "golf"}],
    )
    own = api.post(
        "/crm/v3/lists", {"name": "segsync · B", "objectTypeId": "0-1", "processingType": "MANUAL"}
    )
    own_id = own.json()["list"]["listId"]
    api.put(f"/crm/v3/lists/{own_id}/memberships/add", [contact])
    api.get(f"/crm/v3/lists/{foreign}/memberships")  # reads are fine
    assert hs.foreign_writes() == []

    api.put(f"/crm/v3/lists/{foreign}/memberships/remove", [contact])
    api.patch("/crm/v3/properties/contacts/interests", {"options": []})
    api.post(
        "/crm/v3/objects/contacts/batch/update",
        {"inputs": [{"id": contact, "properties": {"interests": ""}}]},
    )
    kinds = [(w.kind, w.target) for w in hs.foreign_writes()]
    assert kinds == [
        ("list_membership", foreign),
        ("property_definition", "interests"),
        ("property_value", "interests"),
    ]
    assert [r.method for r in hs.requests_to(foreign)] == ["GET", "PUT"]
    assert hs.list_members(foreign) == []


# --------------------------------------------------------------------------- properties


def test_properties_create_patch_archive(hs: HubSpotEmulator, api: Api) -> None:
    hs.define_property(
        "favourite_products",
        type="enumeration",
        field_type="checkbox",
        options=[{"label": "A", "value": "a"}, {"label": "B", "value": "b"}],
    )
    all_props = api.get("/crm/v3/properties/contacts").json()["results"]
    existing = next(p for p in all_props if p["name"] == "favourite_products")
    assert [o["value"] for o in existing["options"]] == ["a", "b"]

    assert api.get("/crm/v3/properties/contacts/groups/segsync").status_code == 404
    group = api.post(
        "/crm/v3/properties/contacts/groups",
        {"name": "segsync", "label": "Segsync", "displayOrder": -1},
    )
    assert group.status_code == 201
    prop = {
        "name": "segsync_segments",
        "label": "Segsync segments",
        "groupName": "segsync",
        "type": "enumeration",
        "fieldType": "checkbox",
        "formField": False,
        "options": [
            {"label": "Champions", "value": "champions", "displayOrder": 0, "hidden": False}
        ],
    }
    created = api.post("/crm/v3/properties/contacts", prop)
    assert created.status_code == 201
    assert created.json()["fieldType"] == "checkbox"
    dup = api.post("/crm/v3/properties/contacts", prop)
    assert dup.status_code == 409
    no_hidden = {**prop, "name": "other", "options": [{"label": "X", "value": "x"}]}
    assert (
        api.post("/crm/v3/properties/contacts", no_hidden).status_code == 400
    )  # OptionInput.hidden

    patched = api.patch(
        "/crm/v3/properties/contacts/segsync_segments",
        {"options": [{"label": "At risk", "value": "at_risk", "hidden": False}]},
    )
    assert [o["value"] for o in patched.json()["options"]] == ["at_risk"]  # replaced, not merged
    assert (
        api.get("/crm/v3/properties/contacts/segsync_segments").json()["options"][0]["label"]
        == "At risk"
    )
    assert api.delete("/crm/v3/properties/contacts/segsync_segments").status_code == 204
    assert api.get("/crm/v3/properties/contacts/segsync_segments").status_code == 404
    assert (
        api.get(
            "/crm/v3/properties/contacts/segsync_segments", params={"archived": "true"}
        ).status_code
        == 200
    )
    assert hs.foreign_writes() == []


def test_pipelines_and_legacy_endpoints(api: Api) -> None:
    stages = api.get("/crm/v3/pipelines/deals").json()["results"][0]["stages"]
    won = next(s for s in stages if s["id"] == "closedwon")
    assert won["metadata"]["isClosed"] == "true"
    assert api.get("/contacts/v1/lists").status_code == 404  # sunset APIs are not served


# --------------------------------------------------------------------------- limits


def test_burst_limit_returns_documented_429() -> None:
    fake = FakeMonotonic()
    config = RateLimitConfig(burst_limit=5, retry_after="1")
    with HubSpotEmulator(token=TOKEN, rate_limits=config, monotonic=fake) as emulator:
        client = Api(emulator.base_url)
        try:
            statuses = [client.get("/crm/v3/objects/contacts").status_code for _ in range(7)]
            assert statuses == [200] * 5 + [429] * 2
            limited = client.get("/crm/v3/objects/contacts")
            body = limited.json()
            assert body["policyName"] == "TEN_SECONDLY_ROLLING"
            assert body["errorType"] == "RATE_LIMIT"
            assert body["message"] == "You have reached your ten_secondly_rolling limit."
            assert limited.headers["Retry-After"] == "1"
            fake.now += 10.0  # the window rolls
            ok = client.get("/crm/v3/objects/contacts")
            assert ok.status_code == 200
            assert ok.headers["X-HubSpot-RateLimit-Max"] == "5"
            assert ok.headers["X-HubSpot-RateLimit-Remaining"] == "4"
            assert emulator.rate_stats.limiter_429s == 3
            assert emulator.count_429() == 3
            assert emulator.rate_stats.max_requests_in_window == 8
        finally:
            client.close()


def test_scaled_window_with_real_time() -> None:
    config = RateLimitConfig(burst_limit=3, time_scale=0.02)  # 10 s -> 200 ms
    with HubSpotEmulator(token=TOKEN, rate_limits=config) as emulator:
        client = Api(emulator.base_url)
        try:
            statuses = [client.get("/crm/v3/objects/contacts").status_code for _ in range(4)]
            assert statuses[-1] == 429
            time.sleep(0.21)
            assert client.get("/crm/v3/objects/contacts").status_code == 200
        finally:
            client.close()


def test_search_secondly_and_daily_limits() -> None:
    fake = FakeMonotonic()
    config = RateLimitConfig(daily_limit=7)  # rejected requests use no quota
    with HubSpotEmulator(token=TOKEN, rate_limits=config, monotonic=fake) as emulator:
        client = Api(emulator.base_url)
        try:
            results = [
                client.post("/crm/v3/objects/contacts/search", search_body()) for _ in range(6)
            ]
            assert [r.status_code for r in results] == [200] * 5 + [429]
            assert results[-1].json()["policyName"] == "SECONDLY"
            assert "X-HubSpot-RateLimit-Max" not in results[0].headers  # search: no limit headers
            assert emulator.rate_stats.max_search_requests_in_window == 6
            fake.now += 1.0
            assert client.get("/crm/v3/objects/contacts").status_code == 200
            assert client.get("/crm/v3/objects/contacts").status_code == 200
            daily = client.get("/crm/v3/objects/contacts")
            assert daily.status_code == 429
            assert daily.json()["policyName"] == "DAILY"
        finally:
            client.close()


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("status", [500, 502, 503, 504, 423])
def test_status_faults(hs: HubSpotEmulator, api: Api, status: int) -> None:
    hs.inject(Fault("status", status=status, path_prefix="/crm/v3/objects"))
    response = api.get("/crm/v3/objects/contacts")
    assert response.status_code == status
    assert response.json()["status"] == "error"
    assert api.get("/crm/v3/objects/contacts").status_code == 200  # times=1


@pytest.mark.parametrize(
    ("policy", "retry_after"), [("TEN_SECONDLY_ROLLING", "2"), ("SECONDLY", None), ("DAILY", None)]
)
def test_rate_limit_faults(
    hs: HubSpotEmulator, api: Api, policy: str, retry_after: str | None
) -> None:
    hs.inject(Fault("rate_limit", policy_name=policy, retry_after=retry_after))
    response = api.get("/crm/v3/lists/1")
    assert response.status_code == 429
    assert response.json()["policyName"] == policy
    assert response.headers.get("Retry-After") == retry_after
    assert hs.count_429() == 1
    assert hs.rate_stats.limiter_429s == 0  # injected, not from the limiter


def test_expired_token_fault(hs: HubSpotEmulator, api: Api) -> None:
    hs.inject(Fault("expired_token"))
    response = api.get("/crm/v3/objects/contacts")
    assert response.status_code == 401
    assert response.json()["category"] == "EXPIRED_AUTHENTICATION"


def test_delay_fault_exceeds_client_timeout_but_applies(hs: HubSpotEmulator, api: Api) -> None:
    cid = hs.add_contact(email="slow@example.com")
    hs.inject(Fault("delay", delay=0.5, path_prefix="/crm/v3/objects/contacts/batch/update"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.post(
            "/crm/v3/objects/contacts/batch/update",
            {"inputs": [{"id": cid, "properties": {"firstname": "Slow"}}]},
            timeout=0.1,
        )
    assert hs.contact(cid)["properties"]["firstname"] == "Slow"  # type: ignore[index]


def test_disconnect_fault(hs: HubSpotEmulator, api: Api) -> None:
    hs.add_contact(email="x@example.com")
    hs.inject(Fault("disconnect", method="GET"))
    with pytest.raises(requests.exceptions.RequestException):
        api.get("/crm/v3/objects/contacts").json()
    assert hs.requests[-1].status == 0
    assert api.get("/crm/v3/objects/contacts").status_code == 200


def test_malformed_json_and_html_faults(hs: HubSpotEmulator, api: Api) -> None:
    hs.inject(Fault("malformed_json"))
    bad = api.get("/crm/v3/objects/contacts")
    assert bad.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        bad.json()
    hs.inject(Fault("html"))
    gateway = api.get("/crm/v3/objects/contacts")
    assert gateway.status_code == 502
    assert gateway.headers["Content-Type"].startswith("text/html")
    hs.inject(Fault("html", status=200))
    page = api.get("/crm/v3/objects/contacts")
    assert page.status_code == 200
    assert "<html>" in page.text


def test_partial_faults_on_batch_update_and_memberships(hs: HubSpotEmulator, api: Api) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    list_id = hs.add_list("segsync · P", foreign=False)
    hs.inject(Fault("partial", path_prefix="/crm/v3/objects/contacts/batch/update"))
    update = api.post(
        "/crm/v3/objects/contacts/batch/update",
        {
            "inputs": [
                {"id": a, "properties": {"firstname": "A"}},
                {"id": b, "properties": {"firstname": "B"}},
            ]
        },
    )
    assert update.status_code == 207
    assert update.json()["errors"][0]["context"]["ids"] == [b]
    assert update.json()["errors"][0]["category"] == "VALIDATION_ERROR"  # refused
    assert [r["id"] for r in update.json()["results"]] == [a]
    assert "firstname" not in hs.contact(b)["properties"]  # type: ignore[index]
    # A NOT_FOUND category reports the record as not existing instead.
    hs.inject(Fault("partial", path_prefix="/crm/v3/objects/contacts/batch/update",
                    category="OBJECT_NOT_FOUND"))
    gone = api.post("/crm/v3/objects/contacts/batch/update",
                    {"inputs": [{"id": b, "properties": {"firstname": "B"}}]}).json()
    assert (gone["errors"][0]["category"], gone["errors"][0]["context"]["ids"]) == (
        "OBJECT_NOT_FOUND", [b])
    assert "firstname" not in hs.contact(b)["properties"]  # type: ignore[index]

    hs.inject(Fault("partial", path_prefix=f"/crm/v3/lists/{list_id}/memberships", ids=(a,),
                    category="OBJECT_NOT_FOUND"))
    add = api.put(f"/crm/v3/lists/{list_id}/memberships/add", [a, b]).json()
    assert add["recordsIdsAdded"] == [b]
    assert add["recordIdsMissing"] == [a]
    hs.inject(Fault("partial", path_prefix=f"/crm/v3/lists/{list_id}/memberships", ids=(a,)))
    refused = api.put(f"/crm/v3/lists/{list_id}/memberships/add", [a])
    assert refused.status_code == 207
    assert refused.json()["recordIdsMissing"] == []
    assert refused.json()["errors"][0]["context"]["ids"] == [a]
    assert hs.list_members(list_id) == [b]


def test_fault_matching_after_and_times(hs: HubSpotEmulator, api: Api) -> None:
    fault = hs.inject(
        Fault("status", status=503, method="POST", path_prefix="/crm/v3/lists", after=1, times=2)
    )
    create = {"name": "n0", "objectTypeId": "0-1", "processingType": "MANUAL"}
    assert api.get("/crm/v3/lists/1").status_code == 404  # other method: not counted
    codes = [api.post("/crm/v3/lists", {**create, "name": f"n{i}"}).status_code for i in range(4)]
    assert codes == [200, 503, 503, 200]
    assert (fault.seen, fault.fired) == (4, 2)
    hs.inject(Fault("status", status=500, times=None))
    assert {api.get("/crm/v3/lists/1").status_code for _ in range(3)} == {500}
    hs.clear_faults()
    assert api.get("/crm/v3/lists/1").status_code == 200


# --------------------------------------------------------------------------- observability


def test_request_recording_and_counting(hs: HubSpotEmulator, api: Api) -> None:
    cid = hs.add_contact(email="r@example.com")
    list_id = hs.add_list("segsync · R", foreign=False)
    api.get("/crm/v3/objects/contacts", params={"limit": 5})
    api.post("/crm/v3/objects/contacts/search", search_body())
    api.post(
        "/crm/v3/objects/contacts/batch/read",
        {"inputs": [{"id": cid}], "properties": [], "propertiesWithHistory": []},
    )
    api.put(f"/crm/v3/lists/{list_id}/memberships/add", [cid])
    api.get(f"/crm/v3/lists/{list_id}/memberships")

    assert hs.count() == 5
    assert hs.count(method="POST") == 2
    assert hs.count(path_prefix="/crm/v3/objects/contacts") == 3
    assert hs.count(method="GET", path_prefix="/crm/v3/lists") == 1
    writes = hs.write_requests()
    assert [(w.method, w.path) for w in writes] == [
        ("PUT", f"/crm/v3/lists/{list_id}/memberships/add")
    ]
    assert writes[0].body == [cid]
    assert writes[0].status == 200
    first = hs.requests[0]
    assert first.query == {"limit": ["5"]}
    assert [r.t for r in hs.requests] == sorted(r.t for r in hs.requests)
    assert len(hs.requests_to(list_id)) == 2
    hs.reset_requests()
    assert hs.count() == 0


def test_concurrent_clients_share_consistent_state(hs: HubSpotEmulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    contacts = [hs.add_contact(email=f"t{i}@example.com") for i in range(40)]
    list_id = hs.add_list("segsync · T", foreign=False)

    def add(chunk: list[str]) -> int:
        client = Api(hs.base_url)
        try:
            response = client.put(f"/crm/v3/lists/{list_id}/memberships/add", chunk)
            return len(response.json()["recordsIdsAdded"])
        finally:
            client.close()

    chunks = [contacts[i : i + 5] for i in range(0, 40, 5)] * 2  # every id sent twice
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(add, chunks)) == 40  # each id added exactly once
    assert sorted(hs.list_members(list_id), key=int) == contacts
    assert hs.count(method="PUT") == 16
    assert hs.rate_stats.max_requests_in_window == 16


# --------------------------------------------------------------------------- SDK


def test_hubspot_sdk_talks_to_the_emulator(hs: HubSpotEmulator) -> None:
    from hubspot import Client
    from hubspot.crm.lists.models import MembershipChangeRequest

    cid = hs.add_contact(email="sdk@example.com")
    list_id = hs.add_list("segsync · SDK", foreign=False)
    client = Client.create(access_token=TOKEN, host=hs.base_url)
    page = client.crm.contacts.basic_api.get_page(limit=2, properties=["email"])
    assert [c.id for c in page.results] == [cid]
    assert page.results[0].properties["email"] == "sdk@example.com"
    change = client.crm.lists.memberships_api.add_and_remove(
        list_id,
        membership_change_request=MembershipChangeRequest(
            record_ids_to_add=[cid], record_ids_to_remove=[]
        ),
    )
    assert change.records_ids_added == [cid]
    assert hs.count(path_prefix="/crm/v3/objects/contacts") == 1


# --------------------------------------------------------------------------- post-commit loss

ADD_REMOVE = "/crm/v3/lists/{}/memberships/add-and-remove"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_status_fault_with_reach_commits_before_answering_the_error(
    hs: HubSpotEmulator, api: Api, status: int
) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    list_id = hs.add_list("segsync · lost", members=[b], foreign=False)
    fault = hs.inject(Fault("status", status=status, reach=True, method="PUT"))
    lost = api.put(ADD_REMOVE.format(list_id), {"recordIdsToAdd": [a], "recordIdsToRemove": [b]})
    assert lost.status_code == status
    assert lost.json()["status"] == "error"  # the gateway's error, not HubSpot's answer
    assert hs.list_members(list_id) == [a]  # ... although the change was committed
    assert fault.reached.is_set()
    assert (hs.requests[-1].status, hs.requests[-1].processed) == (status, True)
    # Without reach the same fault answers instead of HubSpot: nothing changes.
    hs.inject(Fault("status", status=status, method="PUT"))
    refused = api.put(ADD_REMOVE.format(list_id), {"recordIdsToAdd": [b], "recordIdsToRemove": []})
    assert refused.status_code == status
    assert hs.list_members(list_id) == [a]
    assert hs.requests[-1].processed is False


def test_connection_reset_after_commit(hs: HubSpotEmulator, api: Api) -> None:
    cid = hs.add_contact(email="reset@example.com")
    fault = hs.inject(Fault("disconnect", abort=True, path_prefix="/crm/v3/objects/contacts/batch"))
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post(
            "/crm/v3/objects/contacts/batch/update",
            {"inputs": [{"id": cid, "properties": {"firstname": "Reset"}}]},
        )
    assert hs.contact(cid)["properties"]["firstname"] == "Reset"  # type: ignore[index]
    assert fault.reached.is_set()
    assert (hs.requests[-1].status, hs.requests[-1].processed) == (0, True)
    assert api.get(f"/crm/v3/objects/contacts/{cid}").status_code == 200  # server still fine


def test_late_answer_is_held_after_commit_until_released(hs: HubSpotEmulator) -> None:
    a = hs.add_contact(email="late@example.com")
    list_id = hs.add_list("segsync · late", foreign=False)
    release = threading.Event()
    fault = hs.inject(Fault("delay", hold=release, method="PUT"))
    answers: list[requests.Response] = []
    client = Api(hs.base_url)

    def send() -> None:
        answers.append(client.put(ADD_REMOVE.format(list_id),
                                  {"recordIdsToAdd": [a], "recordIdsToRemove": []}))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert fault.reached.wait(5)  # processed: no real-time sleep needed to know it
        assert hs.list_members(list_id) == [a]  # committed ...
        assert answers == []  # ... while the answer is still held back
    finally:
        release.set()
        sender.join(5)
        client.close()
    assert answers[0].status_code == 200
    assert answers[0].json()["recordsIdsAdded"] == [a]


def test_truncated_body_after_commit(hs: HubSpotEmulator, api: Api) -> None:
    a = hs.add_contact(email="cut@example.com")
    list_id = hs.add_list("segsync · cut", foreign=False)
    hs.inject(Fault("malformed_json", reach=True, method="PUT"))
    cut = api.put(ADD_REMOVE.format(list_id), {"recordIdsToAdd": [a], "recordIdsToRemove": []})
    assert cut.status_code == 200
    whole = json.dumps({"recordsIdsAdded": [a], "recordIdsRemoved": [], "recordIdsMissing": []})
    assert whole.startswith(cut.text)
    assert 0 < len(cut.text) < len(whole)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        cut.json()
    assert hs.list_members(list_id) == [a]
    assert hs.requests[-1].processed is True
    # The default malformed_json fault still answers instead of HubSpot.
    b = hs.add_contact(email="cut2@example.com")
    hs.inject(Fault("malformed_json", method="PUT"))
    assert api.put(ADD_REMOVE.format(list_id),
                   {"recordIdsToAdd": [b], "recordIdsToRemove": []}).status_code == 200
    assert hs.list_members(list_id) == [a]
    hs.inject(Fault("html", status=200, reach=True, method="PUT"))
    page = api.put(ADD_REMOVE.format(list_id), {"recordIdsToAdd": [b], "recordIdsToRemove": []})
    assert "<html>" in page.text
    assert hs.list_members(list_id) == [a, b]


def test_fault_options_are_checked() -> None:
    with pytest.raises(ValueError, match="always processes"):
        Fault("delay", reach=True)
    with pytest.raises(ValueError, match="abort"):
        Fault("status", status=502, abort=True)
    with pytest.raises(ValueError, match="hold"):
        Fault("disconnect", hold=threading.Event())
    with pytest.raises(ValueError, match="keep"):
        Fault("short_page", keep=-1)
    assert Fault("partial").processes
    assert not Fault("status", status=503).processes


# --------------------------------------------------------------------------- merges


@pytest.mark.parametrize("mode", ["move", "drop"])
def test_merge_moves_activity_and_moves_or_drops_list_memberships(mode: str) -> None:
    with HubSpotEmulator(token=TOKEN, clock=Clock(T0), merge_memberships=mode,
                         rate_limits=RateLimitConfig(enabled=False)) as hs:
        client = Api(hs.base_url)
        try:
            primary = hs.add_contact(email="p@example.com")
            secondary = hs.add_contact(email="s@example.com")
            call = hs.add_engagement("calls", hs_timestamp=T0)
            hs.associate("calls", call, "contacts", secondary)
            both = hs.add_list("segsync · both", members=[primary, secondary], foreign=False)
            only = hs.add_list("segsync · secondary", members=[secondary], foreign=False)
            hs.clock.advance(minutes=7)
            hs.merge_contacts(primary, secondary)

            props = hs.contact(primary)["properties"]  # type: ignore[index]
            assert props["hs_merged_object_ids"] == secondary
            assert props["lastmodifieddate"] == "2024-05-01T10:07:00.000Z"
            links = client.get(f"/crm/v4/objects/calls/{call}/associations/contacts").json()
            assert [r["toObjectId"] for r in links["results"]] == [primary]
            assert hs.list_members(both) == [primary]
            assert hs.list_members(only) == ([primary] if mode == "move" else [])
            # The secondary is no record any more: list writes and reads call it missing.
            again = client.put(ADD_REMOVE.format(only),
                               {"recordIdsToAdd": [secondary], "recordIdsToRemove": []}).json()
            assert again["recordIdsMissing"] == [secondary]
            read = client.post(BATCH_READ_MEMBERSHIPS, {"inputs": [
                {"objectTypeId": "0-1", "recordId": primary},
                {"objectTypeId": "0-1", "recordId": secondary}]})
            assert read.status_code == 207
            assert read.json()["errors"][0]["context"]["ids"] == [secondary]
            lists = {m["listId"] for m in read.json()["results"][0]["recordListMemberships"]}
            assert lists == ({both, only} if mode == "move" else {both})
            assert hs.internal_errors == []
        finally:
            client.close()


def test_merge_mode_per_call_overrides_the_default(hs: HubSpotEmulator) -> None:
    primary, secondary = hs.add_contact(email="p@example.com"), hs.add_contact(email="s@x.org")
    list_id = hs.add_list("segsync · m", members=[secondary], foreign=False)
    hs.merge_contacts(primary, secondary, memberships="drop")
    assert hs.list_members(list_id) == []
    with pytest.raises(ValueError, match="move"):
        hs.merge_contacts(primary, hs.add_contact(email="t@x.org"), memberships="keep")
    with pytest.raises(ValueError, match="merge_memberships"):
        HubSpotEmulator(merge_memberships="copy")


# --------------------------------------------------------------------------- unattributed 207


def test_unattributed_207_on_batch_update(hs: HubSpotEmulator, api: Api) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    path = "/crm/v3/objects/contacts/batch/update"
    body = {"inputs": [{"id": a, "properties": {"firstname": "A"}},
                       {"id": b, "properties": {"firstname": "B"}}]}
    hs.inject(Fault("unattributed", path_prefix=path, ids=(b,)))
    applied = api.post(path, body)
    assert applied.status_code == 207
    data = applied.json()
    assert [r["id"] for r in data["results"]] == [a]  # b is left out of results[] ...
    assert data["errors"][0]["context"]["ids"] == [""]  # ... and no error names it ...
    assert hs.contact(b)["properties"]["firstname"] == "B"  # type: ignore[index]  # ... yet written

    hs.inject(Fault("unattributed", path_prefix=path, context_ids=(), applied=False))
    body = {"inputs": [{"id": a, "properties": {"firstname": "A2"}},
                       {"id": b, "properties": {"firstname": "B2"}}]}
    skipped = api.post(path, body).json()
    assert skipped["results"] == []
    assert skipped["errors"][0]["context"]["ids"] == []
    assert skipped["numErrors"] == 1
    assert hs.contact(a)["properties"]["firstname"] == "A"  # type: ignore[index]  # not written
    assert hs.contact(b)["properties"]["firstname"] == "B"  # type: ignore[index]


@pytest.mark.parametrize("applied", [True, False])
def test_unattributed_207_on_list_memberships(
    hs: HubSpotEmulator, api: Api, applied: bool
) -> None:
    a, b, c = (hs.add_contact(email=f"{x}@example.com") for x in "abc")
    list_id = hs.add_list("segsync · u", members=[c], foreign=False)
    hs.inject(Fault("unattributed", method="PUT", ids=(a, c, "999999"), applied=applied))
    answer = api.put(ADD_REMOVE.format(list_id),
                     {"recordIdsToAdd": [a, b, "999999"], "recordIdsToRemove": [c]})
    assert answer.status_code == 207
    data = answer.json()
    assert data["recordsIdsAdded"] == [b]  # a, c and 999999 appear in no array
    assert data["recordIdsRemoved"] == []
    assert data["recordIdsMissing"] == []
    assert data["errors"][0]["context"]["ids"] == [""]
    assert hs.list_members(list_id) == ([a, b] if applied else [c, b])


# --------------------------------------------------------------------------- memberships batch read

BATCH_READ_MEMBERSHIPS = "/crm/v3/lists/records/memberships/batch/read"


def test_memberships_batch_read(hs: HubSpotEmulator, api: Api) -> None:
    a, b = hs.add_contact(email="a@example.com"), hs.add_contact(email="b@example.com")
    first = hs.add_list("segsync · 1", members=[a], foreign=False)
    second = hs.add_list("segsync · 2", foreign=False)
    deleted = hs.add_list("segsync · gone", members=[a], foreign=False)
    api.delete(f"/crm/v3/lists/{deleted}")
    api.put(f"/crm/v3/lists/{second}/memberships/add", [a])
    hs.clock.advance(minutes=3)
    api.put(f"/crm/v3/lists/{second}/memberships/remove", [a])
    api.put(f"/crm/v3/lists/{second}/memberships/add", [a])

    ok = api.post(BATCH_READ_MEMBERSHIPS, {"inputs": [
        {"objectTypeId": "0-1", "recordId": a}, {"objectTypeId": "0-1", "recordId": b}]})
    assert ok.status_code == 200
    data = ok.json()
    assert data["status"] == "COMPLETE"
    assert {"startedAt", "completedAt"} <= set(data)
    by_record = {r["recordId"]: r for r in data["results"]}
    assert by_record[b]["recordListMemberships"] == []
    assert by_record[a]["objectTypeId"] == "0-1"
    memberships = {m["listId"]: m for m in by_record[a]["recordListMemberships"]}
    assert set(memberships) == {first, second}  # not the deleted list
    again = memberships[second]
    assert again["firstAddedTimestamp"] == "2024-05-01T10:00:00.000Z"
    assert again["lastAddedTimestamp"] == "2024-05-01T10:03:00.000Z"
    assert isinstance(again["listVersion"], int)

    unknown = api.post(BATCH_READ_MEMBERSHIPS, {"inputs": [
        {"objectTypeId": "0-1", "recordId": a}, {"objectTypeId": "0-1", "recordId": "424242"}]})
    assert unknown.status_code == 207
    error = unknown.json()["errors"][0]
    assert (error["category"], error["context"]["ids"]) == ("OBJECT_NOT_FOUND", ["424242"])
    assert [r["recordId"] for r in unknown.json()["results"]] == [a]

    hundred = [{"objectTypeId": "0-1", "recordId": a}] * 100
    assert api.post(BATCH_READ_MEMBERSHIPS, {"inputs": hundred}).status_code == 200
    too_many = api.post(BATCH_READ_MEMBERSHIPS, {"inputs": [*hundred, hundred[0]]})
    assert too_many.status_code == 400
    assert "maximum is 100" in too_many.json()["message"]
    for bad in ({}, {"inputs": {"recordId": a}}, {"inputs": [{"recordId": a}]},
                {"inputs": [{"objectTypeId": "0-1", "recordId": int(a)}]},
                {"inputs": [{"objectTypeId": "9-9", "recordId": a}]}):
        assert api.post(BATCH_READ_MEMBERSHIPS, bad).status_code == 400, bad
    assert hs.requests[-1].processed is False
    hs.set_scopes(["crm.lists.write", "crm.objects.contacts.read"])
    refused = api.post(BATCH_READ_MEMBERSHIPS, {"inputs": hundred[:1]})
    assert refused.status_code == 403
    assert "crm.lists.read" in refused.text


# --------------------------------------------------------------------------- short search pages


def test_short_page_fault_keeps_paging_next(hs: HubSpotEmulator, api: Api) -> None:
    ids = [hs.add_contact(email=f"s{i}@example.com") for i in range(5)]
    path = "/crm/v3/objects/contacts/search"
    hs.inject(Fault("short_page", keep=2, path_prefix=path))
    short = api.post(path, search_body(limit=4)).json()
    assert [r["id"] for r in short["results"]] == ids[:2]  # fewer than limit ...
    assert short["paging"]["next"]["after"] == "2"  # ... while more exist
    rest = api.post(path, search_body(limit=4, after="2")).json()
    assert [r["id"] for r in rest["results"]] == ids[2:]
    assert "paging" not in rest
    hs.inject(Fault("short_page", path_prefix=path))  # default: half the page
    half = api.post(path, search_body(limit=4)).json()
    assert len(half["results"]) == 2
    hs.inject(Fault("short_page", keep=0, path_prefix=path))
    empty = api.post(path, search_body(filters=[
        {"propertyName": "hs_object_id", "operator": "GT", "value": ids[0]}])).json()
    assert empty["results"] == []
    assert empty["paging"]["next"]["after"] == "0"
    assert empty["total"] == 4
    hs.inject(Fault("short_page", keep=1, path_prefix=path))
    last = api.post(path, search_body(limit=4, after="3")).json()  # two left: one shown
    assert [r["id"] for r in last["results"]] == [ids[3]]
    assert last["paging"]["next"]["after"] == "4"
    hs.inject(Fault("short_page", keep=1, path_prefix=path))
    final = api.post(path, search_body(limit=4, after="4")).json()  # nothing more matches
    assert [r["id"] for r in final["results"]] == [ids[4]]
    assert "paging" not in final
