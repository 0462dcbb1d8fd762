"""Pacing: how close a long HubSpot sync runs to the rate limit, and how many 429s it meets.

    PYTHONPATH=. .venv/bin/python benchmarks/pacing.py [--contacts 80000] [--scale 0.1]
        [--search-per-second 5] [--out benchmarks/results/pacing.json]

A first sync of ``--contacts`` contacts (the same portal as benchmarks/api_efficiency.py:
companies, won deals, calls) with ``write_mode = "both"`` -- four lists *and* the
multi-checkbox property, so after the search-heavy pull comes a long run of property
batch updates (100 contacts a call) that only the 10-second budget holds back. At the
Starter limit (100 requests / 10 s, search 5 / s) it takes a few minutes of HubSpot time.

Time is scaled so it runs in seconds: the emulator's windows shrink by ``--scale``
(``RateLimitConfig(time_scale=...)``: a 10 s window lasts 1 s at 0.1) and the connector
gets the same scaled clock (``monotonic = time.monotonic() / scale``, ``sleep(s)`` sleeps
``s * scale``), its own limiters being built on the injected ``monotonic``/``sleep``. All
figures below are in HubSpot seconds (real seconds / scale).

Measured from the emulator's request log:

* the achieved rate in each phase -- searches per second during the pull (bound by the
  search limit) and requests per second during the writes (bound by the 10 s budget) --
  as a share of that limit;
* the whole sync against the *limit-bound minimum*: the time the same sequence of
  requests needs if each is sent the instant both rolling windows allow it (no network,
  no CPU). ``share = minimum / achieved``;
* 429 answers (target: under 1% of requests).

The connector's windows are 5% longer than HubSpot's (``WINDOW_MARGIN``, a guard against
clock skew), so ~95% is the ceiling by design. Salesforce is not measured: it has no
per-second limit to pace against (a daily allocation, counted by
benchmarks/api_efficiency.py, and a cap on concurrent long requests, which a sequential
client never reaches); its ``max_requests_per_second`` is only a client-side courtesy.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.api_efficiency import HS_SEGMENTS, HS_T0, HS_TOKEN, hubspot_seed, machine  # noqa: E402
from sync.config import parse_config  # noqa: E402
from sync.engine import run_sync  # noqa: E402
from sync.store import Store  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "pacing.json"
BURST, WINDOW = 100, 10.0  # Starter: 100 requests per rolling 10 s
SEARCH, SEARCH_WINDOW = 5, 1.0  # search: 5 per second


def limit_bound_seconds(searches: Sequence[bool], burst: int = BURST, window: float = WINDOW,
                        search: int = SEARCH, search_window: float = SEARCH_WINDOW) -> float:
    """Time from the first to the last request when each goes out as soon as both rolling
    windows (``burst`` per ``window`` for all, ``search`` per ``search_window`` for
    searches) let it, in order, with no other delay."""
    sent: list[float] = []
    searched: list[float] = []
    t = 0.0
    for is_search in searches:
        if len(sent) >= burst:
            t = max(t, sent[-burst] + window)
        if is_search and len(searched) >= search:
            t = max(t, searched[-search] + search_window)
        sent.append(t)
        if is_search:
            searched.append(t)
    return sent[-1] - sent[0] if sent else 0.0


def _phase(name: str, times: list[float], searches: list[bool], limit: str,
           rate_limit: float, configured: float, count: int) -> dict[str, Any]:
    """Rate of ``count`` requests (searches only in the pull) over the phase's span."""
    seconds = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (count - 1) / seconds if seconds > 0 else 0.0  # intervals between arrivals
    return {"phase": name, "requests": len(times), "searches": sum(searches),
            "seconds": round(seconds, 1), "limit": limit, "rate": round(rate, 3),
            "limit_rate": rate_limit, "share": round(rate / rate_limit, 4),
            "configured_rate": configured, "share_of_configured": round(rate / configured, 4)}


