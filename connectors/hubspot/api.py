"""The only module that knows HubSpot's paths, statuses and auth flows.

Every request goes through one :class:`connectors.http.RetryingSession` (one retry
policy, one redaction point); hubspot-api-client is not used for I/O (its generated
APIs send through urllib3 with their own Retry), only its model classes in the tests.
When HubSpot's date-versioned paths (``/crm/objects/2026-03/...``) replace v3/v4, the
constants below are the swap.

Status handling, in one place (:meth:`HubSpotApi._fail`):

* 429 ``TEN_SECONDLY_ROLLING`` / ``SECONDLY`` -> waited out and retried by the session
  (``Retry-After`` if sent, else the window length); ``DAILY`` -> :class:`QuotaExhausted`
  saying when the quota resets.
* 423/477/5xx/timeouts/resets -> retried with exponential backoff + jitter, bounded;
  exhausted -> ``RetriableAPIError``.
* 401 -> OAuth: refresh once when ``EXPIRED_AUTHENTICATION``, else :class:`AuthError`;
  403 -> :class:`AuthError` naming the missing scope(s).
* 404 -> :class:`NotFound`, 409 -> :class:`Conflict`, other 4xx -> :class:`HubSpotError`.
* HTML pages and malformed JSON -> one ``CrmDataError`` -- except on the batch writes and
  the memberships batch read (:meth:`HubSpotApi.answer`): there the request may already
  have been committed when its answer turned out unreadable (a truncated body, an HTML
  page with 200, JSON that is not an object), so the caller gets an :class:`Answer`
  saying what was wrong and reports every id of the call unknown instead of failing the
  run. Statuses that mean nothing was done (auth, quota, other 4xx) still raise, and an
  answer that never came (retries exhausted) raises ``RetriesExhausted``: the engine
  keeps that batch unknown itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from connectors.errors import AuthError, ConnectorError, CrmDataError, QuotaExhausted
from connectors.http import (
    RetryingSession,
    RetryPolicy,
    default_is_retryable,
    describe,
    make_session,
    parse_retry_after,
    read_json,
)
from connectors.hubspot.settings import HubSpotSettings
from connectors.ratelimit import RollingWindow
from connectors.redact import read_secret, register_secret, scrub

__all__ = [
    "CONTACT_TYPE_ID",
    "Answer",
    "Conflict",
    "HubSpotApi",
    "HubSpotError",
    "NotFound",
    "endpoint_label",
    "is_search",
    "rate_limit_policy",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- paths
CONTACT_TYPE_ID = "0-1"
OBJECTS = "/crm/v3/objects/{object_type}"
SEARCH = OBJECTS + "/search"
BATCH_READ = OBJECTS + "/batch/read"
BATCH_UPDATE = OBJECTS + "/batch/update"
ASSOCIATIONS_BATCH_READ = "/crm/v4/associations/{from_type}/{to_type}/batch/read"
PIPELINES = "/crm/v3/pipelines/{object_type}"
LISTS = "/crm/v3/lists"
LIST = LISTS + "/{list_id}"
LIST_BY_NAME = LISTS + "/object-type-id/{type_id}/name/{name}"
LIST_RENAME = LIST + "/update-list-name"
MEMBERSHIPS = LIST + "/memberships"
MEMBERSHIPS_ADD_REMOVE = MEMBERSHIPS + "/add-and-remove"
#: A record's list memberships, 100 records a call, every list at once (Lists v3 spec,
#: ``BatchInputRecordIdInput`` -> ``BatchResponseRecordIdWithMemberships``, 200 or 207).
RECORD_MEMBERSHIPS_BATCH_READ = LISTS + "/records/memberships/batch/read"
PROPERTIES = "/crm/v3/properties/{object_type}"
PROPERTY = PROPERTIES + "/{name}"
PROPERTY_GROUPS = PROPERTIES + "/groups"
PROPERTY_GROUP = PROPERTY_GROUPS + "/{name}"
OAUTH_TOKEN = "/oauth/v1/token"  # v3 (/oauth/v3/token) replaces it by 2027-02-16
OAUTH_TOKEN_INFO = "/oauth/v1/access-tokens/{token}"
PRIVATE_TOKEN_INFO = "/oauth/v2/private-apps/get/access-token-info"

#: Search has its own per-second limit and no rate-limit headers (fact sheet §12).
_SEARCH_PATH = re.compile(r"^/crm/v3/objects/[^/]+/search$")
_AUTH_PATHS = ("/oauth/",)
#: Limiter windows are a little longer than HubSpot's so network jitter between our send
#: time and HubSpot's arrival time can never squeeze N+1 requests into one window.
WINDOW_MARGIN = 1.05
#: Refresh OAuth access tokens this long before they expire (they live 30 minutes).
REFRESH_MARGIN = dt.timedelta(minutes=5)
_WAIT_FOR_POLICY = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}
_LOCKED_WAIT = 2.0

_LABELS: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), label)
    for m, p, label in [
        ("POST", r"^/crm/v3/objects/(?P<a>[^/]+)/search$", "search {a}"),
        ("POST", r"^/crm/v3/objects/(?P<a>[^/]+)/batch/read$", "batch read {a}"),
        ("POST", r"^/crm/v3/objects/(?P<a>[^/]+)/batch/update$", "batch update {a}"),
        ("GET", r"^/crm/v3/objects/(?P<a>[^/]+)$", "list {a}"),
        ("POST", r"^/crm/v4/associations/(?P<a>[^/]+)/(?P<b>[^/]+)/batch/read$",
         "associations {a}->{b}"),
        ("GET", r"^/crm/v3/pipelines/(?P<a>[^/]+)$", "pipelines {a}"),
        ("POST", r"^/crm/v3/lists$", "create list"),
        ("POST", r"^/crm/v3/lists/records/memberships/batch/read$", "read record memberships"),
        ("GET", r"^/crm/v3/lists/object-type-id/[^/]+/name/.+$", "find list by name"),
        ("PUT", r"^/crm/v3/lists/[^/]+/update-list-name$", "rename list"),
        ("PUT", r"^/crm/v3/lists/[^/]+/memberships/add-and-remove$",
         "list memberships add-and-remove"),
        ("GET", r"^/crm/v3/lists/[^/]+/memberships$", "list memberships read"),
        ("GET", r"^/crm/v3/lists/[^/]+$", "get list"),
        ("GET", r"^/crm/v3/properties/[^/]+/groups/[^/]+$", "read property group"),
        ("POST", r"^/crm/v3/properties/[^/]+/groups$", "create property group"),
        ("GET", r"^/crm/v3/properties/[^/]+/[^/]+$", "read property"),
        ("POST", r"^/crm/v3/properties/[^/]+$", "create property"),
        ("PATCH", r"^/crm/v3/properties/[^/]+/[^/]+$", "update property"),
        ("POST", r"^/oauth/v1/token$", "oauth refresh"),
        ("GET", r"^/oauth/v1/access-tokens/.+$", "token info"),
        ("POST", r"^/oauth/v2/private-apps/get/access-token-info$", "token info"),
    ]
]
_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


def endpoint_label(method: str, url: str) -> str:
    """A short, id-free, secret-free name for a request, used to count API calls."""
    path = urlsplit(url).path
    for wanted, pattern, label in _LABELS:
        if method == wanted:
            found = pattern.match(path)
            if found:
                return label.format(**found.groupdict())
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def is_search(request: requests.PreparedRequest) -> bool:
    return request.method == "POST" and bool(
        _SEARCH_PATH.match(urlsplit(str(request.url)).path)
    )


def _counts_against_budget(request: requests.PreparedRequest) -> bool:
    path = urlsplit(str(request.url)).path
    return not path.startswith(_AUTH_PATHS)


def _body(response: requests.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def rate_limit_policy(response: requests.Response) -> str | None:
    """``policyName`` of a 429 (TEN_SECONDLY_ROLLING, SECONDLY, DAILY), None if unknown."""
    if response.status_code != 429:
        return None
    policy = _body(response).get("policyName")
    return str(policy).upper() if policy else None


def _is_retryable(response: requests.Response) -> bool:
    if response.status_code == 429:
        return rate_limit_policy(response) != "DAILY"
    return default_is_retryable(response)


def _retry_after(response: requests.Response) -> float | None:
    asked = parse_retry_after(response)
    if asked is not None:
        return asked
    if response.status_code == 429:
        policy = rate_limit_policy(response) or "TEN_SECONDLY_ROLLING"
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        if policy == "TEN_SECONDLY_ROLLING" and interval.isdigit():
            return int(interval) / 1000
        return _WAIT_FOR_POLICY.get(policy, 10.0)
    if response.status_code == 423:
        return _LOCKED_WAIT
    return None


@dataclass(frozen=True)
class Answer:
    """A batch endpoint's answer: its status and JSON object, or why it cannot be read.

    ``body`` is None exactly when ``problem`` says what was wrong with the body; the
    request may still have been committed, so the caller must not treat it as refused.
    """

    status: int
    body: Mapping[str, Any] | None
    problem: str | None = None


class HubSpotError(ConnectorError):
    """HubSpot refused a request (4xx other than auth/quota)."""

    def __init__(self, message: str, *, status: int, category: str | None = None,
                 sub_category: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.sub_category = sub_category


class NotFound(HubSpotError):
    """404: the list/property/object does not exist."""


class Conflict(HubSpotError):
    """409: something with that name exists."""


class HubSpotApi:
    """Typed-enough wrappers for the endpoints segsync uses; returns decoded JSON."""

    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        now: Callable[[], dt.datetime],
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.now = now
        self.calls: Counter[str] = Counter()
        self.budget = RollingWindow(settings.requests_per_10s, 10.0 * WINDOW_MARGIN,
                                    clock=monotonic, sleep=sleep)
        self.search_limiter = RollingWindow(settings.search_per_second, 1.0 * WINDOW_MARGIN,
                                            clock=monotonic, sleep=sleep)
        self.session: RetryingSession = make_session(
            timeout=settings.timeout,
            retry=RetryPolicy(max_attempts=settings.max_retries + 1),
            limiter=self._limit,
            is_retryable=_is_retryable,
            retry_after=_retry_after,
            sleep=sleep,
            on_request=self._count,
            proxies={"http": settings.proxy, "https": settings.proxy} if settings.proxy else None,
            rng=rng,
        )
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at: dt.datetime | None = None
        self._oauth_scopes: list[str] | None = None

    # -- plumbing ----------------------------------------------------------------------

    def _limit(self, request: requests.PreparedRequest) -> None:
        if not _counts_against_budget(request):
            return
        if is_search(request):
            self.search_limiter.acquire()
        self.budget.acquire()

    def _count(self, request: requests.PreparedRequest, response: requests.Response | None) -> None:
        self.calls[endpoint_label(str(request.method), str(request.url))] += 1
        if response is None:
            return
        # Other apps on the same portal share the 10-second budget: when HubSpot says it
        # is spent, hold back for one window instead of walking into a 429. When our own
        # window is full, the spent budget is ours and the limiter already waits exactly
        # until a slot frees up; a whole extra window from now would idle the sync
        # (benchmarks/pacing.py: batch writes at 71% of the Starter rate instead of 99%).
        remaining = response.headers.get("X-HubSpot-RateLimit-Remaining", "")
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        if remaining == "0" and response.status_code != 429 and not self.budget.saturated():
            self.budget.pause(int(interval) / 1000 if interval.isdigit() else 10.0)

    def close(self) -> None:
        self.session.close()

    def _authorization(self) -> str:
        if self.settings.auth == "token":
            if self._token is None:
                self._token = read_secret(self.settings.token_env, "[crm].token_env")
            return f"Bearer {self._token}"
        if (
            self._token is None
            or self._expires_at is None
            or self.now() >= self._expires_at - REFRESH_MARGIN
        ):
            self.refresh_oauth()
        return f"Bearer {self._token}"

    def refresh_oauth(self) -> None:
        """Trade the refresh token for a fresh access token (form-encoded, fact sheet §1)."""
        settings = self.settings
        client_id = read_secret(settings.client_id_env, "[crm].client_id_env")
        secret = read_secret(settings.client_secret_env, "[crm].client_secret_env")
        refresh = self._refresh_token or read_secret(
            settings.refresh_token_env, "[crm].refresh_token_env")
        response = self.session.post(
            self.base_url + OAUTH_TOKEN,
            data={"grant_type": "refresh_token", "client_id": client_id,
                  "client_secret": secret, "refresh_token": refresh},
        )
        if response.status_code != 200:
            info = _body(response)
            reason = info.get("status") or info.get("category") or response.status_code
            raise AuthError(scrub(
                f"HubSpot refused the OAuth refresh ({reason}: {info.get('message', '')}); "
                f"check {settings.client_id_env}, {settings.client_secret_env} and "
                f"{settings.refresh_token_env}"
            ))
        data = read_json(response, "HubSpot OAuth token answer")
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise AuthError("HubSpot's OAuth answer carried no access_token")
        register_secret(token)
        new_refresh = data.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh:
            register_secret(new_refresh)
            self._refresh_token = new_refresh
        scopes = data.get("scopes")
        if isinstance(scopes, list):
            self._oauth_scopes = [str(x) for x in scopes]
        lifetime = data.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 1800.0
        self._token = token
        self._expires_at = self.now() + dt.timedelta(seconds=seconds)
        log.info("HubSpot OAuth access token refreshed (valid %d s)", int(seconds))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response:
        """Send one request (retried by the session); map failures to exceptions."""
        url = self.base_url + path
        refreshed = False
        while True:
            response = self.session.request(
                method, url, params=params, json=body,
                headers={"Authorization": self._authorization(), "Accept": "application/json"},
            )
            if response.status_code in ok:
                return response
            if (
                response.status_code == 401
                and self.settings.auth == "oauth"
                and not refreshed
                and _body(response).get("category") == "EXPIRED_AUTHENTICATION"
            ):
                refreshed = True
                self.refresh_oauth()
                continue
            raise self._fail(response)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        return read_json(response, f"HubSpot {endpoint_label(method, path)}")

    def answer(self, method: str, path: str, body: Any) -> Answer:
        """Send a batch write/read whose answer is judged per record (200 or 207).

        Failure statuses raise as in :meth:`request`; an answer that arrived but cannot be
        read comes back as an :class:`Answer` with ``problem`` set instead of raising.
        """
        response = self.request(method, path, body=body, ok=(200, 207))
        status = response.status_code
        try:
            data = read_json(response, f"HubSpot's {status} answer to {endpoint_label(method, path)}")
        except CrmDataError as exc:
            return Answer(status, None, str(exc))
        if not isinstance(data, Mapping):
            return Answer(status, None, (
                f"HubSpot's {status} answer to {endpoint_label(method, path)} is JSON that is "
                f"not an object ({type(data).__name__})"))
        return Answer(status, data)

    def _fail(self, response: requests.Response) -> ConnectorError:
        status = response.status_code
        request = response.request
        label = endpoint_label(str(request.method), str(request.url)) if request else "request"
        info = _body(response)
        category = info.get("category") or info.get("errorType")
        message = info.get("message")
        detail = (
            f"{category}: {message}" if category and message
            else str(message or category or "") or describe(response)
        )
        correlation = info.get("correlationId")
        suffix = f" (correlationId {correlation})" if correlation else ""
        if status == 401:
            where = (self.settings.token_env if self.settings.auth == "token"
                     else self.settings.refresh_token_env)
            return AuthError(scrub(
                f"HubSpot rejected the credentials for {label} ({detail}); check the value "
                f"of {where}{suffix}"
            ))
        if status == 403:
            scopes = _missing_scopes(info)
            need = f"the scope(s) {', '.join(scopes)}" if scopes else "a permission"
            return AuthError(scrub(
                f"HubSpot denied {label}: the app lacks {need} ({detail}); grant it to the "
                f"private app / service key and run `segsync check`{suffix}"
            ))
        if status == 429:
            return QuotaExhausted(scrub(self._quota_message(response, label)))
        text = scrub(f"HubSpot answered {status} to {label}: {detail}{suffix}")
        kind = NotFound if status == 404 else Conflict if status == 409 else HubSpotError
        sub = info.get("subCategory")
        return kind(text, status=status, category=str(category) if category else None,
                    sub_category=str(sub) if sub else None)

    def _quota_message(self, response: requests.Response, label: str) -> str:
        limit = response.headers.get("X-HubSpot-RateLimit-Daily")
        used = f" ({limit} calls a day)" if limit else ""
        tz_name = self.settings.timezone
        if tz_name:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(tz_name)
            local = self.now().astimezone(zone)
            midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(),
                                           tzinfo=zone)
            when = (f"after {midnight:%Y-%m-%d %H:%M} {tz_name} "
                    f"({midnight.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)")
        else:
            when = ("after midnight in the portal's time zone (set [crm].timezone to have "
                    "segsync print the exact time)")
        return (f"HubSpot's daily API limit for this account is used up{used} at {label}; "
                f"segsync stopped cleanly. Run it again {when}: it resumes where it stopped")

    # -- records -----------------------------------------------------------------------

    def search(self, object_type: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return _mapping(self.json("POST", SEARCH.format(object_type=object_type), body=body))

    def list_archived(self, object_type: str, after: str | None) -> Mapping[str, Any]:
        """One page (100) of archived records: ids and ``archivedAt`` only."""
        params: list[tuple[str, Any]] = [("archived", "true"), ("limit", 100),
                                         ("properties", "hs_object_id")]
        if after:
            params.append(("after", after))
        return _mapping(self.json("GET", OBJECTS.format(object_type=object_type),
                                  params=params))

    def associations(self, from_type: str, to_type: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return _mapping(self.json(
            "POST", ASSOCIATIONS_BATCH_READ.format(from_type=from_type, to_type=to_type),
            body=body, ok=(200, 207),
        ))

    def pipelines(self, object_type: str) -> Mapping[str, Any]:
        return _mapping(self.json("GET", PIPELINES.format(object_type=object_type)))

    def batch_update(self, object_type: str, body: Mapping[str, Any]) -> Answer:
        return self.answer("POST", BATCH_UPDATE.format(object_type=object_type), body)

    def probe(self) -> Mapping[str, Any]:
        """The cheapest authenticated read: one contact id."""
        return _mapping(self.json("GET", OBJECTS.format(object_type="contacts"),
                                  params={"limit": 1, "properties": "hs_object_id"}))

    def token_scopes(self) -> list[str] | None:
        """Scopes granted to the current token, or None when HubSpot cannot tell."""
        self._authorization()
        token = self._token or ""
        if self.settings.auth == "oauth" and self._oauth_scopes is not None:
            return list(self._oauth_scopes)  # the token answer listed them: no token in a URL
        try:
            if self.settings.auth == "oauth":
                data = self.json("GET", OAUTH_TOKEN_INFO.format(token=quote(token, safe="")))
            else:
                data = self.json("POST", PRIVATE_TOKEN_INFO, body={"tokenKey": token})
        except (NotFound, HubSpotError) as exc:
            log.info("token introspection unavailable: %s", exc)
            return None
        scopes = data.get("scopes") if isinstance(data, Mapping) else None
        return [str(s) for s in scopes] if isinstance(scopes, list) else None

    # -- lists ---------------------------------------------------------------------------

    def create_list(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return _inner(self.json("POST", LISTS, body=body, ok=(200, 201)), "list")

    def find_list(self, name: str) -> Mapping[str, Any] | None:
        path = LIST_BY_NAME.format(type_id=CONTACT_TYPE_ID, name=quote(name, safe=""))
        try:
            return _inner(self.json("GET", path), "list")
        except NotFound:
            return None

    def get_list(self, list_id: str) -> Mapping[str, Any] | None:
        try:
            return _inner(self.json("GET", LIST.format(list_id=quote(list_id, safe=""))), "list")
        except NotFound:
            return None

    def rename_list(self, list_id: str, name: str) -> Mapping[str, Any]:
        return _inner(self.json("PUT", LIST_RENAME.format(list_id=quote(list_id, safe="")),
                                params={"listName": name}), "updatedList")

    def delete_list(self, list_id: str) -> None:
        """Delete a list; one already gone counts as deleted."""
        try:
            self.json("DELETE", LIST.format(list_id=quote(list_id, safe="")), ok=(200, 204))
        except NotFound:
            return

    def change_memberships(self, list_id: str, body: Mapping[str, Any]) -> Answer:
        return self.answer(
            "PUT", MEMBERSHIPS_ADD_REMOVE.format(list_id=quote(list_id, safe="")), body)

    def read_record_memberships(self, body: Mapping[str, Any]) -> Answer:
        """The lists each input record is in (``crm.lists.read``; 207 names unknown records)."""
        return self.answer("POST", RECORD_MEMBERSHIPS_BATCH_READ, body)

    def memberships(self, list_id: str, after: str | None, limit: int = 250) -> Mapping[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return _mapping(self.json("GET", MEMBERSHIPS.format(list_id=quote(list_id, safe="")),
                                  params=params))

    # -- properties ---------------------------------------------------------------------

    def get_property(self, name: str, object_type: str = "contacts") -> Mapping[str, Any] | None:
        try:
            return _mapping(self.json("GET", PROPERTY.format(object_type=object_type,
                                                             name=quote(name, safe=""))))
        except NotFound:
            return None

    def create_property(self, body: Mapping[str, Any], object_type: str = "contacts") -> Mapping[str, Any]:
        return _mapping(self.json("POST", PROPERTIES.format(object_type=object_type),
                                  body=body, ok=(200, 201)))

    def update_property(self, name: str, body: Mapping[str, Any],
                        object_type: str = "contacts") -> Mapping[str, Any]:
        return _mapping(self.json("PATCH", PROPERTY.format(object_type=object_type,
                                                           name=quote(name, safe="")), body=body))

    def get_group(self, name: str, object_type: str = "contacts") -> Mapping[str, Any] | None:
        try:
            return _mapping(self.json("GET", PROPERTY_GROUP.format(object_type=object_type,
                                                                   name=quote(name, safe=""))))
        except NotFound:
            return None

    def create_group(self, body: Mapping[str, Any], object_type: str = "contacts") -> Mapping[str, Any]:
        return _mapping(self.json("POST", PROPERTY_GROUPS.format(object_type=object_type),
                                  body=body, ok=(200, 201)))


def _mapping(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise CrmDataError(f"HubSpot answered with JSON that is not an object ({type(data).__name__})")
    return data


def _inner(data: Any, key: str) -> Mapping[str, Any]:
    outer = _mapping(data)
    inner = outer.get(key, outer)
    return _mapping(inner)


def _missing_scopes(info: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    errors = info.get("errors")
    for error in errors if isinstance(errors, list) else []:
        context = error.get("context") if isinstance(error, Mapping) else None
        if not isinstance(context, Mapping):
            continue
        for key in ("requiredGranularScopes", "requiredScopes", "scopes"):
            value = context.get(key)
            if isinstance(value, list):
                found.extend(str(v) for v in value)
    context = info.get("context")
    if isinstance(context, Mapping):
        for key in ("requiredGranularScopes", "requiredScopes"):
            value = context.get(key)
            if isinstance(value, list):
                found.extend(str(v) for v in value)
    return list(dict.fromkeys(found))
