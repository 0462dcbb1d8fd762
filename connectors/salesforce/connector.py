"""SalesforceConnector: ``Connector``, ``FieldWriter`` and ``MembershipReader`` for Salesforce.

The class only wires parts together: one shared retrying session (``connectors.http``)
with a client-side token bucket (``connectors.ratelimit``) and a per-endpoint call
counter, a :class:`~connectors.salesforce.client.SalesforceClient` that logs in with the
configured flow, a :class:`~connectors.salesforce.streams.StreamReader` for pulls and a
:class:`~connectors.salesforce.write.Writer` for Campaigns and the picklist.

``apply`` and ``write_field`` report only what Salesforce's answers prove: per person done,
``failed``, ``unknown`` (an answer that arrived but cannot be read) or ``gone`` (deleted,
merged away, converted); the exact rules are in :mod:`connectors.salesforce.write`. They
raise only when no answer came (retries exhausted) or the answer means nothing was done.
``read_memberships`` reads chosen (campaign, person) pairs back so the engine can settle
unknown ones; each result's ``api_calls`` comes from the same call counter.

Retries: the session retries 5xx, timeouts, connection resets, ``REQUEST_LIMIT_EXCEEDED``
for *concurrent* requests and a request-level ``UNABLE_TO_LOCK_ROW`` with exponential
backoff and jitter; per-record ``UNABLE_TO_LOCK_ROW`` is retried by the writer. The daily
allocation (``REQUEST_LIMIT_EXCEEDED`` "TotalRequests") is never retried: it raises
``QuotaExhausted``. Every write first checks the last ``Sforce-Limit-Info`` against
``[crm].max_daily_api_share`` (:meth:`SalesforceConnector.check_budget` lets the engine
check a whole plan before its first write).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import requests

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
from connectors.errors import AuthError, ConnectorError, QuotaExhausted
from connectors.http import RetryPolicy, default_is_retryable, make_session
from connectors.ratelimit import TokenBucket
from connectors.salesforce import soql
from connectors.salesforce.client import ApiUsage, SalesforceClient, credentials_for
from connectors.salesforce.mapping import LimitInfo, first_error
from connectors.salesforce.settings import (
    COLLECTION_LIMIT,
    SOQL_IDS_PER_QUERY,
    SalesforceSettings,
)
from connectors.salesforce.streams import EMAIL_OBJECTS, StreamReader
from connectors.salesforce.write import Tally, Writer

__all__ = ["SalesforceConnector", "is_retryable"]

log = logging.getLogger("segsync.salesforce")

Sleep = Callable[[float], None]

#: Objects segsync reads, and the fields it always selects from each (besides mapped ones).
READ_OBJECTS: Mapping[str, tuple[str, ...]] = {
    "Account": ("Id", "SystemModstamp", "IsDeleted", "MasterRecordId"),
    "Contact": ("Id", "SystemModstamp", "AccountId", "IsDeleted", "MasterRecordId"),
    "Lead": ("Id", "SystemModstamp", "IsConverted", "ConvertedContactId", "IsDeleted",
             "MasterRecordId"),
    "Opportunity": ("Id", "SystemModstamp", "ContactId", "Amount", "CloseDate", "IsWon"),
    "OpportunityContactRole": ("Id", "SystemModstamp", "OpportunityId", "ContactId"),
    "Task": ("Id", "SystemModstamp", "WhoId", "Type", "TaskSubtype", "ActivityDate"),
    "Event": ("Id", "SystemModstamp", "WhoId", "Type", "ActivityDateTime", "ActivityDate"),
    # Enhanced Email (optional: an org without it only lacks email_received)
    "EmailMessage": ("Id", "SystemModstamp", "ActivityId", "Incoming", "MessageDate"),
    "EmailMessageRelation": ("Id", "SystemModstamp", "EmailMessageId", "RelationId",
                             "RelationType"),
}
#: 5 attempts: waits of about 1, 2, 4 and 8 s (plus up to 1 s of jitter each).
DEFAULT_RETRY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=60.0)
_ALWAYS_MAPPED = ("email", "email_opt_out", "do_not_call", "latitude", "longitude")


def _real_sleep(seconds: float) -> None:
    time.sleep(seconds)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_retryable(response: requests.Response) -> bool:
    """5xx and friends, plus the two Salesforce 4xx answers that mean "try again shortly"."""
    if default_is_retryable(response):
        return True
    if response.status_code not in (400, 403):
        return False
    try:
        code, message = first_error(response.json())
    except ValueError:
        return False
    if response.status_code == 403:
        return code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower()
    return code == "UNABLE_TO_LOCK_ROW"


def _result(tally: Tally, api_calls: int) -> BatchResult:
    return BatchResult(failed=tally.failed, api_calls=api_calls, unknown=tally.unknown,
                       gone=frozenset(tally.gone))


class SalesforceConnector:
    """Contacts, Leads, Accounts, won Opportunities, Tasks, Events and incoming
    EmailMessages in; Campaigns and/or a multi-select picklist out."""

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        now: Callable[[], dt.datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        """``now`` is the wall clock (aware UTC) used when Salesforce sends no ``Date``;
        ``monotonic`` and ``sleep`` drive the token bucket and retry waits."""
        self.settings = settings
        self._sleep = sleep or _real_sleep
        self._rng = rng or random.Random()
        self.usage = ApiUsage()
        rate = settings.max_requests_per_second
        limiter = TokenBucket(rate, 1.0, clock=monotonic, sleep=self._sleep) if rate else None

        def session(policy: RetryPolicy) -> requests.Session:
            return make_session(
                timeout=settings.timeout, retry=policy, limiter=limiter,
                is_retryable=is_retryable, sleep=self._sleep, on_request=self.usage.record,
                verify=str(settings.ca_file) if settings.ca_file else True, rng=self._rng,
            )

        self.session = session(retry)
        self._once = session(RetryPolicy(max_attempts=1))
        self._now = now
        self._client: SalesforceClient | None = None
        self._reader: StreamReader | None = None
        self._writer: Writer | None = None

    # -- parts, built on first use (so a missing secret fails only when it is needed) ------

    @property
    def client(self) -> SalesforceClient:
        if self._client is None:
            self._client = SalesforceClient(
                credentials_for(self.settings), self.session, self._once,
                instance_url=self.settings.instance_url,
                server_time=lambda: self.usage.server_time,
            )
        return self._client

    @property
    def reader(self) -> StreamReader:
        if self._reader is None:
            self._reader = StreamReader(self.client, self.settings, self.server_now, self._sleep)
        return self._reader

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            self._writer = Writer(self.client, self.settings, sleep=self._sleep, rng=self._rng,
                                  before_write=self._guard_share, bulk=self.reader.bulk_query)
        return self._writer

    def server_now(self) -> dt.datetime:
        """Salesforce's clock, from the newest response ``Date`` header (logging in if no
        call was made yet); the local clock only if the server sends no Date."""
        if self.usage.server_time is None:
            _ = self.client.token
        return self.usage.server_time or self._now()

    def close(self) -> None:
        self.session.close()
        self._once.close()

    def capabilities(self) -> Capabilities:
        """Campaigns and/or the picklist (``write_mode``); reads memberships back, deletes
        Campaigns, and checks writes against the daily API allocation."""
        return Capabilities(
            max_batch=COLLECTION_LIMIT, lists=self.settings.writes_campaigns,
            field=self.settings.writes_field, max_field_batch=COLLECTION_LIMIT,
            read_memberships=True, max_read_batch=SOQL_IDS_PER_QUERY, delete_targets=True,
            budget=True)

    # -- API budget ------------------------------------------------------------------------

    def api_usage(self) -> dict[str, int]:
        return dict(sorted(self.usage.calls.items()))

    def daily_limits(self) -> LimitInfo | None:
        """The org's daily API use from the last ``Sforce-Limit-Info`` header (None: no call yet)."""
        return self.usage.limits

    def remaining_daily_calls(self) -> int | None:
        info = self.usage.limits
        return info.remaining if info else None

    def write_budget(self) -> int | None:
        """Calls left before the run passes ``max_daily_api_share`` of the allocation."""
        info = self.usage.limits
        if info is None:
            return None
        return max(0, math.floor(info.max * self.settings.max_daily_api_share) - info.used)

    @staticmethod
    def estimate_write_calls(adds: int, removes: int, new_targets: int = 0) -> int:
        """Calls one segment's changes cost: 1 per 200 adds, 2 per 200 removes (lookup +
        delete), 2 per new campaign (name check + create). Lock retries come on top."""
        batches = math.ceil(adds / COLLECTION_LIMIT)
        return batches + 2 * math.ceil(removes / COLLECTION_LIMIT) + 2 * new_targets

    def check_budget(self, planned_calls: int) -> None:
        """Raise QuotaExhausted when ``planned_calls`` would pass the configured daily share."""
        budget = self.write_budget()
        if budget is not None and planned_calls > budget:
            info = self.usage.limits
            assert info is not None
            raise QuotaExhausted(
                f"the planned writes need about {planned_calls} API calls, but only {budget} "
                f"remain within max_daily_api_share = {self.settings.max_daily_api_share:g} "
                f"(the org has used {info.used} of {info.max} today); nothing was written"
            )

    def _guard_share(self) -> None:
        self.check_budget(1)

    # -- Connector -----------------------------------------------------------------------

    def pull(self, request: PullRequest) -> Iterator[Page]:
        return self.reader.pull(request)

    def ensure_target(self, spec: TargetSpec, current: TargetRef | None, adopt: bool) -> TargetRef:
        if not self.settings.writes_campaigns:
            raise ConnectorError(
                '[crm].write_mode = "field" writes no Campaigns, but this segsync version only '
                'plans Campaign memberships; use write_mode = "campaigns" or "both"'
            )
        return self.writer.ensure_campaign(spec, current, adopt)

    def apply(self, target: TargetRef, batch: Batch) -> BatchResult:
        before = self.usage.total
        tally = self.writer.apply(target, batch)
        return _result(tally, self.usage.total - before)

    # -- MembershipReader ------------------------------------------------------------------

    def read_memberships(
        self, targets: Sequence[TargetRef], record_ids: Sequence[str]
    ) -> MembershipRead:
        """Which of ``record_ids`` are members of which campaigns, read live (SOQL)."""
        before = self.usage.total
        read = self.writer.read_memberships(targets, record_ids)
        return MembershipRead(read.present, read.known, read.gone,
                              api_calls=self.usage.total - before)

    def delete_target(self, target: TargetRef) -> None:
        """``segsync prune``: delete a Campaign segsync created (gone already = deleted)."""
        try:
            self.client.rest("DELETE", f"sobjects/Campaign/{target.target_id}")
        except ConnectorError:
            if self.client.last_error_code not in ("NOT_FOUND", "ENTITY_IS_DELETED"):
                raise

    def members(self, target: TargetRef) -> Iterator[str]:
        return self.writer.members(target)

    def finish(self) -> None:
        if self.usage.calls:
            log.info("Salesforce API calls this run: %d (%s)", self.usage.total,
                     ", ".join(f"{k} {v}" for k, v in self.api_usage().items()))

    # -- FieldWriter -----------------------------------------------------------------------

    def ensure_field(self, options: Sequence[str]) -> None:
        self.writer.ensure_field(options)

    def write_field(self, updates: Mapping[str, tuple[str, ...]]) -> BatchResult:
        before = self.usage.total
        tally = self.writer.write_field(updates)
        return _result(tally, self.usage.total - before)

    # -- check -----------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Credentials, object and field access, which email activity the org can supply,
        Marketing User, picklist, limits."""
        s = self.settings
        client = self.client
        token = client.token
        lines = [f"logged in to {token.instance_url} ({client.credentials.flow}, API v"
                 f"{client.salesforce().sf_version})"]
        if s.auth == "password":
            lines.append("warning: password + security token (SOAP login) is deprecated by "
                         'Salesforce; move to auth = "jwt" or "client_credentials"')
        problems: list[str] = []
        permissions: list[str] = []
        for sobject, fields in READ_OBJECTS.items():
            if sobject in ("Contact", "Lead") and sobject not in s.objects:
                continue
            if sobject in EMAIL_OBJECTS:
                continue  # optional: reported by _check_email
            wanted = list(fields)
            if sobject in ("Contact", "Lead", "Account"):
                names = _ALWAYS_MAPPED if sobject != "Account" else ("latitude", "longitude")
                table = {"Contact": s.contact_fields, "Lead": s.lead_fields,
                         "Account": s.company_fields}[sobject]
                wanted += [s.sf_field(sobject, n) for n in names]
                wanted += [v for k, v in table.items() if s.explicitly_mapped(sobject, k)]
            found = self._describe(sobject, problems)
            if found is None:
                continue
            missing = sorted({f for f in wanted if f and f.lower() not in found})
            if missing:
                problems.append(f"{sobject}: the API user cannot read {', '.join(missing)} "
                                "(check the field names and their Field-Level Security)")
            else:
                lines.append(f"{sobject}: readable ({len(found)} fields visible)")
        lines.append(self._check_email())
        if s.writes_campaigns:
            lines += self._check_campaigns(token.user_id, permissions)
        if s.writes_field:
            for sobject in s.objects:
                check = self.writer.check_field(sobject, ())
                problems += check.problems
                if not check.problems:
                    lines.append(f"{sobject}.{s.field_name}: multi-select picklist, writable, "
                                 f"{len(check.values)} value(s)")
        lines.append(self._check_limits())
        if permissions:
            raise AuthError("the Salesforce API user lacks permissions segsync needs:\n  - "
                            + "\n  - ".join(permissions + problems))
        if problems:
            raise ConnectorError("Salesforce is not ready for segsync:\n  - "
                                 + "\n  - ".join(problems))
        return lines

    def _describe(self, sobject: str, problems: list[str]) -> set[str] | None:
        try:
            described = self.client.rest("GET", f"sobjects/{sobject}/describe") or {}
        except AuthError:
            raise
        except ConnectorError as exc:
            problems.append(f"{sobject}: cannot describe it ({exc})")
            return None
        if not described.get("queryable", True):
            problems.append(f"{sobject}: not queryable by the API user (grant Read on it)")
        return {str(f.get("name", "")).lower() for f in described.get("fields", [])}

    def _check_email(self) -> str:
        """Which email activity the org supplies: Email Tasks always give email_sent;
        email_received needs Enhanced Email (EmailMessage + EmailMessageRelation readable).
        Never a problem: rules without email_received work either way."""
        sent = "email_sent from Tasks of subtype Email"
        capture = ("Einstein Activity Capture email is API-visible only with 'Sync Email as "
                   "Salesforce Activity' on")
        missing: list[str] = []
        for sobject in EMAIL_OBJECTS:
            try:
                described = self.client.rest("GET", f"sobjects/{sobject}/describe") or {}
            except AuthError:
                raise
            except ConnectorError:
                described = None
            if described is None or not described.get("queryable", True):
                return (f"email activity: {sent} only; email_received is unavailable because "
                        f"{sobject} is not queryable by the API user (Enhanced Email is off, "
                        f"or the user lacks Read on it); {capture}")
            visible = {str(f.get("name", "")).lower() for f in described.get("fields", [])}
            missing += [f"{sobject}.{f}" for f in READ_OBJECTS[sobject]
                        if f.lower() not in visible]
        if missing:
            return (f"warning: email activity: {sent} only; email_received is unavailable "
                    f"because the API user cannot read {', '.join(missing)} (Field-Level "
                    f"Security); {capture}")
        return (f"email activity: {sent}, email_received from incoming EmailMessages "
                f"(Enhanced Email); {capture}")

    def _check_campaigns(self, user_id: str | None, permissions: list[str]) -> list[str]:
        """Marketing User: the User flag when readable, else what describe says of Campaign."""
        lines = []
        flag: bool | None = None
        if user_id:
            try:
                pages = list(self.client.query_pages(soql.marketing_user(user_id),
                                                     what="query User"))
                rows = [r for p in pages for r in p.records]
                if rows:
                    flag = bool(rows[0].get("UserPermissionsMarketingUser"))
            except AuthError:
                raise
            except ConnectorError:
                flag = None  # the User object or field is not readable: rely on describe
        campaign = self.client.rest("GET", "sobjects/Campaign/describe") or {}
        member = self.client.rest("GET", "sobjects/CampaignMember/describe") or {}
        can_write = bool(campaign.get("createable") and campaign.get("updateable")
                         and member.get("createable") and member.get("deletable"))
        how = ("Setup > Users > (the integration user) > Edit > check 'Marketing User', and "
               "give its profile or permission set Read, Create, Edit and Delete on Campaigns "
               "and Campaign Members")
        if flag is False:
            permissions.append(f"the user is not a Marketing User: {how}")
        elif not can_write:
            permissions.append(f"the user cannot create/edit Campaigns or Campaign Members: {how}")
        else:
            source = "User.UserPermissionsMarketingUser" if flag else "Campaign describe"
            lines.append(f"Campaigns: the user may create campaigns and members ({source})")
        return lines

    def _check_limits(self) -> str:
        try:
            limits = self.client.rest("GET", "limits/") or {}
        except AuthError:
            return ("daily API limits: not readable (needs 'View Setup and Configuration'); "
                    "the Sforce-Limit-Info header is used instead")
        daily = limits.get("DailyApiRequests") or {}
        share = self.settings.max_daily_api_share
        return (f"daily API requests: {daily.get('Remaining')} of {daily.get('Max')} left; "
                f"segsync stops writing at {share:.0%} of the allocation")
