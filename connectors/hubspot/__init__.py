"""The HubSpot connector (``[crm] type = "hubspot"``).

Modules: ``settings`` (the ``[crm]`` keys), ``api`` (the only module with HubSpot paths),
``mapping`` (pure JSON <-> frames/bodies), ``paging`` (paginators without I/O) and
``connector`` (:class:`HubSpotConnector`, the Connector + FieldWriter implementation).
"""

from __future__ import annotations

from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.settings import SETTINGS_KEYS, HubSpotSettings, parse_settings

__all__ = ["SETTINGS_KEYS", "HubSpotConnector", "HubSpotSettings", "parse_settings"]
