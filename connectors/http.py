"""One retrying ``requests`` session for every CRM connector.

:func:`make_session` returns a ``requests.Session`` whose ``send`` runs inside ONE tenacity
``Retrying``. Per attempt it:

1. calls the ``limiter`` (a client-side rate limiter, see :mod:`connectors.ratelimit`),
2. sends with the default ``timeout`` unless the caller gave one,
3. reports the attempt to ``on_request(request, response_or_None)`` (for call counting),
4. decides: a response for which ``is_retryable`` is true (default: 408, 423, 425, 429,
   477 and 5xx except 501/505), a connection error, a reset mid-body or a timeout is
   retried; anything else is returned to the caller untouched (no ``raise_for_status``:
   connectors map statuses themselves).

The wait before a retry is the server's ``Retry-After`` (or the ``retry_after`` callback's
answer) plus up to ``jitter`` seconds, else ``base_delay * 2**(attempt-1)`` capped at
``max_delay`` plus up to ``jitter`` seconds. A server asking for more than
``max_retry_after`` seconds, or ``max_attempts`` running out, raises
:class:`RetriesExhausted` (a ``RetriableAPIError``) with a redacted message: method,
sanitised URL, status and a short scrubbed body excerpt -- never headers.

The session does not read the environment (``trust_env = False``): ``REQUESTS_CA_BUNDLE``
would otherwise override ``verify``, and ``*_proxy`` variables would silently apply.
Proxies are used only when passed as ``proxies=``.

Helpers for connectors: :func:`describe` (a safe one-line description of a response) and
:func:`read_json` (JSON or one clear ``CrmDataError`` for HTML error pages / bad JSON).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from connectors.errors import CrmDataError, RetriableAPIError
from connectors.redact import sanitize_url, scrub

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "RetriesExhausted",
    "RetryPolicy",
    "RetryingSession",
    "default_is_retryable",
    "describe",
    "make_session",
    "parse_retry_after",
    "read_json",
]

log = logging.getLogger(__name__)

USER_AGENT = "segsync/0.1 (+https://github.com/segsync)"
DEFAULT_RETRYABLE_STATUSES = frozenset(
    {408, 423, 425, 429, 477, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524, 529}
)
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,  # includes ConnectTimeout, ProxyError, SSLError resets
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # connection reset while reading the body
)
_BODY_EXCERPT = 300
#: Error excerpts end up on stderr and in the store's run messages: no personal data there.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")

Limiter = Callable[[requests.PreparedRequest], None]
IsRetryable = Callable[[requests.Response], bool]
RetryAfter = Callable[[requests.Response], "float | None"]
OnRequest = Callable[[requests.PreparedRequest, "requests.Response | None"], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. ``max_attempts`` counts the first try (1 = never retry)."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after, self.jitter) < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), with jitter."""
        base = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))
        jitter: float = (rng or random).uniform(0, self.jitter)
        return base + jitter


