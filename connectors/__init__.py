"""CRM connectors behind one small Protocol (``connectors.base.Connector``).

The registry below is explicit on purpose: adding a CRM means adding a module and one
line here, and ``sync`` never imports a concrete connector by name.
"""

from __future__ import annotations

from connectors.base import Connector
from connectors.csvfile import CsvConnector, CsvSettings

__all__ = ["CONNECTOR_TYPES", "Connector", "CsvConnector", "CsvSettings", "create"]

CONNECTOR_TYPES = ("csv",)


def create(settings: object) -> Connector:
    """Build the connector for parsed ``[crm]`` settings."""
    if isinstance(settings, CsvSettings):
        return CsvConnector(settings)
    raise TypeError(f"no connector for {type(settings).__name__}")
