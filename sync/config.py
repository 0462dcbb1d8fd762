"""Load and validate ``segsync.toml`` into frozen settings, reporting every problem at once.

Paths in the file are relative to the file itself, so a config kept in git next to its
exports works from any working directory. Secrets never appear in the file: connectors
that need them take the *name* of an environment variable (``token_env``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import connectors
from connectors import CONNECTOR_TYPES
from segment_rules.errors import Problem, RuleError
from segment_rules.parse import parse_rules
from segment_rules.schema import PerValueGenerator, Segment
from segment_rules.sources import EVENTS_EVERYWHERE, Source, adapt
from segment_rules.tables import TableReader, key_path
from sync.alerts import AlertSettings, parse_alerts
from sync.errors import ConfigError
from sync.settings import read_settings, setting

__all__ = ["Config", "StoreSettings", "SyncSettings", "load_config", "parse_config"]

TOP_KEYS = ("crm", "store", "sync", "segment", "alerts")
CRM_COMMON_KEYS = ("type", "name_prefix")
SECRET_WORDS = re.compile(r"(token|secret|password|api_?key|private_?key)$", re.IGNORECASE)
MEMORY_PATTERN = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: ``path`` is relative to the config file (default ``segsync.duckdb``)."""

    path: Path
    memory_limit: str | None = setting(None, pattern=MEMORY_PATTERN,
                                       hint='a size such as "1GB" or "512MB"')


@dataclass(frozen=True)
class SyncSettings:
    """``[sync]``."""

    #: Cron expression (five fields, UTC) for ``segsync schedule``.
    schedule: str | None = None
    #: A segment losing more than this share of its members in one run is not applied.
    max_removal_fraction: float = setting(0.25, minimum=0.0, maximum=1.0)
    #: ...unless it loses fewer than this many (small segments churn by nature).
    min_removals_to_guard: int = setting(10, minimum=0)
    activity_lookback_days: int = setting(730, minimum=1, maximum=36_500)
    lock_wait_seconds: float = setting(0.0, minimum=0.0, maximum=86_400.0)


@dataclass(frozen=True)
class Config:
    source: Path
    #: The connector's settings object (``connectors.CONNECTOR_TYPES[type].settings``).
    crm: object
    name_prefix: str
    store: StoreSettings
    sync: SyncSettings
    segments: tuple[Segment, ...]
    #: One-segment-per-value blocks, expanded against the store at compute time.
    per_value: tuple[PerValueGenerator, ...] = ()
    #: The optional ``[alerts]`` webhook settings.
    alerts: AlertSettings | None = None
    #: Where each activity type comes from on this CRM (``segment_rules.sources``).
    activity_sources: Mapping[str, Source] = field(default_factory=lambda: EVENTS_EVERYWHERE)
    #: What ``segsync check`` should say about how the rules are answered on this CRM.
    notes: tuple[str, ...] = ()


def load_config(path: Path) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `segsync init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], source: Path) -> Config:
    problems: list[Problem] = []
    reader = TableReader(problems)
    reader.check_keys(data, TOP_KEYS, "")
    base = source.parent
    crm_table = reader.table(data.get("crm", {}), "crm") if "crm" in data else None
    if crm_table is None and "crm" not in data:
        reader.problem("crm", "is required", 'add a [crm] table, e.g. type = "csv"')
    crm, prefix = _parse_crm(reader, crm_table or {}, base) if crm_table is not None else (None, "")
    store = _parse_store(reader, data.get("store", {}), base)
    sync = _parse_sync(reader, data.get("sync", {}))
    rules = parse_rules(data.get("segment"), problems)
    alerts = parse_alerts(reader, data["alerts"]) if "alerts" in data else None
    if not rules.segments and not rules.per_value and "segment" not in data:
        reader.problem("segment", "no segments are defined", "add at least one [[segment]]")
    sources: Mapping[str, Source] = EVENTS_EVERYWHERE
    segments, notes = rules.segments, tuple[str, ...]()
    if crm is not None:
        sources = _sources(crm)
        adapted = adapt(rules.segments, sources, connectors.label(crm))
        problems.extend(adapted.problems)
        segments, notes = adapted.segments, adapted.notes
    if problems or crm is None or store is None or sync is None:
        raise ConfigError(RuleError(problems, str(source)).render())
    return Config(source, crm, prefix, store, sync, segments, rules.per_value, alerts,
                  sources, notes)



def _sources(crm: object) -> Mapping[str, Source]:
    """The connector settings' own account of where activity comes from."""
    found = connectors.activity_sources(crm)
    return {kind: cast(Source, found.get(kind, "events")) for kind in EVENTS_EVERYWHERE}


def _reject_secrets(reader: TableReader, table: dict[str, Any], path: str) -> None:
    for key in table:
        if SECRET_WORDS.search(key) and not key.endswith("_env"):
            reader.problem(
                key_path(path, key),
                "secrets must not be written in the config file",
                f"put the value in an environment variable and name it with {key}_env",
            )


def _parse_crm(
    reader: TableReader, table: dict[str, Any], base: Path
) -> tuple[object | None, str]:
    before = len(reader.problems)
    _reject_secrets(reader, table, "crm")
    reader.required(table, "type", "crm")
    kind = reader.string(table, "type", "crm", choices=CONNECTOR_TYPES)
    prefix = reader.string(table, "name_prefix", "crm", default="segsync: ") or ""
    if len(prefix) > 60:
        reader.problem("crm.name_prefix", "must be at most 60 characters")
    if kind is None:
        return None, prefix
    connector = CONNECTOR_TYPES[kind]
    plain = {k: v for k, v in table.items() if not (SECRET_WORDS.search(k) and not k.endswith("_env"))}
    reader.check_keys(plain, (*CRM_COMMON_KEYS, *connector.keys), "crm")
    if len(reader.problems) > before:
        return None, prefix
    return connector.parse(reader, table, base), prefix


def _parse_store(reader: TableReader, raw: object, base: Path) -> StoreSettings | None:
    table = reader.table(raw, "store")
    if table is None:
        return None
    path = reader.string(table, "path", "store", default="segsync.duckdb") or "segsync.duckdb"
    return read_settings(reader, table, StoreSettings, "store", path=base / path)


def _parse_sync(reader: TableReader, raw: object) -> SyncSettings | None:
    table = reader.table(raw, "sync")
    if table is None:
        return None
    before = len(reader.problems)
    settings = read_settings(reader, table, SyncSettings, "sync")
    schedule = table.get("schedule")
    if isinstance(schedule, str) and "\x00" not in schedule:
        _check_cron(reader, schedule)
    return settings if len(reader.problems) == before else None


def _check_cron(reader: TableReader, expression: str) -> None:
    from croniter import croniter  # imported lazily: only configs with a schedule pay for it

    if not croniter.is_valid(expression):
        reader.problem("sync.schedule", f"{expression!r} is not a valid cron expression",
                       'five fields: minute hour day month weekday, e.g. "0 */6 * * *"')
