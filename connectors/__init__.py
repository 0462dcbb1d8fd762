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

__all__ = ["CONNECTOR_TYPES", "Connector", "ConnectorType", "create"]


@dataclass(frozen=True)
class ConnectorType:
    """How one ``[crm].type`` is configured and built."""

    keys: tuple[str, ...]
    parse: Callable[[TableReader, dict[str, Any], Path], object | None]
    settings: type
    build: Callable[[Any], Connector]


def _lazy(module: str, name: str) -> Callable[[Any], Connector]:
    """A factory that imports a CRM's connector (and its SDKs) only when one is built."""

    def build(settings: Any) -> Connector:
        factory: Callable[[Any], Connector] = getattr(importlib.import_module(module), name)
        return factory(settings)

    return build


CONNECTOR_TYPES: dict[str, ConnectorType] = {
    "csv": ConnectorType(
        csvfile.SETTINGS_KEYS, csvfile.parse_settings, csvfile.CsvSettings, csvfile.CsvConnector
    ),
    "hubspot": ConnectorType(
        hubspot_settings.SETTINGS_KEYS, hubspot_settings.parse_settings,
        hubspot_settings.HubSpotSettings,
        _lazy("connectors.hubspot.connector", "HubSpotConnector"),
    ),
    "salesforce": ConnectorType(
        salesforce_settings.SETTINGS_KEYS, salesforce_settings.parse_settings,
        salesforce_settings.SalesforceSettings,
        _lazy("connectors.salesforce.connector", "SalesforceConnector"),
    ),
}


def create(settings: object) -> Connector:
    """Build the connector for parsed ``[crm]`` settings."""
    for kind in CONNECTOR_TYPES.values():
        if isinstance(settings, kind.settings):
            return kind.build(settings)
    raise TypeError(f"no connector for {type(settings).__name__}")
