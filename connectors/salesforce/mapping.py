"""Pure translations between Salesforce payloads and segsync's canonical values.

No I/O here: REST JSON records and Bulk 2.0 CSV pages both become a DataFrame whose
columns are Salesforce field names (relationship fields dotted: ``Opportunity.Amount``),
and the functions below turn such frames into the canonical frames of
``connectors.base``. Collection results become per-record outcomes, and every Salesforce
error array becomes an exception through one table, :data:`ERROR_CODES`.

A JSON ``null`` stays ``None`` in every mapped column, numbers included (``_lat``,
``_lon``, ``amount`` hold Python floats or None in object columns). pandas would turn None
into NaN wherever it infers a dtype (``Series.map`` over text infers ``str``, whose
missing value is NaN; a float column cannot hold None), so every column is built with an
explicit ``object`` dtype instead.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from connectors.errors import (
    AuthError,
    ConnectorError,
    CrmDataError,
    QuotaExhausted,
    RetriableAPIError,
)
from connectors.frames import empty_frame

__all__ = [
    "ERROR_CODES",
    "LimitInfo",
    "Outcome",
    "UnreadableAnswer",
    "activity_kind",
    "collection_outcomes",
    "companies_frame",
    "contacts_frame",
    "csv_frame",
    "error_for",
    "events_frame",
    "flatten",
    "parse_limit_info",
    "records_frame",
    "to_text",
]

_SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")
_WHOLE_FLOAT = re.compile(r"^-?\d+\.0+$")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


# --- records --------------------------------------------------------------------------------


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A REST record without ``attributes``; parent records become dotted keys."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def records_frame(records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Flattened REST records as a frame with exactly ``columns`` (missing ones are None).

    A parent that is null arrives as ``"Account": null``, so its dotted children are absent;
    they come out as None here.
    """
    rows = [flatten(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    return frame.astype(object).where(frame.notna(), None)


def csv_frame(text: str, columns: Sequence[str]) -> pd.DataFrame:
    """A Bulk 2.0 CSV page (every cell text, empty = null) with exactly ``columns``."""
    if not text.strip():
        return pd.DataFrame(columns=list(columns), dtype=object)
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    lowered = {c.lower(): c for c in frame.columns}
    picked = pd.DataFrame(index=frame.index, dtype=object)
    for column in columns:
        source = lowered.get(column.lower())
        picked[column] = frame[source] if source is not None else None
    return picked.astype(object).where(picked.notna(), None)


def to_text(value: Any) -> str | None:
    """A property value as segsync stores it: text, ISO datetimes in naive UTC, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _SF_DATETIME.match(text):
        stamp = parse_timestamp(text)
        return stamp.replace(tzinfo=None).isoformat(sep=" ") if stamp else text
    if _WHOLE_FLOAT.match(text):
        return text.split(".", 1)[0]
    return text


def parse_timestamp(text: str | None) -> dt.datetime | None:
    """``2024-05-01T10:11:12.000+0000`` (REST) or ``...Z`` (Bulk CSV) -> aware UTC."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except ValueError as exc:
        raise CrmDataError(f"Salesforce sent {text!r} where a date and time was expected") from exc


def _timestamps(series: pd.Series, what: str) -> pd.Series:
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & series.notna()
    if bad.any():
        raise CrmDataError(
            f"Salesforce sent {series[bad].iloc[0]!r} as {what}, which is not a date and time"
        )
    return parsed.dt.tz_localize(None)


def _number(value: Any, bound: float | None) -> float | None:
    """A float, or None for null, text that is no number, NaN and values beyond ``bound``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or (bound is not None and abs(number) > bound):
        return None
    return number


def _numbers(series: pd.Series, bound: float | None = None) -> pd.Series:
    """Floats and None in an object column: a float64 column would turn null into NaN."""
    return pd.Series([_number(v, bound) for v in series], index=series.index, dtype=object)


def _flags(series: pd.Series) -> pd.Series:
    return series.map(lambda v: v is True or (isinstance(v, str) and v.lower() == "true"))


def _texts(series: pd.Series) -> pd.Series:
    """Text and None in an object column (``Series.map`` would infer ``str`` and make
    every None a NaN)."""
    return pd.Series([to_text(v) for v in series], index=series.index, dtype=object)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name and name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def contacts_frame(
    frame: pd.DataFrame,
    kind: Literal["contact", "lead"],
    properties: Mapping[str, str],
    *,
    lat: str,
    lon: str,
    company: str | None,
    opt_outs: Sequence[str],
) -> pd.DataFrame:
    """Contact or Lead rows (Salesforce columns) -> the canonical contacts frame.

    ``properties`` maps each requested rule field to its Salesforce column ("" when the
    object has no such field: the value is missing). The person counts as opted out when
    any of ``opt_outs`` (HasOptedOutOfEmail, DoNotCall) is true.
    """
    opted = pd.Series(False, index=frame.index)
    for name in opt_outs:
        opted |= _flags(_column(frame, name))
    out = pd.DataFrame({
        "_crm_id": frame["Id"].astype(object),
        "_modified_at": _timestamps(frame["SystemModstamp"], "SystemModstamp"),
        "_company_id": _column(frame, company or "").astype(object),
        "_opted_out": opted.astype(bool),
        "_lat": _numbers(_column(frame, lat), 90),
        "_lon": _numbers(_column(frame, lon), 180),
        "_kind": kind,
    }, index=frame.index)
    for name in sorted(properties):
        out[name] = _texts(_column(frame, properties[name]))
    return out.reset_index(drop=True)


def companies_frame(
    frame: pd.DataFrame, properties: Mapping[str, str], *, lat: str, lon: str
) -> pd.DataFrame:
    out = pd.DataFrame({
        "_crm_id": frame["Id"].astype(object),
        "_modified_at": _timestamps(frame["SystemModstamp"], "SystemModstamp"),
        "_lat": _numbers(_column(frame, lat), 90),
        "_lon": _numbers(_column(frame, lon), 180),
    }, index=frame.index)
    for name in sorted(properties):
        out[name] = _texts(_column(frame, properties[name]))
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class EventRow:
    """One (record, person) pair of the purchases or activities stream."""

    record_id: str
    person_id: str
    kind: str
    ts: dt.datetime
    amount: float | None
    modified_at: dt.datetime


def events_frame(rows: Sequence[EventRow]) -> pd.DataFrame:
    """The canonical events frame; ``amount`` is a float or None (object column)."""
    if not rows:
        return empty_frame("events")
    return pd.DataFrame({
        "_crm_id": pd.Series([r.record_id for r in rows], dtype=object),
        "_contact_id": pd.Series([r.person_id for r in rows], dtype=object),
        "type": pd.Series([r.kind for r in rows], dtype=object),
        "ts": pd.to_datetime([r.ts for r in rows]),
        "amount": pd.Series([r.amount for r in rows], dtype=object),
        "_modified_at": pd.to_datetime([r.modified_at for r in rows]),
    })


def naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def day_start(text: str | None) -> dt.datetime | None:
    """A Salesforce date (``2024-05-01``) or datetime as naive UTC, None when empty."""
    if not text:
        return None
    if len(text) == 10:
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise CrmDataError(f"Salesforce sent {text!r} where a date was expected") from exc
    stamp = parse_timestamp(text)
    return naive_utc(stamp) if stamp else None


#: Task subtypes and types -> segsync activity types; Events are meetings.
_TASK_SUBTYPES = {"email": "email_sent", "listemail": "email_sent", "call": "call"}
_TASK_TYPES = {"call": "call", "email": "email_sent", "meeting": "meeting"}


def activity_kind(sobject: str, subtype: str | None = None, kind: str | None = None) -> str:
    """The canonical activity type of a Task, Event or EmailMessage (see
    ``connectors.base.ACTIVITY_TYPES``).

    An EmailMessage is read only when ``Incoming`` is true, so it is always
    ``email_received``; the Task Salesforce links to it (``EmailMessage.ActivityId``) is
    the same email and is left out by the stream reader, so only other Email Tasks are
    ``email_sent``.
    """
    if sobject == "EmailMessage":
        return "email_received"
    if sobject == "Event":
        return "meeting"
    by_subtype = _TASK_SUBTYPES.get((subtype or "").lower())
    if by_subtype:
        return by_subtype
    return _TASK_TYPES.get((kind or "").lower(), "task")


# --- writes ---------------------------------------------------------------------------------

#: Per-record codes meaning "the person is gone" (deleted, merged away or converted).
PERSON_GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY",
                         "CANNOT_UPDATE_CONVERTED_LEAD"})
PERSON_FIELDS = frozenset({"ContactId", "LeadId", "Id"})


@dataclass(frozen=True)
class Outcome:
    """One record's result in an sObject Collections response."""

    ok: bool
    record_id: str | None = None
    code: str = ""
    message: str = ""
    fields: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}".strip(": ") if not self.ok else ""


class UnreadableAnswer(CrmDataError):
    """An answer arrived but cannot be read: invalid or truncated JSON, an HTML page with a
    2xx status, or a collections result that does not hold one item per record sent.

    For a write this proves nothing either way -- the request may have been committed
    before the answer was cut -- so the writer reports the call's records as unknown
    instead of raising.
    """


def collection_outcomes(sent: int, results: object) -> list[Outcome]:
    """Per-record outcomes of a collections call, in request order.

    A well-formed request gets one result per record; anything else (a count mismatch, an
    item that is not an object) is :class:`UnreadableAnswer`, because per-record
    bookkeeping would be a guess. Only an item whose ``success`` is literally ``true``
    counts as done.
    """
    if not isinstance(results, list) or len(results) != sent:
        got = f"{len(results)} results" if isinstance(results, list) else type(results).__name__
        raise UnreadableAnswer(
            f"Salesforce answered a collections call for {sent} records with {got}"
        )
    outcomes = []
    for item in results:
        if not isinstance(item, Mapping):
            raise UnreadableAnswer(f"unexpected collections result item {item!r}")
        record_id = item.get("id")
        if item.get("success") is True:
            outcomes.append(Outcome(True, record_id))
            continue
        if item.get("success") is not False:
            raise UnreadableAnswer(f"a collections result item without success: {item!r}")
        errors = item.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], Mapping) else {}
        outcomes.append(Outcome(
            False,
            record_id,
            str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN"),
            str(first.get("message") or ""),
            tuple(str(f) for f in first.get("fields") or ()),
        ))
    return outcomes


