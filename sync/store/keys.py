"""The store's integer key for a CRM id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

__all__ = ["contact_key", "contact_keys"]


def contact_key(crm_id: str) -> int:
    """The store's integer key for a CRM id: a stable 63-bit hash.

    Integer keys make the joins and group-bys of evaluation fast; deriving them from the
    CRM id (instead of a sequence) means every store, run and machine agrees on them,
    which holdout assignment and events arriving before their contact both rely on.
    """
    digest = hashlib.blake2b(crm_id.encode(), digest_size=8, person=b"segsync-cid").digest()
    return int.from_bytes(digest, "big") >> 1


def contact_keys(crm_ids: Iterable[str]) -> np.ndarray:
    return np.fromiter((contact_key(i) for i in crm_ids), dtype=np.int64)
