"""Client-side rate limiters, CRM-neutral, with an injected clock and sleep.

Two shapes, because CRMs publish their limits in two ways:

* :class:`TokenBucket` -- ``rate`` tokens refill evenly over ``per_seconds`` and the bucket
  holds at most ``burst`` (default ``rate``). Good for "N per second" style limits.
* :class:`RollingWindow` -- at most ``max_requests`` in *any* window of ``window_seconds``.
  This is the exact model of HubSpot's ``TEN_SECONDLY_ROLLING`` and ``SECONDLY`` policies;
  a token bucket with the same numbers can let ~2x through one rolling window.

Both are thread-safe, block (through the injected ``sleep``) until a slot is free, and can
be used directly as the ``limiter`` of :func:`connectors.http.make_session` because calling
one with a request acquires one slot. ``pause(seconds)`` makes every caller wait at least
that long (used after a server said "slow down"). :func:`route` combines limiters so that,
say, search requests pass a 4/s limiter *and* the shared 10-second budget.

``clock`` defaults to ``time.monotonic`` and ``sleep`` to ``time.sleep``; tests pass a fake
pair (a clock that only moves when slept) so nothing waits on real time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import requests

__all__ = [
    "Limiter",
    "RollingWindow",
    "TokenBucket",
    "route",
]

Clock = Callable[[], float]
Sleep = Callable[[float], None]
_MIN_SLEEP = 1e-6


class Limiter(Protocol):
    """Anything that blocks until one more request may be sent."""

    def acquire(self) -> float:
        """Block until a slot is free; return the seconds waited."""
        ...

    def __call__(self, request: requests.PreparedRequest | None = None) -> None: ...


class _Base:
    def __init__(self, clock: Clock | None, sleep: Sleep | None) -> None:
        self._clock: Clock = clock or time.monotonic
        self._sleep: Sleep = sleep or time.sleep
        self._lock = threading.Lock()
        self._paused_until = float("-inf")
        #: Requests admitted and total seconds spent waiting (for reports and tests).
        self.admitted = 0
        self.waited = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every caller back for at least ``seconds`` from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def _delay(self, now: float) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def _take(self, now: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def acquire(self) -> float:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = max(self._paused_until - now, self._delay(now))
                if delay <= 0:
                    self._take(now)
                    self.admitted += 1
                    self.waited += waited
                    return waited
            delay = max(delay, _MIN_SLEEP)  # never a no-op sleep that spins forever
            self._sleep(delay)
            waited += delay

    def __call__(self, request: requests.PreparedRequest | None = None) -> None:
        self.acquire()


class TokenBucket(_Base):
    """``rate`` requests per ``per_seconds``, refilled continuously, at most ``burst`` at once."""

    def __init__(
        self,
        rate: int,
        per_seconds: float,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if rate < 1 or per_seconds <= 0:
            raise ValueError(f"rate must be >= 1 and per_seconds > 0 (got {rate}/{per_seconds})")
        super().__init__(clock, sleep)
        self.rate = rate
        self.per_seconds = per_seconds
        self.capacity = float(burst if burst is not None else rate)
        self._tokens = self.capacity
        self._stamp = self._clock()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate / self.per_seconds)
        self._stamp = now

    def _delay(self, now: float) -> float:
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) * self.per_seconds / self.rate

    def _take(self, now: float) -> None:
        self._tokens -= 1.0


class RollingWindow(_Base):
    """At most ``max_requests`` within any ``window_seconds`` (a sliding log of send times)."""

    def __init__(
        self,
        max_requests: int,
        window_seconds: float,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if max_requests < 1 or window_seconds <= 0:
            raise ValueError(
                f"max_requests must be >= 1 and window_seconds > 0 "
                f"(got {max_requests}/{window_seconds})"
            )
        super().__init__(clock, sleep)
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self._sent: deque[float] = deque()

    def _delay(self, now: float) -> float:
        # One expression (age = now - sent) decides both expiry and the wait, so float
        # rounding can never admit a request a hair inside the window.
        while self._sent and now - self._sent[0] >= self.window_seconds:
            self._sent.popleft()
        if len(self._sent) < self.max_requests:
            return 0.0
        return self.window_seconds - (now - self._sent[0])

    def _take(self, now: float) -> None:
        self._sent.append(now)

    def saturated(self) -> bool:
        """Whether the window is full right now: the next request will have to wait."""
        with self._lock:
            return self._delay(self._clock()) > 0


def route(
    rules: Sequence[tuple[Callable[[requests.PreparedRequest], bool], Limiter]],
    default: Sequence[Limiter] = (),
) -> Callable[[requests.PreparedRequest], None]:
    """A session limiter: every rule whose predicate matches acquires, then ``default``.

    ``route([(is_search, search_limiter)], default=[ten_second_budget])`` sends a search
    request through both limiters and everything else through the budget only.
    """

    def limiter(request: requests.PreparedRequest) -> None:
        for matches, chosen in rules:
            if matches(request):
                chosen.acquire()
        for chosen in default:
            chosen.acquire()

    return limiter
