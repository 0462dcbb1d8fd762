"""The HubSpot connector (``[crm] type = "hubspot"``).

Modules: ``settings`` (the ``[crm]`` keys), ``api`` (the only module with HubSpot paths),
``mapping`` (pure JSON <-> frames/bodies), ``paging`` (paginators without I/O) and
``connector`` (:class:`HubSpotConnector`, the Connector + FieldWriter implementation).
The connector is imported on first use, so commands that never talk to HubSpot do not
pay for its imports.
"""

from __future__ import annotations

from typing import Any

from connectors.hubspot.settings import SETTINGS_KEYS, HubSpotSettings, parse_settings

__all__ = ["SETTINGS_KEYS", "HubSpotConnector", "HubSpotSettings", "parse_settings"]


def __getattr__(name: str) -> Any:
    if name == "HubSpotConnector":
        from connectors.hubspot.connector import HubSpotConnector

        return HubSpotConnector
    raise AttributeError(name)
