"""CRM connectors behind one small Protocol (``connectors.base.Connector``).

The registry below is explicit on purpose: adding a CRM means adding a module and one
entry here (its ``[crm]`` keys, a settings parser and a factory); ``sync`` never imports
a concrete connector by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors import csvfile, hubspot, salesforce
from connectors.base import Connector
from segment_rules.tables import TableReader

__all__ = ["CONNECTOR_TYPES", "Connector", "ConnectorType", "create"]


@dataclass(frozen=True)
class ConnectorType:
    """How one ``[crm].type`` is configured and built."""

    keys: tuple[str, ...]
    parse: Callable[[TableReader, dict[str, Any], Path], object | None]
    settings: type
    build: Callable[[Any], Connector]


CONNECTOR_TYPES: dict[str, ConnectorType] = {
    "csv": ConnectorType(
        csvfile.SETTINGS_KEYS, csvfile.parse_settings, csvfile.CsvSettings, csvfile.CsvConnector
    ),
    "hubspot": ConnectorType(
        hubspot.SETTINGS_KEYS, hubspot.parse_settings, hubspot.HubSpotSettings,
        hubspot.HubSpotConnector,
    ),
    "salesforce": ConnectorType(
        salesforce.SETTINGS_KEYS, salesforce.parse_settings, salesforce.SalesforceSettings,
        salesforce.SalesforceConnector,
    ),
}


def create(settings: object) -> Connector:
    """Build the connector for parsed ``[crm]`` settings."""
    for kind in CONNECTOR_TYPES.values():
        if isinstance(settings, kind.settings):
            return kind.build(settings)
    raise TypeError(f"no connector for {type(settings).__name__}")
