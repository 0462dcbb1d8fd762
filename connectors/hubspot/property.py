"""Write-back to a field: segment names in one multi-checkbox contact property.

segsync creates the property (``[crm].property_name``) in its own property group and
recognises it by that group and its type: a property of that name outside the group, or
not a multi-checkbox enumeration, is someone else's and a
:class:`~connectors.errors.TargetConflict`. Its options are exactly the segment names,
sent whole whenever they change.

Values are written through the contacts batch update, 100 contacts a call, each
contact's full set of segment names (an empty set clears it), so current values never
have to be read. Each id is reported only as HubSpot's answer proves it:

* only ids in ``results[]`` are done; ids an error names are ``failed``
  (OBJECT_NOT_FOUND: ``gone``); all others ``unknown``
  (:func:`~connectors.hubspot.mapping.update_outcomes`). A 400 refusing the whole chunk
  (an invalid value fails the batch) fails every id of it.
* an answer that arrived but cannot be read makes every id of that call ``unknown``; an
  answer that never came raises ``RetriesExhausted``. Other refusals raise: nothing was
  done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

from connectors.errors import TargetConflict
from connectors.hubspot import mapping as m
from connectors.hubspot.api import Conflict, HubSpotApi, HubSpotError
from connectors.hubspot.settings import HubSpotSettings

__all__ = ["CONTACT_UPDATE_BATCH", "PROPERTY_GROUP", "PropertyWriter"]

log = logging.getLogger(__name__)

#: Contacts one batch update carries (the endpoint's input maximum).
CONTACT_UPDATE_BATCH = 100
#: Property group segsync creates its checkbox property in (and recognises it by).
PROPERTY_GROUP = "segsync"
PROPERTY_GROUP_LABEL = "Segsync"


class PropertyWriter:
    """The multi-checkbox contact property: its options and its values."""

    def __init__(self, api: HubSpotApi, settings: HubSpotSettings) -> None:
        self.api = api
        self.settings = settings

    def ensure_field(self, options: Sequence[str]) -> None:
        """Create the property (and its group) if missing; make its options ``options``."""
        name = self.settings.property_name
        prop = self.api.get_property(name)
        if prop is None:
            if self.api.get_group(PROPERTY_GROUP) is None:
                with contextlib.suppress(Conflict):
                    self.api.create_group(m.group_create_body(PROPERTY_GROUP, PROPERTY_GROUP_LABEL))
            self.api.create_property(m.property_create_body(
                name, self.settings.property_label, PROPERTY_GROUP, options))
            log.info("created HubSpot contact property %s with %d option(s)", name, len(options))
            return
        info = m.property_info(prop)
        if (
            info.group != PROPERTY_GROUP
            or info.type != "enumeration"
            or info.field_type != "checkbox"
        ):
            raise TargetConflict(
                f"the HubSpot contact property {name!r} exists but was not created by segsync "
                f"(group {info.group!r}, type {info.type!r}/{info.field_type!r}); choose "
                "another [crm].property_name"
            )
        desired = m.options_body(options)
        if info.options == tuple((o["label"], o["value"], False) for o in desired):
            return
        self.api.update_property(name, {"options": desired})
        log.info("updated the options of HubSpot property %s (%d)", name, len(desired))

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> m.Outcomes:
        """Set the property, 100 contacts a call; only ``results[]`` proves a write."""
        outcomes = m.Outcomes()
        items = list(updates.items())
        for start in range(0, len(items), CONTACT_UPDATE_BATCH):
            chunk = dict(items[start:start + CONTACT_UPDATE_BATCH])
            body = m.batch_update_body(self.settings.property_name, chunk)
            try:
                answer = self.api.batch_update("contacts", body)
            except HubSpotError as exc:
                if exc.status != 400:
                    raise
                for contact_id in chunk:
                    outcomes.fail(contact_id, str(exc)[:500])
                continue
            if answer.body is None:
                log.warning("%s (%s); %d record(s) left unknown", answer.problem,
                            "the contacts batch update", len(chunk))
                outcomes.unreadable(chunk, answer.problem)
                continue
            m.update_outcomes(answer.status, answer.body, list(chunk), outcomes)
        return outcomes
