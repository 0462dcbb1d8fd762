"""Client-side limiters with a fake clock: never more than allowed, never a real sleep."""

from __future__ import annotations

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ratelimit import RollingWindow, TokenBucket, route


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t - start < window))
    return best


@given(
    limit=st.integers(1, 12),
    gaps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=60),
)
@settings(max_examples=200, deadline=None)
def test_rolling_window_never_admits_more_than_the_limit(limit: int, gaps: list[float]) -> None:
    fake = FakeTime()
    window = RollingWindow(limit, 10.0, clock=fake.clock, sleep=fake.sleep)
    admitted: list[float] = []
    for gap in gaps:
        fake.now += gap
        window.acquire()
        admitted.append(fake.now)
    assert _max_in_window(admitted, 10.0) <= limit
    assert window.admitted == len(gaps)


def test_rolling_window_waits_for_the_oldest_to_expire() -> None:
    fake = FakeTime()
    window = RollingWindow(2, 10.0, clock=fake.clock, sleep=fake.sleep)
    assert window.acquire() == 0.0
    fake.now += 3
    window.acquire()
    waited = window.acquire()
    assert waited == 7.0
    assert fake.slept == [7.0]


def test_token_bucket_refills_evenly() -> None:
    fake = FakeTime()
    bucket = TokenBucket(4, 1.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(4):
        assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.25
    assert round(fake.now - 100.0, 6) == 0.25


def test_pause_holds_every_caller() -> None:
    fake = FakeTime()
    bucket = TokenBucket(100, 1.0, clock=fake.clock, sleep=fake.sleep)
    bucket.pause(5.0)
    assert bucket.acquire() == 5.0


def test_route_applies_matching_and_default_limiters() -> None:
    fake = FakeTime()
    search = RollingWindow(1, 1.0, clock=fake.clock, sleep=fake.sleep)
    budget = RollingWindow(100, 10.0, clock=fake.clock, sleep=fake.sleep)
    limiter = route([(lambda r: "search" in str(r.url), search)], default=[budget])
    for url in ("https://x/search", "https://x/search", "https://x/other"):
        limiter(requests.Request("POST", url).prepare())
    assert search.admitted == 2
    assert budget.admitted == 3
    assert fake.slept == [1.0]


def test_limiters_are_callable_for_make_session() -> None:
    fake = FakeTime()
    window = RollingWindow(1, 1.0, clock=fake.clock, sleep=fake.sleep)
    window(requests.Request("GET", "https://x").prepare())
    window(None)
    assert fake.slept == [1.0]
