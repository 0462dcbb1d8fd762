"""SOQL builders: every query segsync sends, built with ``format_soql``.

Values (ids, names, datetimes) always go through ``format_soql`` placeholders, which
quote and escape them; field and object names go in as ``{:literal}`` only after
:func:`field_list` has checked that they are plain API names. Datetimes are passed
timezone-aware, so ``format_soql`` renders them as UTC literals.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from simple_salesforce.format import format_soql

from connectors.errors import ConnectorError

__all__ = [
    "by_ids",
    "campaign_by_name",
    "changed",
    "field_list",
    "from_relations",
    "ids_of",
    "incoming_messages",
    "incoming_tasks",
    "member_persons",
    "member_rows",
    "memberships",
    "roles_of_opportunities",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def field_list(fields: Iterable[str]) -> str:
    """``Id, Email, Account.Industry``: unique, in order, each a valid API name."""
    unique = list(dict.fromkeys(f for f in fields if f))
    bad = [f for f in unique if not _NAME.match(f)]
    if bad:
        raise ConnectorError(
            f"{', '.join(repr(b) for b in bad)} is not a Salesforce field API name; map the "
            "rule field to one in [crm.contact_fields], [crm.lead_fields] or [crm.company_fields]"
        )
    return ", ".join(unique)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("SOQL datetimes must be timezone-aware (format_soql reads naive as local)")
    return value.astimezone(dt.UTC)


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def changed(
    sobject: str,
    fields: Iterable[str],
    since: dt.datetime | None,
    conditions: Sequence[str] = (),
    *,
    ordered: bool = True,
) -> str:
    """Records of ``sobject`` whose SystemModstamp is at or after ``since`` (None: all).

    Ordered by (SystemModstamp, Id) so each page's last modstamp is a safe watermark; the
    Bulk API path asks for ``ordered=False``.
    """
    where = list(conditions)
    if since is not None:
        where.append(format_soql("SystemModstamp >= {}", _utc(since)))
    query = format_soql("SELECT {:literal} FROM {:literal}", field_list(fields), sobject)
    query += _where(where)
    if ordered:
        query += " ORDER BY SystemModstamp ASC, Id ASC"
    return query


def ids_of(sobject: str, conditions: Sequence[str] = ()) -> str:
    """Every live record's Id (the full reconcile after a gap longer than the recycle bin)."""
    return format_soql("SELECT Id FROM {:literal}", sobject) + _where(conditions)


def by_ids(sobject: str, fields: Iterable[str], ids: Sequence[str]) -> str:
    return format_soql("SELECT {:literal} FROM {:literal} WHERE Id IN {}",
                       field_list(fields), sobject, list(ids))


def roles_of_opportunities(opportunity_ids: Sequence[str]) -> str:
    return format_soql(
        "SELECT OpportunityId, ContactId FROM OpportunityContactRole "
        "WHERE OpportunityId IN {}", list(opportunity_ids))


def won_roles(fields: Iterable[str], close_from: dt.date | None) -> str:
    """Contact roles of won opportunities, with the opportunity's fields (first pull)."""
    where = ["Opportunity.IsWon = true"]
    if close_from is not None:
        where.append(format_soql("Opportunity.CloseDate >= {}", close_from))
    return format_soql("SELECT {:literal} FROM OpportunityContactRole",
                       field_list(fields)) + _where(where)


def campaign_by_name(name: str) -> str:
    return format_soql("SELECT Id, Name FROM Campaign WHERE Name = {} ORDER BY CreatedDate DESC",
                       name)


def _people(contact_ids: Sequence[str], lead_ids: Sequence[str]) -> str:
    """``(ContactId IN (...) OR LeadId IN (...))``, leaving out an empty side."""
    people = []
    if contact_ids:
        people.append(format_soql("ContactId IN {}", list(contact_ids)))
    if lead_ids:
        people.append(format_soql("LeadId IN {}", list(lead_ids)))
    if not people:
        raise ValueError("a CampaignMember query needs at least one person id")
    return f"({' OR '.join(people)})"


def member_rows(campaign_id: str, contact_ids: Sequence[str], lead_ids: Sequence[str]) -> str:
    """CampaignMember rows of these people in one campaign (to delete them by member Id)."""
    return format_soql(
        "SELECT Id, ContactId, LeadId FROM CampaignMember WHERE CampaignId = {} AND ",
        campaign_id,
    ) + _people(contact_ids, lead_ids)


def memberships(campaign_ids: Sequence[str], contact_ids: Sequence[str],
                lead_ids: Sequence[str]) -> str:
    """Live memberships of these people in these campaigns (settling unknown pairs).

    A converted lead's row carries both ids, so it matches through either.
    """
    if not campaign_ids:
        raise ValueError("memberships needs at least one campaign id")
    return format_soql(
        "SELECT CampaignId, ContactId, LeadId FROM CampaignMember WHERE CampaignId IN {} AND ",
        list(campaign_ids),
    ) + _people(contact_ids, lead_ids)


def member_persons(campaign_id: str) -> str:
    """The live members of one campaign (``--reconcile``)."""
    return format_soql(
        "SELECT ContactId, LeadId FROM CampaignMember WHERE CampaignId = {}", campaign_id
    )


def incoming_tasks(task_ids: Sequence[str]) -> str:
    """Which of these Tasks are the logged copy of an incoming email (counted as the
    EmailMessage, never as an email sent)."""
    return format_soql("SELECT ActivityId FROM EmailMessage WHERE Incoming = true AND "
                       "ActivityId IN {}", list(task_ids))


def incoming_messages(fields: Iterable[str], message_ids: Sequence[str]) -> str:
    """Live incoming EmailMessages by Id (those whose sender relation changed)."""
    return format_soql("SELECT {:literal} FROM EmailMessage WHERE Id IN {} AND Incoming = true",
                       field_list(fields), list(message_ids))


def from_relations(message_ids: Sequence[str]) -> str:
    """The senders (``RelationType = 'FromAddress'``) of these EmailMessages."""
    return format_soql(
        "SELECT EmailMessageId, RelationId, SystemModstamp FROM EmailMessageRelation "
        "WHERE EmailMessageId IN {} AND RelationType = 'FromAddress'", list(message_ids))


def marketing_user(user_id: str) -> str:
    return format_soql(
        "SELECT Id, Username, UserPermissionsMarketingUser FROM User WHERE Id = {}", user_id
    )