class RetriesExhausted(RetriableAPIError):
    """Retries ran out (or the server asked to wait longer than allowed)."""

    def __init__(self, message: str, *, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class _RetryableResponse(Exception):
    def __init__(self, response: requests.Response, wait: float | None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.wait = wait


def default_is_retryable(response: requests.Response) -> bool:
    return response.status_code in DEFAULT_RETRYABLE_STATUSES


def parse_retry_after(response: requests.Response, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date), None when absent/unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def describe(response: requests.Response, *, body: bool = True) -> str:
    """``"HTTP 503 from POST https://host/path"`` plus a scrubbed body excerpt; no headers."""
    request = response.request
    method = request.method if request is not None else "?"
    url = sanitize_url(str(response.url or (request.url if request is not None else "")))
    text = f"HTTP {response.status_code} from {method} {url}"
    if body:
        excerpt = _excerpt(response)
        if excerpt:
            text += f": {excerpt}"
    return scrub(text)


def _excerpt(response: requests.Response) -> str:
    try:
        raw = response.text
    except Exception:  # pragma: no cover - undecodable body
        return ""
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type.lower() or raw.lstrip().lower().startswith(("<!doctype", "<html")):
        return "an HTML page (not JSON)"
    flat = _EMAIL.sub("[email]", " ".join(raw.split()))
    return flat[:_BODY_EXCERPT] + ("..." if len(flat) > _BODY_EXCERPT else "")


def read_json(response: requests.Response, what: str = "") -> Any:
    """Decode a JSON body, or raise one clear ``CrmDataError`` (HTML page, bad JSON, empty)."""
    label = what or describe(response, body=False)
    try:
        return response.json()
    except ValueError:
        raise CrmDataError(
            scrub(f"{label}: expected JSON, got {_excerpt(response) or 'an empty body'}")
        ) from None


class RetryingSession(requests.Session):
    """A ``requests.Session`` whose ``send`` is retried, rate limited and timed out."""

    def __init__(
        self,
        *,
        timeout: float,
        retry: RetryPolicy,
        limiter: Limiter | None,
        is_retryable: IsRetryable | None,
        retry_after: RetryAfter | None,
        sleep: Callable[[float], None],
        on_request: OnRequest | None,
        rng: random.Random | None,
    ) -> None:
        super().__init__()
        self.trust_env = False
        self.headers["User-Agent"] = USER_AGENT
        self.default_timeout = timeout
        self.retry_policy = retry
        self.limiter = limiter
        self.is_retryable = is_retryable or default_is_retryable
        self.retry_after = retry_after or parse_retry_after
        self.sleep = sleep
        self.on_request = on_request
        self.rng = rng or random.Random()
        #: Attempts sent on the wire (including retries) since the session was built.
        self.attempts = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        policy = self.retry_policy
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_RetryableResponse, *_TRANSIENT_ERRORS)),
            sleep=self.sleep,
            reraise=False,
        )
        try:
            return retrying(self._attempt, request, kwargs)
        except tenacity.RetryError as exc:
            raise self._exhausted(request, exc.last_attempt) from None

    def _attempt(
        self, request: requests.PreparedRequest, kwargs: dict[str, Any]
    ) -> requests.Response:
        if self.limiter is not None:
            self.limiter(request)
        self.attempts += 1
        try:
            response = super().send(request, **kwargs)
        except _TRANSIENT_ERRORS as exc:
            log.debug(
                "%s %s: %s", request.method, scrub(str(request.url)), type(exc).__name__
            )
            if self.on_request is not None:
                self.on_request(request, None)
            raise
        if self.on_request is not None:
            self.on_request(request, response)
        log.debug(
            "%s %s -> %s", request.method, scrub(str(request.url)), response.status_code
        )
        if not self.is_retryable(response):
            return response
        response.content  # noqa: B018 - read the body so the connection is released
        wait = self.retry_after(response)
        if wait is not None and wait > self.retry_policy.max_retry_after:
            raise RetriesExhausted(
                describe(response)
                + f" (server asks to wait {wait:.0f} s, more than the {self.retry_policy.max_retry_after:.0f} s allowed)",
                status=response.status_code,
                attempts=self.attempts,
            )
        raise _RetryableResponse(response, wait)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _RetryableResponse) and exc.wait is not None:
            return exc.wait + self.rng.uniform(0, self.retry_policy.jitter)
        return self.retry_policy.backoff(state.attempt_number, self.rng)

    def _exhausted(
        self, request: requests.PreparedRequest, last: tenacity.Future
    ) -> RetriesExhausted:
        attempts = last.attempt_number
        exc = last.exception()
        if isinstance(exc, _RetryableResponse):
            return RetriesExhausted(
                f"{describe(exc.response)} (gave up after {attempts} attempts)",
                status=exc.response.status_code,
                attempts=attempts,
            )
        reason = type(exc).__name__ if exc is not None else "unknown error"
        return RetriesExhausted(
            scrub(
                f"{request.method} {sanitize_url(str(request.url))} failed: {reason}"
                f" (gave up after {attempts} attempts)"
            ),
            status=None,
            attempts=attempts,
        )


def make_session(
    *,
    timeout: float = 30.0,
    retry: RetryPolicy = RetryPolicy(),
    limiter: Limiter | None = None,
    is_retryable: IsRetryable | None = None,
    retry_after: RetryAfter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_request: OnRequest | None = None,
    proxies: Mapping[str, str] | None = None,
    verify: bool | str = True,
    rng: random.Random | None = None,
) -> RetryingSession:
    """Build the shared session; see the module docstring for the retry contract.

    ``retry_after(response)`` returns the seconds the server asks to wait (None: use the
    exponential backoff); the default reads the ``Retry-After`` header. ``rng`` makes the
    jitter reproducible in tests.
    """
    session = RetryingSession(
        timeout=timeout,
        retry=retry,
        limiter=limiter,
        is_retryable=is_retryable,
        retry_after=retry_after,
        sleep=sleep,
        on_request=on_request,
        rng=rng,
    )
    session.verify = verify
    if proxies:
        session.proxies.update(proxies)
    return session
