"""HubSpotConnector: ``Connector``, ``FieldWriter``, ``MembershipReader`` and
``TargetDeleter`` for HubSpot.

The class only wires parts together: one :class:`~connectors.hubspot.api.HubSpotApi`
(the shared retrying session with HubSpot's rate limits, auth and per-endpoint call
counter), a :class:`~connectors.hubspot.streams.StreamReader` for pulls, a
:class:`~connectors.hubspot.lists.ListWriter` for the contact lists and a
:class:`~connectors.hubspot.property.PropertyWriter` for the multi-checkbox property.
``[crm].write_mode`` says which of the two write-backs this portal gets.

``apply`` and ``write_field`` report only what HubSpot's answers prove (the rules are in
:mod:`~connectors.hubspot.lists` and :mod:`~connectors.hubspot.property`); each result's
``api_calls`` counts the requests sent for it, retries included. Time is injected:
``now`` (wall clock, aware UTC: watermarks, OAuth expiry, lost-create checks),
``monotonic`` and ``sleep`` (rate limiters and retry waits) and ``rng`` (retry jitter).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from connectors.base import (
    Batch,
    BatchResult,
    Capabilities,
    MembershipRead,
    Page,
    PullRequest,
    TargetRef,
    TargetSpec,
)
from connectors.errors import AuthError
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.lists import RECORD_READ_BATCH, ListWriter
from connectors.hubspot.property import CONTACT_UPDATE_BATCH, PropertyWriter
from connectors.hubspot.settings import HubSpotSettings
from connectors.hubspot.streams import StreamReader

__all__ = ["HubSpotConnector"]

READ_SCOPES = ("crm.objects.contacts.read", "crm.objects.companies.read",
               "crm.objects.deals.read")
LIST_SCOPES = ("crm.lists.read", "crm.lists.write")
PROPERTY_SCOPES = ("crm.schemas.contacts.read", "crm.schemas.contacts.write",
                   "crm.objects.contacts.write")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class HubSpotConnector:
    """Pulls contacts/companies/deals/engagements and writes segments back to HubSpot."""

    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        now: Callable[[], dt.datetime] = _utc_now,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``sleep``/``monotonic`` default to the ``time`` module's, looked up when built."""
        self.settings = settings
        self.api = HubSpotApi(settings, now=now, sleep=sleep or time.sleep,
                              monotonic=monotonic or time.monotonic, rng=rng)
        self.reader = StreamReader(self.api, settings, now)
        self.list_writer = ListWriter(self.api, settings, now)
        self.property_writer = PropertyWriter(self.api, settings)

    def _attempts(self) -> int:
        return self.api.session.attempts

    def capabilities(self) -> Capabilities:
        """Lists and/or the checkbox property (``write_mode``); reads and deletes lists."""
        settings = self.settings
        return Capabilities(
            max_batch=settings.membership_batch_size, lists=settings.writes_lists,
            field=settings.writes_property, max_field_batch=CONTACT_UPDATE_BATCH,
            read_memberships=True, max_read_batch=RECORD_READ_BATCH, delete_targets=True)

    def api_usage(self) -> dict[str, int]:
        return dict(sorted(self.api.calls.items()))

    def finish(self) -> None:
        """Nothing is buffered: every batch is sent when ``apply`` is called."""

    # -- Connector ---------------------------------------------------------------------------

    def pull(self, request: PullRequest) -> Iterator[Page]:
        return self.reader.pull(request)

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        return self.list_writer.ensure_target(spec, current, adopt)

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        before = self._attempts()
        outcomes = self.list_writer.apply(target, batch)
        return outcomes.result(self._attempts() - before)

    def members(self, target: TargetRef) -> Iterator[str]:
        return self.list_writer.members(target)

    # -- MembershipReader, TargetDeleter ------------------------------------------------------

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        before = self._attempts()
        read = self.list_writer.read_memberships(targets, record_ids)
        return replace(read, api_calls=self._attempts() - before)

    def delete_target(self, target: TargetRef) -> None:
        self.list_writer.delete_target(target)

    # -- FieldWriter ---------------------------------------------------------------------------

    def ensure_field(self, options: Sequence[str]) -> None:
        self.property_writer.ensure_field(options)

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> BatchResult:
        before = self._attempts()
        outcomes = self.property_writer.write_field(updates)
        return outcomes.result(self._attempts() - before)

    # -- check ---------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Credentials, the token's scopes for this ``write_mode``, the client-side limits."""
        settings = self.settings
        self.api.probe()
        lines = [f"HubSpot at {settings.base_url} accepted the {settings.auth} credentials"]
        needed = list(READ_SCOPES)
        if settings.writes_lists:
            needed += LIST_SCOPES
        if settings.writes_property:
            needed += PROPERTY_SCOPES
        granted = self.api.token_scopes()
        if granted is None:
            lines.append("HubSpot did not list the token's scopes; a missing scope will be "
                         "named by the first call that needs it")
        else:
            missing = [s for s in dict.fromkeys(needed) if s not in granted]
            if missing:
                raise AuthError(
                    f"the HubSpot token lacks the scope(s) {', '.join(missing)} that segsync "
                    f"needs (write_mode = {settings.write_mode!r}); add them to the private "
                    "app / service key (or re-authorize the OAuth app) and run `segsync check`"
                )
            lines.append(f"token has the scopes segsync needs: {', '.join(dict.fromkeys(needed))}")
            kinds = settings.activity_types
            if (kinds.get("emails") or kinds.get("incoming_emails")) and (
                "sales-email-read" not in granted
            ):
                lines.append("note: without sales-email-read HubSpot may refuse to list "
                             "email engagements")
        lines.append(f"client-side limits: {settings.requests_per_10s} requests / 10 s "
                     f"({settings.tier}), search {settings.search_per_second} / s")
        return lines