def run(contacts: int, scale: float, search_per_second: int) -> dict[str, Any]:
    from connectors.hubspot import HubSpotConnector
    from tests.emulators.hubspot import Clock, HubSpotEmulator, RateLimitConfig

    os.environ["HUBSPOT_TOKEN"] = HS_TOKEN
    limits = RateLimitConfig(burst_limit=BURST, burst_window_s=WINDOW, search_limit=SEARCH,
                             search_window_s=SEARCH_WINDOW, daily_limit=None, time_scale=scale)
    with HubSpotEmulator(token=HS_TOKEN, clock=Clock(HS_T0 - dt.timedelta(days=1)),
                         rate_limits=limits) as hs, \
            tempfile.TemporaryDirectory(prefix="segsync-pacing-") as tmp:
        began = time.perf_counter()
        _, sizes = hubspot_seed(hs, contacts)
        print(f"[pacing] seeded {contacts:,} contacts in {time.perf_counter() - began:.1f} s",
              flush=True)
        hs.clock.set(HS_T0)
        text = (f'[crm]\ntype = "hubspot"\nbase_url = "{hs.base_url}"\ntier = "starter"\n'
                f'search_per_second = {search_per_second}\nwrite_mode = "both"\n'
                f'[store]\npath = "store.duckdb"\n[sync]\nmax_removal_fraction = 1.0\n'
                f'{HS_SEGMENTS}')
        config = parse_config(tomllib.loads(text), Path(tmp) / "segsync.toml")
        connector = HubSpotConnector(
            config.crm,  # type: ignore[arg-type]
            now=hs.clock.now, rng=random.Random(0),
            monotonic=lambda: time.monotonic() / scale,
            sleep=lambda seconds: time.sleep(seconds * scale),
        )
        hs.reset_requests()
        began = time.perf_counter()
        with Store.open(config.store.path) as store:
            outcome = run_sync(config, connector, store,
                               clock=lambda: hs.clock.now().replace(tzinfo=None))
        wall = time.perf_counter() - began
        log = [r for r in hs.requests if not r.path.startswith("/oauth/")]
        stats = hs.rate_stats
    t0 = log[0].t
    times = [(r.t - t0) / scale for r in log]
    is_search = [r.path.endswith("/search") for r in log]
    last_search = max(i for i, s in enumerate(is_search) if s)
    writes_from = next(i for i, r in enumerate(log) if r.is_write)
    pull = slice(0, last_search + 1)
    write = slice(writes_from, len(log))
    total = times[-1] - times[0]
    minimum = limit_bound_seconds(is_search)
    configured = limit_bound_seconds(is_search, search=search_per_second)
    rejected = sum(1 for r in log if r.status == 429)
    phases = [
        _phase("pull: searches / s", times[pull], is_search[pull], "search 5 / s",
               float(SEARCH) / SEARCH_WINDOW, float(search_per_second), sum(is_search[pull])),
        _phase("writes: requests / s", times[write], is_search[write], "100 / 10 s",
               BURST / WINDOW, BURST / WINDOW, len(times[write])),
    ]
    result = {
        "crm": "hubspot", "contacts": contacts, "objects": sizes, "tier": "starter",
        "limits": {"requests_per_10s": BURST, "search_per_second": SEARCH},
        "connector": {"requests_per_10s": config.crm.requests_per_10s,  # type: ignore[attr-defined]
                      "search_per_second": search_per_second,
                      "window_margin": 1.05},
        "time_scale": scale, "status": outcome.status, "wall_s": round(wall, 1),
        "requests": len(log), "searches": sum(is_search),
        "writes": sum(1 for r in log if r.is_write),
        "hubspot_seconds": round(total, 1),
        "limit_bound_seconds": round(minimum, 1),
        "share_of_limit": round(minimum / total, 4) if total else None,
        "limit_bound_seconds_configured": round(configured, 1),
        "share_of_configured_limit": round(configured / total, 4) if total else None,
        "rate": round((len(log) - 1) / total, 3) if total else None,
        "http_429": rejected, "http_429_share": round(rejected / len(log), 5),
        "emulator_limiter_429s": stats.limiter_429s,
        "max_requests_in_any_window": stats.max_requests_in_window,
        "max_searches_in_any_window": stats.max_search_requests_in_window,
        "idle_between_pull_and_writes_s": round(times[writes_from] - times[last_search], 1)
        if writes_from > last_search else 0.0,
        "phases": phases,
    }
    return result


def table(r: dict[str, Any]) -> str:
    lines = [
        f"HubSpot pacing, Starter limit (100 / 10 s, search 5 / s), {r['contacts']:,} contacts, "
        f"write_mode both, connector search_per_second = {r['connector']['search_per_second']}, "
        f"time scale {r['time_scale']} ({r['wall_s']} s real)",
        f"{'':<24} {'requests':>8} {'seconds':>8} {'rate/s':>7} {'limit/s':>7} {'share':>7}"
        f" {'of configured':>14}",
    ]
    for p in r["phases"]:
        lines.append(f"{p['phase']:<24} {p['requests']:>8,} {p['seconds']:>8.1f} "
                     f"{p['rate']:>7.2f} {p['limit_rate']:>7.2f} {p['share']:>7.1%} "
                     f"{p['share_of_configured']:>14.1%}")
    lines.append(f"{'whole sync':<24} {r['requests']:>8,} {r['hubspot_seconds']:>8.1f} "
                 f"{r['rate']:>7.2f} {'':>7} {r['share_of_limit']:>7.1%} "
                 f"{r['share_of_configured_limit']:>14.1%}  (limit-bound minimum "
                 f"{r['limit_bound_seconds']} s; {r['limit_bound_seconds_configured']} s at "
                 f"the configured limits)")
    lines.append(f"429 answers: {r['http_429']} of {r['requests']:,} requests "
                 f"({r['http_429_share']:.2%}); most requests in any 10 s window: "
                 f"{r['max_requests_in_any_window']}, searches in any 1 s: "
                 f"{r['max_searches_in_any_window']}; engine time between pull and writes: "
                 f"{r['idle_between_pull_and_writes_s']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=80_000)
    parser.add_argument("--scale", type=float, default=0.1,
                        help="real seconds per HubSpot second (0.1: a 10 s window lasts 1 s)")
    parser.add_argument("--search-per-second", type=int, nargs="+", default=[5],
                        help="the connector's [crm].search_per_second (HubSpot allows 5; "
                             "segsync's default is 4); one run per value")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results = []
    for search in args.search_per_second:
        result = run(args.contacts, args.scale, search)
        print("\n" + table(result), flush=True)
        results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
