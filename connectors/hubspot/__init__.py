"""The HubSpot connector (``[crm] type = "hubspot"``).

Modules, each with one job (the layout of :mod:`connectors.salesforce`):

* ``settings``: the ``[crm]`` keys and their defaults;
* ``api``: the only module with HubSpot paths, statuses and auth flows (one retrying
  session);
* ``mapping``: pure translations (answers -> frames and outcomes, request bodies);
* ``paging``: paginators without I/O;
* ``streams``: the four pulls, one skeleton driven by a spec per object type;
* ``lists``: contact lists as write-back targets and their memberships;
* ``property``: the multi-checkbox contact property;
* ``connector``: :class:`HubSpotConnector`, which wires them together (imported on first
  use, so commands that never talk to HubSpot do not pay for its imports).
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
