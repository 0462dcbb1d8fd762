"""The CSV connector: a folder of CRM exports in, membership files out.

It is the embedded default (the bundled sample data uses it) and the smallest complete
implementation of :class:`connectors.base.Connector`. Input files, each with an ``id``
and a ``modified_at`` column (ISO 8601):

* ``contacts.csv`` (required): ``company_id``, ``email_opt_out``, ``latitude``,
  ``longitude`` and any property columns the rules use;
* ``companies.csv``: ``latitude``, ``longitude`` and property columns;
* ``purchases.csv``: ``contact_id``, ``amount``, ``purchased_at`` and attribute columns
  (e.g. ``category``) that rules and traits filter on;
* ``activities.csv``: ``contact_id``, ``type``, ``occurred_at``.

Output goes to ``output_dir`` (never over the exports): ``lists/<segment key>.csv`` holds
each target's members, ``lists.csv`` indexes them by name, and ``finish`` rebuilds
``memberships.csv`` (one row per contact and segment) and ``contacts_with_segments.csv``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from connectors.base import (
    ACTIVITY_TYPES,
    Batch,
    BatchResult,
    Capabilities,
    MembershipRead,
    Page,
    PullRequest,
    TargetRef,
    TargetSpec,
)
from connectors.errors import ConnectorError, CrmDataError, TargetConflict
from segment_rules.tables import TableReader

__all__ = ["SETTINGS_KEYS", "CsvConnector", "CsvSettings", "parse_settings"]

PAGE_ROWS = 10_000
#: Records one membership read covers: all of them (the list files are local).
READ_BATCH = 1_000_000
#: CRMs cap text properties at about this length (HubSpot: 65,536); longer is broken data.
MAX_VALUE_LENGTH = 65_536
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_EVENT_FILES = {
    "purchases": ("purchases.csv", "purchased_at"),
    "activities": ("activities.csv", "occurred_at"),
}
_INDEX_COLUMNS = ["target_id", "name"]


SETTINGS_KEYS = ("path", "output_dir", "batch_size")
MAX_BATCH = 100_000


@dataclass(frozen=True)
class CsvSettings:
    """``[crm]`` settings for ``type = "csv"``."""

    path: Path
    output_dir: Path
    batch_size: int = 1000

    def activity_sources(self) -> dict[str, str]:
        """Every activity type is an event row of activities.csv / purchases.csv."""
        return dict.fromkeys(ACTIVITY_TYPES, "events")


def parse_settings(reader: TableReader, table: dict[str, object], base: Path) -> CsvSettings | None:
    """Read the csv keys of ``[crm]``; paths are relative to the config file's folder."""
    before = len(reader.problems)
    folder = reader.string(table, "path", "crm", default="exports") or "exports"
    output = reader.string(table, "output_dir", "crm", default=None)
    batch = reader.integer(table, "batch_size", "crm", default=1000, minimum=1,
                           maximum=MAX_BATCH) or 1000
    if len(reader.problems) > before:
        return None
    path = base / folder
    out = base / output if output else path / "segsync-out"
    if out.resolve() == path.resolve():
        reader.problem("crm.output_dir", "must not be the export folder itself",
                       "segsync never writes over the input exports")
        return None
    return CsvSettings(path=path, output_dir=out, batch_size=batch)


