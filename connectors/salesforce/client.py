"""The only Salesforce I/O: logins, queries, REST calls and Bulk 2.0 downloads.

One small credentials class per auth flow (:class:`JwtBearer`, :class:`ClientCredentials`,
:class:`PasswordLogin`), each turning secrets into a :class:`Token` with one HTTP call.
:class:`SalesforceClient` then builds ``simple_salesforce.Salesforce`` in direct mode
(``session_id`` + ``instance_url``) over the shared retrying session, so every request --
logins, queries, collections, bulk -- goes through one retry policy and one call counter.

Why not simple-salesforce's own login modes: they hard-wire ``https://{domain}.salesforce.com``
(a local emulator or a proxy cannot be reached), their JWT mode reads ``instance_url`` as a
My-Domain *prefix*, and their re-login retries up to 3 times and never inside bulk calls.
Here a 401 ``INVALID_SESSION_ID`` triggers exactly one fresh login per failing call,
everywhere (:meth:`SalesforceClient.call`).

Every failed response becomes an exception through ``mapping.error_for``, the one map.
An answer that arrived but cannot be parsed is a ``CrmDataError`` that stops the run; a
writer asks for ``mapping.UnreadableAnswer`` instead (``unreadable=``), so it can tell
"the answer was lost after the request was sent" (its records are unknown) from
"Salesforce refused the request" (nothing was done).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import functools
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from connectors.errors import AuthError, ConnectorError, CrmDataError
from connectors.redact import read_secret, register_secret, scrub
from connectors.salesforce.mapping import (
    LimitInfo,
    error_for,
    first_error,
    parse_limit_info,
)
from connectors.salesforce.settings import API_VERSION, SalesforceSettings

__all__ = [
    "ApiUsage",
    "ClientCredentials",
    "Credentials",
    "JwtBearer",
    "PasswordLogin",
    "QueryPage",
    "SalesforceClient",
    "Token",
    "credentials_for",
    "endpoint_label",
]

log = logging.getLogger("segsync.salesforce")

T = TypeVar("T")
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ID_SEGMENT = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?(-\d+)?$")
_VERSION_PREFIX = re.compile(r"^/services/data/v\d+\.\d+/?")


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """What a login yields: the bearer token, where the org lives, and who we are."""

    access_token: str = field(repr=False)
    instance_url: str
    user_id: str | None = None


class Credentials(Protocol):
    """One auth flow: exchange secrets for a :class:`Token` (one HTTP call)."""

    @property
    def flow(self) -> str: ...

    def login(self, session: requests.Session) -> Token: ...


def _oauth_token(
    session: requests.Session,
    login_url: str,
    form: Mapping[str, str],
    flow: str,
    auth: tuple[str, str] | None = None,
) -> Token:
    url = f"{login_url}/services/oauth2/token"
    response = session.post(url, data=dict(form), auth=auth)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        code, message = first_error(body if body is not None else response.text[:200])
        hint = _login_hint(code, message, flow)
        raise AuthError(scrub(f"Salesforce login ({flow}) failed: HTTP {response.status_code} "
                              f"{code}: {message}{hint}"))
    token = str(body["access_token"])
    register_secret(token)
    identity = str(body.get("id") or "")
    return Token(token, str(body.get("instance_url") or login_url),
                 identity.rstrip("/").rsplit("/", 1)[-1] or None)


def _login_hint(code: str, message: str, flow: str) -> str:
    if "approved" in message:
        return (" (pre-authorise the API user on the app: Manage policies -> 'Admin approved "
                "users are pre-authorized', then add the user's profile or permission set)")
    if code in ("invalid_client_id", "invalid_client"):
        return " (check the consumer key / secret environment variables)"
    if code == "invalid_grant" and flow == "client credentials":
        return " (set a 'Run As' user on the app's client credentials flow)"
    if code == "invalid_grant":
        return " (check the username, the certificate uploaded to the app, and the domain)"
    return ""


@dataclass(frozen=True)
class JwtBearer:
    """OAuth 2.0 JWT bearer: consumer key + RS256 private key, no password, no refresh token."""

    username: str
    consumer_key: str = field(repr=False)
    private_key_file: Path
    login_url: str
    audience: str
    flow: str = "JWT bearer"

    def login(self, session: requests.Session) -> Token:
        try:
            key = self.private_key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthError(
                f"cannot read the private key {self.private_key_file} (named by "
                f"[crm].private_key_file): {exc.__class__.__name__}"
            ) from None
        register_secret(key.strip())
        claims = {"iss": self.consumer_key, "sub": self.username, "aud": self.audience,
                  "exp": int(time.time()) + 180}
        try:
            assertion = jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise AuthError(
                f"{self.private_key_file} is not an RSA private key in PEM form "
                f"({exc.__class__.__name__})"
            ) from None
        return _oauth_token(session, self.login_url,
                            {"grant_type": JWT_GRANT, "assertion": assertion}, self.flow)


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth 2.0 client credentials: the app's key and secret, run as the app's user."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    login_url: str
    flow: str = "client credentials"

    def login(self, session: requests.Session) -> Token:
        return _oauth_token(session, self.login_url, {"grant_type": "client_credentials"},
                            self.flow, auth=(self.client_id, self.client_secret))


@dataclass(frozen=True)
class PasswordLogin:
    """SOAP ``login()`` with password + security token (deprecated by Salesforce)."""

    username: str
    password: str = field(repr=False)
    security_token: str = field(repr=False)
    login_url: str
    flow: str = "password (SOAP login, deprecated)"

    def login(self, session: requests.Session) -> Token:
        body = (
            '<?xml version="1.0" encoding="utf-8" ?>'
            '<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:urn="urn:partner.soap.sforce.com">'
            "<env:Header><urn:CallOptions><urn:client>simple-salesforce/segsync</urn:client>"
            "<urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></env:Header>"
            '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
            f"<n1:username>{escape(self.username)}</n1:username>"
            f"<n1:password>{escape(self.password)}{escape(self.security_token)}</n1:password>"
            "</n1:login></env:Body></env:Envelope>"
        )
        response = session.post(
            f"{self.login_url}/services/Soap/u/{API_VERSION}", data=body.encode(),
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
        )
        found = _xml_values(response.content, ("sessionId", "serverUrl", "userId",
                                                 "exceptionCode", "exceptionMessage"))
        if response.status_code != 200 or "sessionId" not in found or "serverUrl" not in found:
            code = found.get("exceptionCode", f"HTTP {response.status_code}")
            raise AuthError(scrub(
                f"Salesforce login ({self.flow}) failed: {code}: "
                f"{found.get('exceptionMessage', '')} (check username, password and security "
                "token; SOAP login() does not exist from API 65.0 on and is off in new orgs)"
            ))
        register_secret(found["sessionId"])
        parts = urlsplit(found["serverUrl"])
        return Token(found["sessionId"], f"https://{parts.netloc}", found.get("userId"))


def _xml_values(content: bytes, names: tuple[str, ...]) -> dict[str, str]:
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return {}
    values: dict[str, str] = {}
    for element in root.iter():
        local = element.tag.rsplit("}", 1)[-1]
        if local in names and local not in values and element.text:
            values[local] = element.text
    return values


def credentials_for(settings: SalesforceSettings) -> Credentials:
    """The credentials object for ``[crm].auth``; reads (and registers) every secret."""
    login_url = settings.login_url
    if settings.auth == "jwt":
        assert settings.username
        assert settings.consumer_key_env
        assert settings.private_key_file
        audience = ("https://test.salesforce.com" if settings.sandbox
                    else "https://login.salesforce.com")
        return JwtBearer(
            settings.username,
            read_secret(settings.consumer_key_env, "[crm].consumer_key_env"),
            settings.private_key_file,
            login_url,
            audience,
        )
    if settings.auth == "client_credentials":
        assert settings.client_id_env
        assert settings.client_secret_env
        return ClientCredentials(
            read_secret(settings.client_id_env, "[crm].client_id_env"),
            read_secret(settings.client_secret_env, "[crm].client_secret_env"),
            login_url,
        )
    assert settings.username
    assert settings.password_env
    assert settings.security_token_env
    return PasswordLogin(
        settings.username,
        read_secret(settings.password_env, "[crm].password_env"),
        read_secret(settings.security_token_env, "[crm].security_token_env"),
        login_url,
    )


# --- usage accounting -----------------------------------------------------------------------


def endpoint_label(method: str, url: str) -> str:
    """A stable label for a request, e.g. ``GET query``, ``POST composite/sobjects``."""
    path = urlsplit(url).path
    if path.startswith("/services/oauth2/token"):
        return "POST oauth2/token (login)"
    if path.startswith("/services/Soap/u/"):
        return "POST Soap login"
    relative = _VERSION_PREFIX.sub("", path).strip("/")
    parts = relative.split("/") if relative else []
    if parts and parts[0] in ("query", "queryAll"):
        return f"GET {parts[0]}" + (" (next page)" if len(parts) > 1 else "")
    labelled = ["{id}" if _ID_SEGMENT.match(p) and any(c.isdigit() for c in p) else p
                for p in parts]
    return f"{method} {'/'.join(labelled)}"


@dataclass
class ApiUsage:
    """Requests sent (retries included) by endpoint label, the last limits header, and the
    server's clock as the last ``Date`` header told it."""

    calls: dict[str, int] = field(default_factory=dict)
    limits: LimitInfo | None = None
    server_time: dt.datetime | None = None

    def record(self, request: requests.PreparedRequest, response: requests.Response | None) -> None:
        label = endpoint_label(request.method or "GET", request.url or "")
        self.calls[label] = self.calls.get(label, 0) + 1
        if response is None:
            return
        info = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if info is not None:
            self.limits = info
        date = response.headers.get("Date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_time = email.utils.parsedate_to_datetime(date).astimezone(dt.UTC)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryPage:
    """One page of a SOQL result, the size of the whole result, and the server's time
    when it answered (from the ``Date`` header; None if it sent none)."""

    records: list[dict[str, Any]]
    total_size: int
    server_time: dt.datetime | None = None


class SalesforceClient:
    """Logged-in access to one org through the shared session.

    ``session`` retries transient failures; ``once`` is the same transport without
    retries, used for the one call whose retry could duplicate work (creating a Campaign).
    """

    def __init__(
        self,
        credentials: Credentials,
        session: requests.Session,
        once: requests.Session,
        *,
        instance_url: str | None = None,
        server_time: Callable[[], dt.datetime | None] = lambda: None,
    ) -> None:
        self.credentials = credentials
        self.server_time = server_time
        self.session = session
        self.once = once
        self._instance_override = instance_url
        self._token: Token | None = None
        self._sf: dict[bool, Salesforce] = {}
        #: The Salesforce errorCode of the last call if it failed ("" otherwise, or when
        #: the failure carried no code): read it right after catching a ConnectorError.
        self.last_error_code = ""
        self.logins = 0

    # -- sessions ------------------------------------------------------------------------

    @property
    def token(self) -> Token:
        if self._token is None:
            token = self.credentials.login(self.session)
            if self._instance_override:
                token = Token(token.access_token, self._instance_override, token.user_id)
            self._token = token
            self._sf = {}
            self.logins += 1
            log.debug("logged in to %s (%s)", token.instance_url, self.credentials.flow)
        return self._token

    def salesforce(self, once: bool = False) -> Salesforce:
        token = self.token
        if once not in self._sf:
            self._sf[once] = Salesforce(
                session_id=token.access_token,
                instance_url=token.instance_url,
                session=self.once if once else self.session,
                version=API_VERSION,
                object_pairs_hook=dict,
            )
        return self._sf[once]

    def relogin(self) -> None:
        self._token = None
        self._sf = {}

    def call(self, what: str, action: Callable[[Salesforce], T], *, once: bool = False,
             unreadable: type[CrmDataError] = CrmDataError) -> T:
        """Run ``action`` on a logged-in client: one fresh login on INVALID_SESSION_ID,
        every other failure mapped through ``mapping.error_for``; a body that is not JSON
        raises ``unreadable`` (writers pass :class:`UnreadableAnswer`)."""
        self.last_error_code = ""
        for attempt in (1, 2):
            try:
                return action(self.salesforce(once))
            except SalesforceExpiredSession as exc:
                if attempt == 2:
                    raise self._error(exc, what) from None
                log.info("Salesforce session expired; logging in again")
                self.relogin()
            except SalesforceError as exc:
                raise self._error(exc, what) from None
            except requests.JSONDecodeError:
                raise unreadable(f"{what}: Salesforce sent a response that is not valid "
                                 "JSON (truncated, or an HTML page)") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: SalesforceError, what: str) -> ConnectorError:
        content = exc.content
        self.last_error_code = first_error(content)[0]
        return error_for(exc.status, content, what)

    # -- calls ---------------------------------------------------------------------------

    def query_pages(self, soql: str, *, include_deleted: bool = False, what: str = "query",
                    unreadable: type[CrmDataError] = CrmDataError) -> Iterator[QueryPage]:
        """Lazily, page by page (as ``query_all_iter`` does), never the whole result."""
        result = self.call(what, lambda sf: sf.query(soql, include_deleted=include_deleted),
                           unreadable=unreadable)
        seen: set[str] = set()
        while True:
            yield QueryPage(list(result.get("records") or []), int(result.get("totalSize") or 0),
                            self.server_time())
            if result.get("done", True):
                return
            next_url = str(result.get("nextRecordsUrl") or "")
            if not next_url or next_url in seen:
                raise CrmDataError(f"{what}: Salesforce returned a repeated or empty "
                                   f"nextRecordsUrl ({next_url!r})")
            seen.add(next_url)
            result = self.call(what, functools.partial(_query_more, url=next_url),
                               unreadable=unreadable)

    def rest(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             json: Any = None, once: bool = False,
             unreadable: type[CrmDataError] = CrmDataError) -> Any:
        """A JSON REST call relative to ``/services/data/vXX.X/`` (None for 204/empty)."""
        what = f"{method} {path}"
        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = json
        return self.call(
            what, lambda sf: sf.restful(path, params=dict(params or {}), method=method, **kwargs),
            once=once, unreadable=unreadable,
        )

    def download(self, path: str, params: Mapping[str, str]) -> requests.Response:
        """A non-JSON GET (Bulk 2.0 CSV results), with the same re-login and error map."""
        what = f"GET {path}"
        for attempt in (1, 2):
            sf = self.salesforce()
            response = self.session.get(
                sf.base_url + path, params=dict(params),
                headers={"Authorization": f"Bearer {self.token.access_token}",
                         "Accept": "text/csv"},
            )
            if response.status_code == 401 and attempt == 1:
                self.relogin()
                continue
            if response.status_code >= 300:
                try:
                    content: Any = response.json()
                except ValueError:
                    content = response.text
                self.last_error_code = first_error(content)[0]
                raise error_for(response.status_code, content, what)
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _query_more(sf: Salesforce, url: str) -> Any:
    return sf.query_more(url, identifier_is_url=True)


def aware(value: dt.datetime) -> dt.datetime:
    """Naive values are UTC in segsync; make them explicit for format_soql."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
