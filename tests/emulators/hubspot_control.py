"""Test controls of the HubSpot emulator: fault rules, rate limiter, request log."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    STATUS = "status"  # error status: 500/502/503/504/423/... (429 gets the rate-limit body);
    #                    with reach=True the request is processed first (post-commit loss)
    RATE_LIMIT = "rate_limit"  # 429 with policyName (+ optional Retry-After)
    EXPIRED_TOKEN = "expired_token"  # 401 EXPIRED_AUTHENTICATION
    DELAY = "delay"  # process, then hold the response for `delay` seconds or until `hold` is set
    DISCONNECT = "disconnect"  # process, send headers + half the body, close the socket;
    #                            abort=True: process, then reset the connection (no byte sent)
    MALFORMED_JSON = "malformed_json"  # 200 whose body is truncated JSON; reach=True: process,
    #                                    then send the real answer cut in half (its own status)
    HTML = "html"  # HTML error page with `status` (default 502; 200 also useful); reach=True:
    #                process first
    PARTIAL = "partial"  # per-record refusal of `ids`: batch update / list memberships -> 207
    #                      whose error (`category`) names them, not written; a *NOT_FOUND
    #                      category -> OBJECT_NOT_FOUND error / recordIdsMissing instead;
    #                      batch reads -> 207 OBJECT_NOT_FOUND
    EMPTY = "empty"  # 200 with no results (search / object listing), as when a permission
    #                  change hides every record from the app
    UNATTRIBUTED = "unattributed"  # batch update / list memberships: 207 whose error names no
    #                                record (context.ids = `context_ids`), the affected `ids`
    #                                (default: all) written or not (`applied`) and left out of
    #                                results[] / recordsIdsAdded / recordIdsRemoved / recordIdsMissing
    SHORT_PAGE = "short_page"  # search: only the first `keep` results of the page (default
    #                            half), yet paging.next.after present while more match


#: Kinds that answer without touching the portal unless ``reach=True`` is given.
REACHABLE = frozenset({FaultKind.STATUS, FaultKind.MALFORMED_JSON, FaultKind.HTML})
#: Kinds that act on a processed request's answer (the portal changed before the answer).
AFTER_PROCESSING = frozenset({FaultKind.DELAY, FaultKind.DISCONNECT, FaultKind.PARTIAL,
                              FaultKind.UNATTRIBUTED, FaultKind.SHORT_PAGE})


@dataclass
class Fault:
    """One fault rule. It matches requests by method and path prefix, lets the first ``after``
    matching requests through, then fires ``times`` times (``None`` = forever).

    Post-commit loss -- HubSpot did the work, the client never learns it -- is what the
    exact-state logic of segsync has to survive, so every way an answer can be lost after
    the request was processed is available: ``status`` with ``reach=True`` (a 502/503/504
    from a gateway after the backend committed), ``disconnect`` (cut mid-body) or
    ``disconnect`` with ``abort=True`` (connection reset, no byte of the answer),
    ``delay`` (a late answer: the client times out), ``malformed_json`` with
    ``reach=True`` (a truncated body). ``reached`` is set once a request this rule fired
    on has been processed, so a test can wait for the commit without sleeping.
    """

    kind: FaultKind | str
    path_prefix: str | None = None
    method: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    policy_name: str = "TEN_SECONDLY_ROLLING"
    retry_after: str | None = None
    delay: float = 0.0
    ids: tuple[str, ...] = ()  # PARTIAL: failing ids (empty: the last input);
    #                            UNATTRIBUTED: affected ids (empty: every input)
    reach: bool = False  # STATUS / MALFORMED_JSON / HTML: process the request first
    abort: bool = False  # DISCONNECT: reset the connection before any byte of the answer
    hold: threading.Event | None = None  # DELAY: answer only once this is set (or at stop)
    context_ids: tuple[str, ...] = ("",)  # UNATTRIBUTED: the error's context.ids ((): [])
    applied: bool = True  # UNATTRIBUTED: whether the affected ids are written
    keep: int | None = None  # SHORT_PAGE: results kept (None: half the page, rounded down)
    category: str = "VALIDATION_ERROR"  # PARTIAL on writes: the refusal's error category
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)
    reached: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if self.kind is FaultKind.STATUS and self.status is None:
            raise ValueError("Fault(kind='status') needs status=")
        if self.reach and self.kind not in REACHABLE:
            raise ValueError(
                f"reach=True only applies to {sorted(REACHABLE)}; {self.kind} always processes"
                if self.kind in AFTER_PROCESSING
                else f"reach=True does not apply to {self.kind}"
            )
        if self.abort and self.kind is not FaultKind.DISCONNECT:
            raise ValueError("abort=True only applies to Fault(kind='disconnect')")
        if self.hold is not None and self.kind is not FaultKind.DELAY:
            raise ValueError("hold= only applies to Fault(kind='delay')")
        if self.keep is not None and self.keep < 0:
            raise ValueError("keep must be >= 0")
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def not_found(self) -> bool:
        """PARTIAL: the failing records are reported as not existing (not as refused)."""
        return self.category.upper().endswith("NOT_FOUND")

    @property
    def processes(self) -> bool:
        """Whether a request this rule fires on is processed (the portal may change)."""
        return self.kind in AFTER_PROCESSING or self.reach

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultBook:
    def __init__(self) -> None:
        self.rules: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self.rules.append(fault)
        return fault

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, method: str, path: str) -> Fault | None:
        """Count the request against every matching rule; fire the first eligible one."""
        chosen: Fault | None = None
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            rule.seen += 1
            if chosen is None and rule.seen > rule.after and not rule.exhausted:
                rule.fired += 1
                chosen = rule
        return chosen


@dataclass
class RateLimitConfig:
    """HubSpot's limits (fact sheet §12). ``time_scale`` shrinks both windows for fast tests."""

    burst_limit: int = 100
    burst_window_s: float = 10.0
    search_limit: int = 5
    search_window_s: float = 1.0
    daily_limit: int | None = 250_000
    time_scale: float = 1.0
    search_counts_toward_burst: bool = True
    retry_after: str | None = None  # Retry-After header on limiter 429s (undocumented by HubSpot)
    enabled: bool = True

    @property
    def burst_window(self) -> float:
        return self.burst_window_s * self.time_scale

    @property
    def search_window(self) -> float:
        return self.search_window_s * self.time_scale


