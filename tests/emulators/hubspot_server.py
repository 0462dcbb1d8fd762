"""HTTP side of the HubSpot emulator: ThreadingHTTPServer, routing, auth/OAuth, rate limits,
fault injection and the request log. Endpoint bodies are in ``hubspot_routes.py``.

Faults either answer instead of the portal (the request changes nothing) or act after the
request was processed (:attr:`Fault.processes`): the handler commits, then the answer is
replaced (a 5xx, an HTML page, a truncated body), held back (late answer), cut mid-body or
never sent (connection reset). ``RecordedRequest.processed`` says which happened.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.emulators.hubspot_control import (
    REACHABLE,
    Fault,
    FaultBook,
    FaultKind,
    RateLimiter,
    RecordedRequest,
    is_write_request,
    rate_limit_body,
)
from tests.emulators.hubspot_lists import ListRoutes
from tests.emulators.hubspot_model import ApiError, Json, validation_error
from tests.emulators.hubspot_properties import PropertyRoutes
from tests.emulators.hubspot_routes import ApiLimits, Ctx, ObjectRoutes, Reply
from tests.emulators.hubspot_state import HubSpotState

#: Scopes a segsync private app needs (fact sheet §1); the default grant.
DEFAULT_SCOPES: frozenset[str] = frozenset(
    {
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.deals.read",
        "crm.lists.read",
        "crm.lists.write",
        "crm.schemas.contacts.read",
        "crm.schemas.contacts.write",
        "crm.schemas.companies.read",
        "crm.schemas.deals.read",
        "sales-email-read",
    }
)

_MISSING_AUTH = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>502 Bad Gateway</h1><p>The server returned an invalid or incomplete response.</p>"
    b"<hr><center>cloudflare</center></body></html>"
)
_MALFORMED_JSON = b'{"status":"COMPLETE","results":[{"id":"1","properties":{"email":'
_STATUS_BODIES: dict[int, tuple[str, str | None]] = {
    400: ("There was a problem with the request.", "VALIDATION_ERROR"),
    401: (_MISSING_AUTH, "INVALID_AUTHENTICATION"),
    403: ("This app hasn't been granted all required scopes to make this call.", "MISSING_SCOPES"),
    404: ("Resource not found", "OBJECT_NOT_FOUND"),
    409: ("Conflict", "CONFLICT"),
    423: ("The resource is locked by another bulk operation; retry after 2 seconds.", "LOCKED"),
    477: ("Migration in progress; retry later.", "MIGRATION_IN_PROGRESS"),
    500: ("internal error", "INTERNAL_ERROR"),
    502: ("Bad Gateway", None),
    503: ("Service Unavailable", None),
    504: ("Gateway Timeout", None),
}


@dataclass
class OAuthToken:
    token: str
    scopes: frozenset[str]
    expires_at: datetime
    refresh_token: str


@dataclass
class AuthStore:
    """Private-app tokens and an OAuth app (client id/secret, refresh tokens, access tokens)."""

    private_tokens: dict[str, frozenset[str]]
    client_id: str
    client_secret: str
    refresh_tokens: dict[str, frozenset[str]]
    access_token_ttl: int = 1800
    oauth_tokens: dict[str, OAuthToken] = field(default_factory=dict)
    auth_codes: dict[str, frozenset[str]] = field(default_factory=dict)
    issued: int = 0


@dataclass
class Outcome:
    reply: Reply
    delay: float = 0.0
    disconnect: bool = False
    fault: str | None = None
    abort: bool = False  # reset the connection without sending a byte
    hold: threading.Event | None = None  # answer only once set (or when the server stops)
    processed: bool = False  # the handler committed the request
    rule: Fault | None = None


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Reply]
    search: bool = False
    public: bool = False


class HubSpotApp:
    """Everything between the socket and the state, framework-free and synchronous."""

    def __init__(
        self,
        state: HubSpotState,
        auth: AuthStore,
        limiter: RateLimiter,
        faults: FaultBook,
        *,
        limits: ApiLimits,
        strict: bool,
        portal_id: int,
        app_id: int,
    ) -> None:
        self.state = state
        self.auth = auth
        self.limiter = limiter
        self.faults = faults
        self.strict = strict
        self.portal_id = portal_id
        self.app_id = app_id
        self.base_url = ""
        self.log: list[RecordedRequest] = []
        self.internal_errors: list[str] = []
        self.injected_429s = 0
        self._correlation = 0
        groups = [
            ObjectRoutes(state, limits),
            ListRoutes(state, limits),
            PropertyRoutes(state, limits),
        ]
        public: list[tuple[str, str, Callable[..., Reply]]] = [
            ("POST", "/oauth/v1/token", self.oauth_token),
            ("GET", "/oauth/v1/access-tokens/(?P<token>[^/]+)", self.oauth_token_info),
            ("POST", "/oauth/v2/private-apps/get/access-token-info", self.private_token_info),
        ]
        self.routes = [Route(m, re.compile(p + "$"), h, public=True) for m, p, h in public] + [
            Route(m, re.compile(p + "$"), h, search=s) for g in groups for m, p, h, s in g.table()
        ]

    # ------------------------------------------------------------------ entry point

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Outcome:
        arrival = time.monotonic()
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in headers.items()}
        body, body_error = _parse_body(headers.get("content-type", ""), raw)
        with self.state.lock:
            try:
                outcome = self._dispatch(method, path, query, headers, body, body_error)
            except Exception:
                self.internal_errors.append(traceback.format_exc())
                outcome = Outcome(
                    self._error_reply(ApiError(500, "internal error", "INTERNAL_ERROR"))
                )
            if is_write_request(method, path):
                self.state.touch()  # whatever the handler changed, no cached search survives
            status = 0 if outcome.disconnect or outcome.abort else outcome.reply.status
            if status == 429 and outcome.fault is not None:
                self.injected_429s += 1
            self.log.append(
                RecordedRequest(
                    method,
                    path,
                    query,
                    body,
                    status,
                    arrival,
                    outcome.fault,
                    headers,
                    processed=outcome.processed,
                )
            )
            if outcome.rule is not None and outcome.processed:
                outcome.rule.reached.set()
        return outcome

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Json,
        body_error: str | None,
    ) -> Outcome:
        route, params = self._match(method, path.rstrip("/") or "/")  # SDK adds "lists/"
        public = route is not None and route.public
        is_search = route is not None and route.search
        if not public:
            self.limiter.observe(is_search=is_search)
        fault = self.faults.pick(method, path)
        if fault is not None and not fault.processes:
            early = self._fault_reply(fault)
            if early is not None:
                return Outcome(early, fault=str(fault.kind))
        processed = False
        try:
            scopes: frozenset[str] = frozenset()
            if not public:
                scopes = self._authenticate(headers)
                policy = self.limiter.admit(is_search=is_search)
                if policy is not None:
                    return Outcome(self._rate_limited(policy, self.limiter.config.retry_after))
            if route is None:
                raise ApiError(404, f"No route for {method} {path}", "OBJECT_NOT_FOUND")
            if body_error is not None:
                raise validation_error(body_error)
            ctx = Ctx(method, path, query, body, scopes, self.base_url, self.strict)
            if fault is not None and fault.kind is FaultKind.PARTIAL:
                ctx.partial = fault
            elif fault is not None and fault.kind is FaultKind.UNATTRIBUTED:
                ctx.unattributed = fault
            elif fault is not None and fault.kind is FaultKind.SHORT_PAGE:
                ctx.short_page = fault
            reply = route.handler(ctx, **params)
            processed = True
        except ApiError as exc:
            reply = self._error_reply(exc)
        if not public and not is_search:
            reply.headers.update(self.limiter.headers())
        if fault is None:
            return Outcome(reply, processed=processed)
        if fault.kind in REACHABLE:  # reach=True: the work is done, the answer is lost
            reply = self._lost_reply(fault, reply)
        return Outcome(
            reply,
            delay=fault.delay if fault.kind is FaultKind.DELAY else 0.0,
            disconnect=fault.kind is FaultKind.DISCONNECT and not fault.abort,
            fault=str(fault.kind),
            abort=fault.abort,
            hold=fault.hold,
            processed=processed,
            rule=fault,
        )

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    # ------------------------------------------------------------------ replies

    def correlation_id(self) -> str:
        self._correlation += 1
        return f"00000000-0000-4000-8000-{self._correlation:012d}"

    def _error_reply(self, exc: ApiError) -> Reply:
        cid = self.correlation_id()
        headers = {"X-HubSpot-Correlation-Id": cid, **exc.headers}
        return Reply(exc.status, exc.body(cid), headers)

    def _rate_limited(self, policy: str, retry_after: str | None) -> Reply:
        cid = self.correlation_id()
        headers = {"X-HubSpot-Correlation-Id": cid}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return Reply(429, rate_limit_body(policy, cid, self.app_id), headers)

    def _lost_reply(self, fault: Fault, real: Reply) -> Reply:
        """What a client receives instead of ``real`` once the request was processed."""
        if fault.kind is FaultKind.MALFORMED_JSON:
            payload = real.payload()
            return Reply(
                fault.status or real.status,
                raw=payload[: len(payload) // 2] or b"{",
                headers=dict(real.headers),
            )
        lost = self._fault_reply(fault)
        assert lost is not None  # STATUS and HTML always answer
        return lost

    def _fault_reply(self, fault: Fault) -> Reply | None:
        kind = fault.kind
        if kind is FaultKind.RATE_LIMIT or (kind is FaultKind.STATUS and fault.status == 429):
            return self._rate_limited(fault.policy_name, fault.retry_after)
        if kind is FaultKind.STATUS:
            assert fault.status is not None
            message, category = _STATUS_BODIES.get(fault.status, ("error", None))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return self._error_reply(ApiError(fault.status, message, category, headers=headers))
        if kind is FaultKind.EXPIRED_TOKEN:
            return self._error_reply(_expired(1))
        if kind is FaultKind.MALFORMED_JSON:
            return Reply(fault.status or 200, raw=_MALFORMED_JSON)
        if kind is FaultKind.HTML:
            return Reply(
                fault.status or 502, raw=_HTML_PAGE, content_type="text/html; charset=utf-8"
            )
        if kind is FaultKind.EMPTY:
            return Reply(200, {"total": 0, "results": []})
        return None  # DELAY, DISCONNECT, PARTIAL, UNATTRIBUTED, SHORT_PAGE act on the response

    # ------------------------------------------------------------------ auth

    def _authenticate(self, headers: dict[str, str]) -> frozenset[str]:
        header = headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise ApiError(401, _MISSING_AUTH, "INVALID_AUTHENTICATION")
        token = header[7:].strip()
        if token in self.auth.private_tokens:
            return self.auth.private_tokens[token]
        oauth = self.auth.oauth_tokens.get(token)
        if oauth is None:
            raise ApiError(401, "Authentication credentials are invalid.", "INVALID_AUTHENTICATION")
        now = self.state.clock.now()
        if now >= oauth.expires_at:
            raise _expired(max(1, int((now - oauth.expires_at).total_seconds())))
        return oauth.scopes

    def oauth_token(self, ctx: Ctx) -> Reply:
        form = ctx.body if isinstance(ctx.body, dict) else {}
        grant = form.get("grant_type")
        if form.get("client_id") != self.auth.client_id:
            return _oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != self.auth.client_secret:
            return _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            if refresh not in self.auth.refresh_tokens:
                return _oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
            scopes = self.auth.refresh_tokens[refresh]
        elif grant == "authorization_code":
            code = str(form.get("code", ""))
            if code not in self.auth.auth_codes:
                return _oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
            if not form.get("redirect_uri"):
                return _oauth_error("BAD_REDIRECT_URI", "redirect_uri is required")
            scopes = self.auth.auth_codes.pop(code)
            self.auth.issued += 1
            refresh = f"oauth-refresh-{self.auth.issued:04d}"
            self.auth.refresh_tokens[refresh] = scopes
        else:
            return _oauth_error("BAD_GRANT_TYPE", f"unsupported grant_type {grant!r}")
        self.auth.issued += 1
        access = f"oauth-access-{self.auth.issued:04d}"
        ttl = self.auth.access_token_ttl
        expires = self.state.clock.now() + timedelta(seconds=ttl)
        self.auth.oauth_tokens[access] = OAuthToken(access, scopes, expires, refresh)
        return Reply(
            200,
            {
                "token_type": "bearer",
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": ttl,
                "hub_id": self.portal_id,
                "scopes": sorted(scopes),
            },
        )

    def oauth_token_info(self, ctx: Ctx, token: str) -> Reply:
        info = self.auth.oauth_tokens.get(token)
        now = self.state.clock.now()
        if info is None or now >= info.expires_at:
            return self._error_reply(
                ApiError(404, "Token not found or expired", "OBJECT_NOT_FOUND")
            )
        return Reply(
            200,
            {
                "token": token,
                "user": "segsync-test@example.com",
                "hub_domain": f"portal-{self.portal_id}.hubspot.com",
                "scopes": sorted(info.scopes),
                "hub_id": self.portal_id,
                "app_id": self.app_id,
                "expires_in": int((info.expires_at - now).total_seconds()),
                "user_id": 1,
                "token_type": "access",
            },
        )

    def private_token_info(self, ctx: Ctx) -> Reply:
        body = ctx.body if isinstance(ctx.body, dict) else {}
        token = str(body.get("tokenKey", ""))
        if token not in self.auth.private_tokens:
            return self._error_reply(ApiError(404, "Token not found", "OBJECT_NOT_FOUND"))
        scopes = sorted(self.auth.private_tokens[token])
        return Reply(
            200, {"userId": 1, "hubId": self.portal_id, "appId": self.app_id, "scopes": scopes}
        )


def _expired(seconds: int) -> ApiError:
    return ApiError(
        401,
        f"The OAuth token used to make this call expired {seconds} second(s) ago.",
        "EXPIRED_AUTHENTICATION",
    )


def _oauth_error(status: str, message: str) -> Reply:
    return Reply(400, {"status": status, "message": message, "correlationId": "oauth"})


def _parse_body(content_type: str, raw: bytes) -> tuple[Json, str | None]:
    """(parsed body, error message). Form bodies become flat dicts."""
    if not raw:
        return None, None
    text = raw.decode("utf-8", errors="replace")
    if "application/x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return text, f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"


# --------------------------------------------------------------------------- socket layer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = (
        128  # the default backlog of 5 drops SYNs under parallel clients (1 s stalls)
    )
    app: HubSpotApp
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client hang-ups (timeouts, cut connections) are expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30
    wbufsize = -1  # buffer status line, headers and body into one send (flushed per request)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        outcome = self.server.app.handle(self.command, self.path, dict(self.headers.items()), raw)
        if outcome.hold is not None:
            while not outcome.hold.wait(0.02) and not self.server.stopping.is_set():
                pass
        elif outcome.delay:
            self.server.stopping.wait(outcome.delay)
        if outcome.abort:
            self._reset()
            return
        reply = outcome.reply
        payload = b"" if reply.status == 204 else reply.payload()
        try:
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if outcome.disconnect:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0) before any byte of an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
        except OSError:
            pass


class HttpFrontend:
    """Binds 127.0.0.1:<ephemeral> and serves ``app`` from a daemon thread."""

    def __init__(self, app: HubSpotApp) -> None:
        self.app = app
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.app = self.app
        server.stopping = threading.Event()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            daemon=True,
            name="hubspot-emulator",
        )
        self._thread.start()
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
