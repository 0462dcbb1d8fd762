"""The pool of spawned worker processes that runs the CRM reliability scenarios.

Each scenario starts its own emulator and store, so they are independent; running them in
processes (not threads) lets both cores work at once, since segsync, the emulators and
pandas/DuckDB glue all want the GIL. Workers get the suite's guards (no SEGSYNC_*
variables, loopback only) and the test secrets from ``crm_worlds.init_worker``. Every
test module registers its scenarios (``crm_worlds.register``); the first test asking for
``lab`` queues all of them, so the pool works while in-process tests run.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.reliability.crm_worlds import JOBS, Lab, init_worker, worker_env

WORKERS = 3  # two cores; the third covers the time scenarios spend waiting on sockets


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=context,
                               initializer=init_worker, initargs=(worker_env(),))
    started = Lab(pool)
    started.start(JOBS)
    try:
        yield started
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