# --- errors ---------------------------------------------------------------------------------

_INSTRUCTIONS = {
    "INVALID_SESSION_ID": "the session expired again right after logging in; check the "
                          "connected app's session policies",
    "INSUFFICIENT_ACCESS_OR_READONLY": "the API user lacks a permission: Campaigns need the "
                                       "Marketing User checkbox on the user record plus "
                                       "Campaign/CampaignMember create, edit and delete",
    "API_DISABLED_FOR_ORG": "the org's edition or the user's profile has no API access "
                            "(needs the \"API Enabled\" permission)",
    "REQUEST_LIMIT_EXCEEDED": "the org's daily API allocation is used up; segsync stops and "
                              "the next run resumes where this one stopped",
    "INVALID_FIELD": "a configured field is unknown or hidden by field-level security; check "
                     "[crm] field mappings and run `segsync check`",
    "INVALID_TYPE": "an object is unknown or not accessible to the API user",
}

#: Salesforce ``errorCode`` -> the exception the run raises. Unknown codes fall back on status.
ERROR_CODES: Mapping[str, type[ConnectorError]] = {
    "INVALID_SESSION_ID": AuthError,
    "INVALID_AUTH_HEADER": AuthError,
    "INSUFFICIENT_ACCESS": AuthError,
    "INSUFFICIENT_ACCESS_OR_READONLY": AuthError,
    "API_DISABLED_FOR_ORG": AuthError,
    "API_CURRENTLY_DISABLED": AuthError,
    "REQUEST_LIMIT_EXCEEDED": QuotaExhausted,
    "SERVER_UNAVAILABLE": RetriableAPIError,
    "UNKNOWN_EXCEPTION": RetriableAPIError,
    "UNABLE_TO_LOCK_ROW": RetriableAPIError,
    "QUERY_TIMEOUT": RetriableAPIError,
    "INVALID_QUERY_LOCATOR": RetriableAPIError,
}