@dataclass
class RateStats:
    limiter_429s: int = 0  # 429s served by the limiter (injected ones are counted separately)
    max_requests_in_window: int = 0  # arrivals (accepted or not) within any burst window
    max_search_requests_in_window: int = 0  # search arrivals within any search window
    daily_used: int = 0


class RateLimiter:
    """Rolling windows over accepted requests; rejected requests do not consume budget."""

    def __init__(self, config: RateLimitConfig, monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.monotonic = monotonic
        self.stats = RateStats()
        self._accepted: deque[float] = deque()
        self._accepted_search: deque[float] = deque()
        self._arrivals: deque[float] = deque()
        self._search_arrivals: deque[float] = deque()

    @staticmethod
    def _prune(window: deque[float], now: float, length: float) -> None:
        while window and window[0] <= now - length:
            window.popleft()

    def observe(self, *, is_search: bool) -> None:
        """Track arrival rates for the stats (every API request, limited or not)."""
        now = self.monotonic()
        self._prune(self._arrivals, now, self.config.burst_window)
        self._arrivals.append(now)
        self.stats.max_requests_in_window = max(
            self.stats.max_requests_in_window, len(self._arrivals)
        )
        if is_search:
            self._prune(self._search_arrivals, now, self.config.search_window)
            self._search_arrivals.append(now)
            self.stats.max_search_requests_in_window = max(
                self.stats.max_search_requests_in_window, len(self._search_arrivals)
            )

    def admit(self, *, is_search: bool) -> str | None:
        """Consume budget; return the violated policyName, or None when admitted."""
        cfg = self.config
        if not cfg.enabled:
            return None
        now = self.monotonic()
        self._prune(self._accepted, now, cfg.burst_window)
        self._prune(self._accepted_search, now, cfg.search_window)
        policy: str | None = None
        if cfg.daily_limit is not None and self.stats.daily_used >= cfg.daily_limit:
            policy = "DAILY"
        elif is_search and len(self._accepted_search) >= cfg.search_limit:
            policy = "SECONDLY"
        elif (not is_search or cfg.search_counts_toward_burst) and len(
            self._accepted
        ) >= cfg.burst_limit:
            policy = "TEN_SECONDLY_ROLLING"
        if policy is not None:
            self.stats.limiter_429s += 1
            return policy
        self.stats.daily_used += 1
        if is_search:
            self._accepted_search.append(now)
        if not is_search or cfg.search_counts_toward_burst:
            self._accepted.append(now)
        return None

    def headers(self) -> dict[str, str]:
        """X-HubSpot-RateLimit-* headers for non-search responses."""
        cfg = self.config
        out = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(cfg.burst_window_s * 1000)),
            "X-HubSpot-RateLimit-Max": str(cfg.burst_limit),
            "X-HubSpot-RateLimit-Remaining": str(max(0, cfg.burst_limit - len(self._accepted))),
        }
        if cfg.daily_limit is not None:
            out["X-HubSpot-RateLimit-Daily"] = str(cfg.daily_limit)
            out["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, cfg.daily_limit - self.stats.daily_used)
            )
        return out


RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}


def rate_limit_body(policy_name: str, correlation_id: str, app_id: int) -> dict[str, Any]:
    """The 429 body documented in fact sheet §12."""
    return {
        "status": "error",
        "message": RATE_LIMIT_MESSAGES.get(
            policy_name, f"You have reached your {policy_name.lower()} limit."
        ),
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id,
        "policyName": policy_name,
        "groupName": f"publicapi:private-app:{app_id}",
        "requestId": correlation_id,
    }


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, form dict for OAuth, raw text if unparseable, None if empty
    status: int  # 0 when the connection was cut (DISCONNECT fault)
    t: float  # time.monotonic() at arrival
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The endpoint handler ran to completion: whatever the request changes was committed,
    #: whatever the client then received (post-commit faults answer an error or nothing).
    processed: bool = False

    @property
    def is_write(self) -> bool:
        return is_write_request(self.method, self.path)


_READ_POSTS = ("/search", "/batch/read", "/oauth/", "/get/access-token-info")


def is_write_request(method: str, path: str) -> bool:
    if method in {"PUT", "PATCH", "DELETE"}:
        return True
    if method != "POST":
        return False
    return not any(marker in path for marker in _READ_POSTS)
