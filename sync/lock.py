"""One lock per store, so two segsync processes never interleave their writes.

An advisory ``flock`` on ``<store>.lock`` is released by the kernel when the process dies,
so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sync.errors import StoreLocked

__all__ = ["store_lock"]


@contextmanager
def store_lock(
    store_path: Path,
    wait_seconds: float = 0.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the store's lock; wait up to ``wait_seconds`` for it, then raise StoreLocked."""
    lock_path = store_path.with_name(store_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = clock() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise StoreLocked(
                        f"another segsync run is using {store_path}; it was left alone "
                        "(use --wait SECONDS to queue behind it)"
                    ) from None
                sleep(min(0.5, max(0.0, deadline - clock())))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