def first_error(content: object) -> tuple[str, str]:
    """(errorCode, message) of a Salesforce error array, or ("", text) for anything else."""
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        return str(first.get("errorCode") or first.get("statusCode") or ""), str(
            first.get("message") or "")
    if isinstance(content, Mapping):
        return str(content.get("errorCode") or content.get("error") or ""), str(
            content.get("message") or content.get("error_description") or "")
    return "", str(content or "")


def is_html(text: str) -> bool:
    return text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))


def error_for(status: int, content: object, where: str) -> ConnectorError:
    """The one map from a failed Salesforce response to a segsync exception."""
    code, message = first_error(content)
    if not code and isinstance(content, str | bytes):
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        if is_html(text):
            if status >= 500:
                return RetriableAPIError(f"{where}: HTTP {status} with an HTML error page")
            return CrmDataError(f"{where}: HTTP {status}: expected JSON, got an HTML page")
    if code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower():
        kind: type[ConnectorError] = RetriableAPIError
    else:
        kind = ERROR_CODES.get(code) or _by_status(status)
    detail = f"{code}: {message}" if code else message[:300]
    hint = _INSTRUCTIONS.get(code, "")
    text = f"{where}: HTTP {status} {detail}".rstrip()
    return kind(f"{text} ({hint})" if hint else text)


def _by_status(status: int) -> type[ConnectorError]:
    if status == 401:
        return AuthError
    if status == 403:
        return AuthError
    if status >= 500:
        return RetriableAPIError
    return ConnectorError


@dataclass(frozen=True)
class LimitInfo:
    """The org's daily API use as the last ``Sforce-Limit-Info`` header reported it."""

    used: int
    max: int

    @property
    def remaining(self) -> int:
        return max(0, self.max - self.used)


def parse_limit_info(header: str | None) -> LimitInfo | None:
    """``api-usage=18/15000[; per-app-api-usage=...]`` -> LimitInfo(18, 15000)."""
    found = _LIMIT_INFO.search(header or "")
    return LimitInfo(int(found.group(1)), int(found.group(2))) if found else None
