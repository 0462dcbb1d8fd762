"""CRM connectors behind one small Protocol (``connectors.base.Connector``).

The registry below is explicit on purpose: adding a CRM means adding a module and one
entry here (its ``[crm]`` keys, a settings parser and a factory); ``sync`` never imports
a concrete connector by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors import csvfile
from connectors.base import Connector
from connectors.hubspot import settings as hubspot_settings
from connectors.salesforce import settings as salesforce_settings
from segment_rules.tables import TableReader

__segsync_package__ = True

__all__ = ["CONNECTOR_TYPES", "Connector", "ConnectorType", "activity_sources", "create",
           "label"]


@dataclass(frozen=True)
class ConnectorType:
    """How one ``[crm].type`` is configured and built."""

    keys: tuple[str, ...]
    parse: Callable[[TableReader, dict[str, Any], Path], object | None]
    settings: type
    build: Callable[[Any], Connector]
    #: How the CRM keeps each canonical activity type: "events" | "rollup" | "none"
    #: (``segment_rules.sources``), known from the settings before anything connects.
    sources: Callable[[Any], dict[str, str]]
    #: How messages name the CRM.
    label: str


def _type_of(settings: object) -> ConnectorType:
    for kind in CONNECTOR_TYPES.values():
        if isinstance(settings, kind.settings):
            return kind
    raise TypeError(f"no connector for {type(settings).__name__}")


def activity_sources(settings: object) -> dict[str, str]:
    """Canonical activity type -> "events" | "rollup" | "none" for parsed ``[crm]`` settings."""
    return _type_of(settings).sources(settings)


def label(settings: object) -> str:
    """How messages name the CRM of these settings ("HubSpot", "the CSV export", ...)."""
    return _type_of(settings).label


def _lazy(module: str, name: str) -> Callable[[Any], Connector]:
    """A factory that imports a CRM's connector (and its SDKs) only when one is built."""

    def build(settings: Any) -> Connector:
        factory: Callable[[Any], Connector] = getattr(importlib.import_module(module), name)
        return factory(settings)

    return build


CONNECTOR_TYPES: dict[str, ConnectorType] = {
    "csv": ConnectorType(
        csvfile.SETTINGS_KEYS, csvfile.parse_settings, csvfile.CsvSettings, csvfile.CsvConnector,
        csvfile.CsvSettings.activity_sources, "the CSV export",
    ),
    "hubspot": ConnectorType(
        hubspot_settings.SETTINGS_KEYS, hubspot_settings.parse_settings,
        hubspot_settings.HubSpotSettings,
        _lazy("connectors.hubspot.connector", "HubSpotConnector"),
        hubspot_settings.HubSpotSettings.activity_sources, "HubSpot",
    ),
    "salesforce": ConnectorType(
        salesforce_settings.SETTINGS_KEYS, salesforce_settings.parse_settings,
        salesforce_settings.SalesforceSettings,
        _lazy("connectors.salesforce.connector", "SalesforceConnector"),
        salesforce_settings.SalesforceSettings.activity_sources, "Salesforce",
    ),
}


def create(settings: object) -> Connector:
    """Build the connector for parsed ``[crm]`` settings."""
    return _type_of(settings).build(settings)