def _fail(file: Path, rows: pd.Series, message: str) -> CrmDataError:
    """An error naming the file and the first offending lines (header is line 1)."""
    lines = [str(int(i) + 2) for i in rows.index[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return CrmDataError(f"{file}: {message} on line {', '.join(lines)}{more}")


def _timestamps(file: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    raw = frame[column]
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & raw.notna()
    if bad.any():
        raise _fail(file, raw[bad], f"'{column}' is not an ISO 8601 date")
    return parsed.dt.tz_localize(None)


def _numbers(file: Path, frame: pd.DataFrame, column: str, bound: float | None = None) -> pd.Series:
    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    raw = frame[column]
    parsed = pd.to_numeric(raw, errors="coerce")
    bad = parsed.isna() & raw.notna()
    if bound is not None:
        bad |= parsed.abs() > bound
    if bad.any():
        raise _fail(file, raw[bad], f"'{column}' is not a valid number")
    return parsed.astype("float64")


def _flags(file: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(False, index=frame.index)
    lowered = frame[column].fillna("").str.strip().str.lower()
    bad = ~lowered.isin(_TRUE | _FALSE)
    if bad.any():
        raise _fail(file, frame.loc[bad, column], f"'{column}' is not true/false")
    return lowered.isin(_TRUE)


def _read_csv(file: Path, required: Iterable[str]) -> pd.DataFrame:
    """Read an export as text, with empty cells as missing, and check its key columns."""
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""],
                            encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CrmDataError(f"{file}: not a readable CSV file ({exc})") from exc
    frame = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:
        lengths = frame[column].str.len()
        if (lengths > MAX_VALUE_LENGTH).any():
            raise _fail(file, frame[column][lengths > MAX_VALUE_LENGTH],
                        f"'{column}' holds a value longer than {MAX_VALUE_LENGTH} characters")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CrmDataError(f"{file}: missing column(s) {', '.join(missing)}")
    ids = frame["id"]
    if ids.isna().any():
        raise _fail(file, ids[ids.isna()], "empty 'id'")
    duplicated = ids.duplicated()
    if duplicated.any():
        raise _fail(file, ids[duplicated], "duplicate 'id'")
    return frame


def _atomic_write(path: Path, frame: pd.DataFrame) -> None:
    """Write a CSV so readers never see half a file, even if segsync is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            frame.to_csv(out, index=False, lineterminator="\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class CsvConnector:
    """Reads CRM export files and writes memberships as CSV files."""

    def __init__(self, settings: CsvSettings) -> None:
        self.settings = settings
        self._writes = 0

    def capabilities(self) -> Capabilities:
        """List files; read back (to settle an interrupted run) and deleted by prune."""
        return Capabilities(max_batch=self.settings.batch_size, read_memberships=True,
                            max_read_batch=READ_BATCH, delete_targets=True)

    def api_usage(self) -> dict[str, int]:
        return {"list file writes": self._writes} if self._writes else {}

    # -- reading ---------------------------------------------------------------------

    def check(self) -> list[str]:
        contacts = self.settings.path / "contacts.csv"
        if not contacts.is_file():
            raise ConnectorError(f"{contacts} does not exist (set [crm].path to the export folder)")
        if self.settings.output_dir.resolve() == self.settings.path.resolve():
            raise ConnectorError("[crm].output_dir must differ from [crm].path")
        return [f"export folder {self.settings.path} has contacts.csv",
                f"memberships will be written to {self.settings.output_dir}"]

    def pull(self, request: PullRequest) -> Iterator[Page]:
        frame = self._events(request) if request.stream in _EVENT_FILES else self._objects(request)
        since = pd.Timestamp(request.since) if request.since else None
        present = frozenset(frame["_crm_id"])
        changed = frame if since is None else frame[frame["_modified_at"] >= since]
        changed = changed.sort_values(["_modified_at", "_crm_id"], kind="stable")
        watermark = request.since
        starts = range(0, len(changed), PAGE_ROWS)
        for start in starts:
            chunk = changed.iloc[start : start + PAGE_ROWS].reset_index(drop=True)
            watermark = chunk["_modified_at"].max().isoformat()
            last = start + PAGE_ROWS >= len(changed)
            yield Page(chunk, watermark, present_ids=present if last else None)
        if not starts:
            yield Page(changed.reset_index(drop=True), watermark, present_ids=present)

    def _objects(self, request: PullRequest) -> pd.DataFrame:
        name = "contacts.csv" if request.stream == "contacts" else "companies.csv"
        file = self.settings.path / name
        fields = set(request.fields)
        if request.stream == "contacts":
            fields.add("email")
        if not file.exists():
            if request.stream == "contacts":
                raise ConnectorError(f"{file} does not exist")
            return pd.DataFrame(columns=["_crm_id", "_modified_at", "_lat", "_lon", *sorted(fields)])
        frame = _read_csv(file, ["id", "modified_at"])
        unknown = sorted(f for f in fields if f not in frame.columns)
        if unknown:
            raise CrmDataError(
                f"{file}: the rules use {', '.join(unknown)} but the file has no such column"
            )
        out = pd.DataFrame({
            "_crm_id": frame["id"],
            "_modified_at": _timestamps(file, frame, "modified_at"),
            "_lat": _numbers(file, frame, "latitude", 90),
            "_lon": _numbers(file, frame, "longitude", 180),
        })
        if request.stream == "contacts":
            out["_company_id"] = frame.get("company_id", None)
            out["_opted_out"] = _flags(file, frame, "email_opt_out")
            out["_kind"] = "contact"
        for column in sorted(fields):
            out[column] = frame[column]
        return out

    def _events(self, request: PullRequest) -> pd.DataFrame:
        file_name, time_column = _EVENT_FILES[request.stream]
        file = self.settings.path / file_name
        columns = ["_crm_id", "_contact_id", "type", "ts", "amount", "_modified_at"]
        if not file.exists():
            return pd.DataFrame(columns=columns)
        is_purchase = request.stream == "purchases"
        needed = ["id", "contact_id", time_column, "modified_at"]
        needed.append("amount" if is_purchase else "type")
        frame = _read_csv(file, needed)
        unknown = sorted(f for f in request.fields if f not in frame.columns)
        if unknown:
            raise CrmDataError(
                f"{file}: the rules use {', '.join(unknown)} but the file has no such column"
            )
        if frame["contact_id"].isna().any():
            raise _fail(file, frame["contact_id"][frame["contact_id"].isna()], "empty 'contact_id'")
        kinds = (
            pd.Series("purchase", index=frame.index)
            if is_purchase else frame["type"].fillna("").str.strip().str.lower()
        )
        if (kinds == "").any():
            raise _fail(file, kinds[kinds == ""], "empty 'type'")
        out = pd.DataFrame({
            "_crm_id": frame["id"],
            "_contact_id": frame["contact_id"],
            "type": kinds,
            "ts": _timestamps(file, frame, time_column),
            "amount": _numbers(file, frame, "amount") if is_purchase else float("nan"),
            "_modified_at": _timestamps(file, frame, "modified_at"),
        })
        for column in sorted(request.fields):  # purchase attributes, e.g. category
            out[column] = frame[column].where(frame[column].notna(), None)
        if out["ts"].isna().any():
            raise _fail(file, out["ts"][out["ts"].isna()], f"empty '{time_column}'")
        if request.events_since is not None:
            out = out[out["ts"] >= pd.Timestamp(request.events_since)]
        return out

    # -- writing ---------------------------------------------------------------------

    @property
    def _lists(self) -> Path:
        return self.settings.output_dir / "lists"

    def _list_file(self, target_id: str) -> Path:
        return self._lists / f"{target_id}.csv"

    def _index(self) -> pd.DataFrame:
        file = self.settings.output_dir / "lists.csv"
        if not file.exists():
            return pd.DataFrame(columns=_INDEX_COLUMNS)
        return pd.read_csv(file, dtype=str, keep_default_na=False)

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        index = self._index()
        file = self._list_file(spec.key)
        if current is None and file.exists() and not adopt:
            raise TargetConflict(
                f"{file} exists but segsync has no record of creating it; move it away "
                "or point [crm].output_dir at a new folder"
            )
        if current is None and not file.exists():
            _atomic_write(file, pd.DataFrame(columns=["contact_id"]))
        ref = TargetRef(spec.key, spec.name)
        listed = index[index["target_id"] == spec.key]
        if listed.empty or listed["name"].iloc[0] != spec.name:
            entry = pd.DataFrame([[spec.key, spec.name]], columns=_INDEX_COLUMNS)
            others = index[index["target_id"] != spec.key]
            _atomic_write(self.settings.output_dir / "lists.csv",
                          pd.concat([others, entry]).sort_values("target_id"))
        return ref

    def members(self, target: TargetRef) -> Iterator[str]:
        file = self._list_file(target.target_id)
        if file.exists():
            yield from pd.read_csv(file, dtype=str, keep_default_na=False)["contact_id"]

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        """Settle unknown memberships (a run killed between writing a list file and
        recording it) from the list files themselves: one read per file."""
        wanted = set(record_ids)
        present = frozenset((t.target_id, i) for t in targets
                            for i in self.members(t) if i in wanted)
        return MembershipRead(present, frozenset(wanted), api_calls=0)

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        current = set(self.members(target))
        updated = (current | set(batch.adds)) - set(batch.removes)
        _atomic_write(self._list_file(target.target_id),
                      pd.DataFrame({"contact_id": sorted(updated)}))
        self._writes += 1
        return BatchResult(api_calls=1)

    def delete_target(self, target: TargetRef) -> None:
        """Delete a list file and its index entry (``segsync prune``); a missing one is fine.

        ``finish`` rebuilds the combined files afterwards; once no list is left they are
        removed, since they would only describe deleted lists.
        """
        index = self._index()
        remaining = index[index["target_id"] != target.target_id]
        out = self.settings.output_dir
        if len(remaining) != len(index):
            _atomic_write(out / "lists.csv", remaining)
        self._list_file(target.target_id).unlink(missing_ok=True)
        self._writes += 1
        if remaining.empty:
            for name in ("memberships.csv", "contacts_with_segments.csv"):
                (out / name).unlink(missing_ok=True)

    def finish(self) -> None:
        """Rebuild the combined files when any list changed since they were written."""
        out = self.settings.output_dir
        index = self._index()
        if index.empty:
            return
        sources = [out / "lists.csv", *(self._list_file(t) for t in index["target_id"])]
        combined = [out / "memberships.csv", out / "contacts_with_segments.csv"]
        newest = max(s.stat().st_mtime_ns for s in sources if s.exists())
        if all(c.exists() and c.stat().st_mtime_ns >= newest for c in combined):
            return
        rows = [
            pd.DataFrame({"segment_key": key, "segment_name": name,
                          "contact_id": list(self.members(TargetRef(key, name)))})
            for key, name in index.itertuples(index=False)
        ]
        memberships = pd.concat(rows, ignore_index=True).sort_values(
            ["segment_key", "contact_id"], kind="stable")
        _atomic_write(out / "memberships.csv", memberships)
        contacts = pd.read_csv(self.settings.path / "contacts.csv", dtype=str,
                               keep_default_na=False)
        names = memberships.groupby("contact_id")["segment_name"].agg(
            lambda values: ";".join(sorted(values)))
        contacts["segments"] = contacts["id"].map(names).fillna("")
        _atomic_write(out / "contacts_with_segments.csv", contacts)


