"""The Salesforce connector (``[crm] type = "salesforce"``).

Modules, each with one job:

* ``settings``: the ``[crm]`` keys, their defaults and the pinned API version;
* ``client``: credentials per auth flow, and the only I/O (simple-salesforce over the
  shared retrying session);
* ``soql``: every query, built with ``format_soql``;
* ``mapping``: pure translations (records -> frames, results -> outcomes, errors);
* ``streams``: incremental pulls of the four streams, with their watermarks;
* ``write``: Campaigns, CampaignMembers and the multi-select picklist;
* ``connector``: :class:`SalesforceConnector`, which wires them together (imported on
  first use, so commands that never talk to Salesforce do not pay for its imports).
"""

from __future__ import annotations

from typing import Any

from connectors.salesforce.settings import (
    API_VERSION,
    SETTINGS_KEYS,
    SalesforceSettings,
    parse_settings,
)

__all__ = [
    "API_VERSION",
    "SETTINGS_KEYS",
    "SalesforceConnector",
    "SalesforceSettings",
    "parse_settings",
]


def __getattr__(name: str) -> Any:
    if name == "SalesforceConnector":
        from connectors.salesforce.connector import SalesforceConnector

        return SalesforceConnector
    raise AttributeError(name)
