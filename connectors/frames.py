"""The canonical record frames every connector yields, in one place.

Records travel from a connector to the store as pandas DataFrames, one frame per page,
so the store can insert a page in one vectorised statement. The columns below are the
engine's (underscore-prefixed, plus ``type``/``ts``/``amount`` on events); every other
column of a contact or company frame is a CRM property, text or missing (None).

* ``contacts``: ``_crm_id``, ``_modified_at``, ``_company_id``, ``_opted_out``, ``_lat``,
  ``_lon``, ``_kind`` (contact/lead), then one text column per requested property
  (``email`` always among them).
* ``companies``: ``_crm_id``, ``_modified_at``, ``_lat``, ``_lon``, then text properties.
* ``purchases`` and ``activities`` (both become *events*): ``_crm_id``, ``_contact_id``,
  ``type``, ``ts``, ``amount`` (purchases only), ``_modified_at``. One row per
  (record, contact) pair, so a deal with two contacts yields two rows.

Timestamps are naive UTC ``datetime64``. :func:`check_page` is what the store runs on
every page before writing it: a connector that forgets a column or hands over a
timestamp as text fails with one clear message instead of storing NULLs.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pandas.api import types as ptypes

from connectors.errors import CrmDataError

__all__ = [
    "COMPANY_COLUMNS",
    "CONTACT_COLUMNS",
    "EVENT_COLUMNS",
    "check_page",
    "columns",
    "empty_frame",
]

CONTACT_COLUMNS = ("_crm_id", "_modified_at", "_company_id", "_opted_out", "_lat", "_lon",
                   "_kind")
COMPANY_COLUMNS = ("_crm_id", "_modified_at", "_lat", "_lon")
EVENT_COLUMNS = ("_crm_id", "_contact_id", "type", "ts", "amount", "_modified_at")
#: Columns that must hold timestamps, per stream kind.
_TIMES = {"contacts": ("_modified_at",), "companies": ("_modified_at",),
          "events": ("ts", "_modified_at")}


def _kind(stream: str) -> str:
    if stream in ("contacts", "companies"):
        return stream
    if stream in ("purchases", "activities", "events"):
        return "events"
    raise ValueError(f"unknown stream {stream!r}")


def columns(stream: str) -> tuple[str, ...]:
    """The engine's columns of a stream's frames (properties come after them)."""
    return {"contacts": CONTACT_COLUMNS, "companies": COMPANY_COLUMNS,
            "events": EVENT_COLUMNS}[_kind(stream)]


def empty_frame(stream: str, properties: Iterable[str] = ()) -> pd.DataFrame:
    """A frame with no rows and the stream's columns (plus ``properties``, sorted)."""
    extra = sorted(properties) if _kind(stream) != "events" else []
    frame = pd.DataFrame(columns=[*columns(stream), *extra])
    for name in _TIMES[_kind(stream)]:
        frame[name] = pd.Series(dtype="datetime64[ns]")
    return frame


def check_page(stream: str, frame: pd.DataFrame) -> None:
    """Refuse a page that is not in the canonical shape, with one clear message."""
    kind = _kind(stream)
    missing = [c for c in columns(stream) if c not in frame.columns]
    if missing:
        raise CrmDataError(f"a {stream} page from the connector lacks the column(s) "
                           f"{', '.join(missing)}")
    if frame.empty:
        return
    if frame["_crm_id"].isna().any():
        raise CrmDataError(f"a {stream} page from the connector has a record without an id")
    for name in _TIMES[kind]:
        if not ptypes.is_datetime64_any_dtype(frame[name]) and frame[name].notna().any():
            raise CrmDataError(f"the {stream} column {name} holds {frame[name].dtype} values, "
                               "not timestamps")
