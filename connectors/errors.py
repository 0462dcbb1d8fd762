"""Connector errors, grouped by what the engine should do next.

::

    ConnectorError                 the CRM could not be used; the run stops
    +-- AuthError                  credentials missing, wrong, expired or lacking scopes
    +-- CrmDataError               the CRM (or export) handed over data we cannot read
    +-- TargetConflict             a list/campaign/file with our name exists that we do not own
    +-- QuotaExhausted             the CRM's daily budget is spent; resume later
    +-- RetriableAPIError          transient (429/5xx/timeout); raised only after retries ran out

Per-record failures are not exceptions: ``Connector.apply`` returns them in
``BatchResult.failed`` so the rest of the batch still counts as done.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConnectorError",
    "CrmDataError",
    "QuotaExhausted",
    "RetriableAPIError",
    "TargetConflict",
]


class ConnectorError(Exception):
    """Base class: the CRM could not be read or written; the message is shown to the admin."""


class AuthError(ConnectorError):
    """Credentials are missing, invalid, expired or lack a permission segsync needs."""


class CrmDataError(ConnectorError):
    """The CRM returned data segsync cannot interpret (a bad date, a missing id, an HTML page)."""


class TargetConflict(ConnectorError):
    """A write-back target with segsync's intended name exists but segsync did not create it."""


class QuotaExhausted(ConnectorError):
    """The CRM's API budget is used up; nothing more can be done until it resets."""


class RetriableAPIError(ConnectorError):
    """A transient failure that outlived every retry."""
