"""Fault rules for the Salesforce emulator: `sf.inject(Fault("http_503", path_prefix="query"))`.

A rule matches requests by method and path prefix. A prefix that starts with "/" is compared
with the raw path (e.g. "/services/oauth2/token"); any other prefix is compared with the path
after "/services/data/vXX.X/" (e.g. "query", "composite/sobjects", "jobs/query").
`query_contains` narrows a rule to queries whose SOQL holds that text (e.g. "FROM Contact").
The rule lets the first `after` matching requests through, then fires on the next `times`
(None: forever).

Kinds, and whether the request reaches the org (is processed) before the fault shapes the
response (`reach_org`, overridable per rule). With `reach_org=True` an error kind stands
for an answer lost after the commit: e.g. `Fault("http_503", path_prefix="composite/sobjects",
reach_org=True)` inserts the members, then answers 503, so a client that resends the same
payload gets DUPLICATE_VALUE back.

=========================  =============================================================  =====
kind                       response                                                       reach
=========================  =============================================================  =====
http_500                   500 [{"errorCode": "UNKNOWN_EXCEPTION"}]                        no
http_502                   502 HTML "Bad Gateway" page (a proxy answering)                 no
http_503                   503 HTML "Service Unavailable" page                             no
http_504                   504 HTML "Gateway Timeout" page (a proxy giving up)             no
http_429                   429 from a proxy / edge rate limit, with `retry_after` as the   no
                           Retry-After header when set
server_unavailable         503 [{"errorCode": "SERVER_UNAVAILABLE"}]                       no
unable_to_lock_row         collections: chosen records fail with UNABLE_TO_LOCK_ROW;       yes
                           single-record writes: 400 UNABLE_TO_LOCK_ROW
delay                      the normal response, `seconds` late (beat a client timeout)    yes
disconnect                 headers and half the body, then the connection is closed       yes
malformed_json             200 with a truncated JSON body                                  yes
html_error                 200 text/html maintenance page                                  no
session_expired            every live session is revoked, 401 INVALID_SESSION_ID           no
request_limit_exceeded     403 REQUEST_LIMIT_EXCEEDED (message overridable)                no
empty_result               200 query answer with no records (a permission change that     no
                           hides every row from the API user)
=========================  =============================================================  =====
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal[
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_429",
    "server_unavailable",
    "unable_to_lock_row",
    "delay",
    "disconnect",
    "malformed_json",
    "html_error",
    "session_expired",
    "request_limit_exceeded",
    "empty_result",
]

FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
_REACHES_ORG = {"unable_to_lock_row", "delay", "disconnect", "malformed_json"}


@dataclass
class Fault:
    """One fault rule. `fired` counts how often it has applied so far."""

    kind: FaultKind
    path_prefix: str | None = None
    method: str | None = None
    times: int | None = 1
    after: int = 0
    seconds: float = 0.5
    record_indexes: tuple[int, ...] | None = None
    message: str | None = None
    reach_org: bool | None = None
    retry_after: str | None = None
    query_contains: str | None = None  # only requests whose SOQL (the `q` parameter) has this
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def reaches_org(self) -> bool:
        return self.reach_org if self.reach_org is not None else self.kind in _REACHES_ORG

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, method: str, path: str, relative: str | None, soql: str = "") -> bool:
        if self.query_contains is not None and self.query_contains not in soql:
            return False
        return request_matches(self.method, self.path_prefix, method, path, relative)

    def consume(self) -> bool:
        """Count one matching request; True if the fault fires on it."""
        self.seen += 1
        if self.seen <= self.after or self.exhausted:
            return False
        self.fired += 1
        return True

    def locks(self, index: int) -> bool:
        return self.record_indexes is None or index in self.record_indexes


def request_matches(
    want_method: str | None,
    path_prefix: str | None,
    method: str,
    path: str,
    relative: str | None,
) -> bool:
    """The matching rule shared by fault rules and `SalesforceEmulator.count`."""
    if want_method is not None and want_method.upper() != method.upper():
        return False
    if path_prefix is None:
        return True
    if path_prefix.startswith("/"):
        return path.startswith(path_prefix)
    return relative is not None and relative.startswith(path_prefix)
