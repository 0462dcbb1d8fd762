"""A stateful, in-process Salesforce emulator for segsync's end-to-end tests.

    with SalesforceEmulator() as sf:
        contact = sf.add("Contact", LastName="Ada", Email="ada@example.com")
        with sf.make_session() as http:   # requests.Session, verify=sf.ca_file
            client = Salesforce(instance_url=sf.instance_url, session_id=sf.issue_session(),
                                session=http, version="64.0")
            client.query_all("SELECT Id FROM Contact")

It serves HTTPS (a self-signed certificate made at start-up; SAN IP:127.0.0.1 and
DNS:localhost; `sf.ca_file` is the PEM to verify against) on an ephemeral 127.0.0.1 port from a
background thread. Any ``/services/data/vNN.N/`` version is accepted; 64.0 is the default.

Emulated
--------
- Logins: OAuth 2.0 token endpoint (password, client_credentials, JWT bearer with optional
  RS256 verification) and SOAP ``login()`` (``/services/Soap/u/{v}``, v <= 64.0) as used by
  simple-salesforce. `sf.make_session()` re-routes ``https://*.salesforce.com`` to the
  emulator, so simple-salesforce's hard-wired login hosts work unchanged.
- Sessions: bearer tokens; `expire_sessions()` -> 401 INVALID_SESSION_ID.
- Objects: Contact, Lead, Account, Opportunity, OpportunityContactRole, Task, Event, Campaign,
  CampaignMember, EmailMessage and EmailMessageRelation (Enhanced Email), with system fields (Id, IsDeleted, CreatedDate, LastModifiedDate,
  SystemModstamp, CreatedById, LastModifiedById; MasterRecordId on the mergeable Account,
  Contact and Lead only, as in Salesforce). 18-character Ids with the real key prefixes and
  checksum, handed out in order (deterministic); 15-character Ids are accepted on input.
- Users: one User row per login user (Username, IsActive, UserPermissionsMarketingUser;
  `sf.marketing_user`).
- Derived fields: Name (Contact/Lead), IsWon/IsClosed (from StageName), Task IsClosed,
  Event ActivityDate, CampaignMember LeadOrContactId/HasResponded, Campaign member counts,
  EmailMessageRelation RelationObjectType/RelationAddress (from RelationId).
- Recycle bin: delete / undelete (with cascades to members, roles, activities and an email's
  relations), a purge window.
- Merges (`merge(master_id, *loser_ids)`): losers deleted with MasterRecordId = master
  (queryAll shows them with IsDeleted = true); their CampaignMember rows, Tasks, Events,
  Opportunities, OpportunityContactRoles and EmailMessageRelations move to the master (a
  membership the master already has in that campaign is deleted instead); moved children
  and the master get a new SystemModstamp.
- Lead conversion (`convert_lead(lead_id, contact_id=None, ...)`, creating or reusing a
  Contact): IsConverted, ConvertedContactId/AccountId/OpportunityId, ConvertedDate; the lead
  becomes read-only (CANNOT_UPDATE_CONVERTED_LEAD, also for a new CampaignMember naming it);
  its CampaignMember rows keep LeadId and gain ContactId; its Tasks and Events move to the
  contact.
- Enhanced Email: EmailMessage (Incoming, MessageDate, ActivityId linking the logged Task)
  and EmailMessageRelation (RelationType FromAddress / ToAddress / CcAddress / BccAddress,
  RelationId a Contact, Lead or User); `log_email` seeds all three like Salesforce's email
  logging. `sf.enhanced_email = False` makes both objects unknown to the API (queries
  INVALID_TYPE, describe 404 NOT_FOUND), as in an org without the feature.
- REST: query / queryAll (SOQL subset: see `salesforce_soql`) with nextRecordsUrl paging and
  ``Sforce-Query-Options: batchSize``; sobjects (global describe, describe with picklists and
  field-level access, create, get, patch, delete, getUpdated, getDeleted); limits and
  limits/recordCount; sObject Collections create / update / delete / retrieve (200 per call,
  allOrNone, per-record errors such as DUPLICATE_VALUE); Bulk 2.0 query jobs (create, poll,
  CSV results with Sforce-Locator paging, abort, delete, list).
- Time: the HTTP ``Date`` header follows the org's manual clock (`sf.clock`), like
  SystemModstamp, so clients can take server time from responses.
- Accounting: every data call counts against a daily limit and carries
  ``Sforce-Limit-Info: api-usage=N/M``; over the limit -> 403 REQUEST_LIMIT_EXCEEDED.
  Logins and faults that stop a request before the org are not counted.
- Observability: every request is recorded (`requests`, `count`, `write_requests`). Records
  created over HTTP count as segsync's; records seeded from Python (`add`, `seed_*`,
  `convert_lead`) do not. API writes that touch the latter (other than the fields registered
  by `define_multipicklist`, on Contacts and Leads) are listed in `foreign_writes`.
- Faults: `inject(Fault(...))` (see `salesforce_faults` for the kinds). Any kind can be made
  to hit after the org processed (committed) the request with `reach_org=True`: a 5xx, a
  delay past the client's timeout, a disconnect mid-body or a truncated JSON body then
  stands for an answer lost after the write happened.

Modules: `salesforce` (this facade, the TLS server), `salesforce_http` (routing, REST,
collections), `salesforce_bulk`, `salesforce_auth`, `salesforce_store` (org state),
`salesforce_soql`, `salesforce_schema` (objects, Ids, values), `salesforce_describe`,
`salesforce_faults`, `salesforce_wire`, `salesforce_tls`.

Client note: with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE set, requests ignores
`session.verify`; use `make_session()` / `adapter()` (which force the CA per request) or set
`session.trust_env = False`.

Deliberately not emulated
-------------------------
Bulk 2.0 ingest and Bulk v1; composite / batch / tree / graph; upsert by external Id;
Tooling and Metadata APIs (custom fields are defined from Python instead); sharing and
profiles; enforcement of the Marketing User flag (`sf.marketing_user = False` only changes the
User row and what describe says of Campaign / CampaignMember); validation rules, triggers, duplicate rules, workflow; currency
conversion; archived activities (IsArchived); Email-to-Case, email templates, sending email,
and the cascades between a logged email and its Task (deleting one leaves the other); query cursors expiring on their own (call
`expire_query_cursors()`); concurrent-request limits; SOQL features listed in
`salesforce_soql`. Error messages follow Salesforce's wording where it is documented and are
the emulator's own elsewhere; the error *codes* and HTTP statuses are the contract.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from ssl import SSLContext, SSLSocket
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .salesforce_auth import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    Auth,
)
from .salesforce_faults import Fault, FaultKind, request_matches
from .salesforce_http import App
from .salesforce_schema import FieldDef, FieldType, lookup_object
from .salesforce_store import (
    ENHANCED_EMAIL_OBJECTS,
    PYTHON_API,
    ApiError,
    Clock,
    ForeignWrite,
    LeadConversion,
    Org,
    RecordError,
)
from .salesforce_tls import server_context, write_self_signed
from .salesforce_wire import HttpRequest, RecordedRequest

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

__all__ = [
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_SECURITY_TOKEN",
    "DEFAULT_USERNAME",
    "Clock",
    "EmailLog",
    "EmulatorAdapter",
    "Fault",
    "FaultKind",
    "FieldDef",
    "ForeignWrite",
    "LeadConversion",
    "RecordedRequest",
    "SalesforceEmulator",
]


@dataclass(frozen=True)
class EmailLog:
    """What `SalesforceEmulator.log_email` created."""

    message_id: str
    task_id: str | None
    relation_ids: tuple[str, ...]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every response waits ~40 ms for a delayed ACK
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header follows the org's clock, as SystemModstamp values do."""
        if timestamp is None:
            timestamp = self.server.app.org.clock.now().timestamp()
        return email.utils.formatdate(timestamp, usegmt=True)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)
        request = HttpRequest(
            self.command,
            target.path,
            parse_qs(target.query, keep_blank_values=True),
            {name.lower(): value for name, value in self.headers.items()},
            body,
        )
        response = self.server.app.dispatch(request)
        if response.delay and self.server.stopping.wait(response.delay):
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        body = response.body
        if response.disconnect:  # promise the whole body, send half, hang up
            body = body[: len(body) // 2]
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, app: App, context: SSLContext) -> None:
        self.app = app
        self.context = context
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        raw, address = super().get_request()
        wrapped = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(wrapped)
        return wrapped, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up (timeouts, disconnect faults) are expected here

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with suppress(OSError):  # bypass SSLSocket.shutdown: it drops the TLS state
                socket.socket.shutdown(connection, socket.SHUT_RDWR)


class EmulatorAdapter(HTTPAdapter):
    """A transport adapter for https:// that sends requests for https://*.salesforce.com to
    the emulator and, for every request bound to the emulator, verifies against its
    certificate and bypasses proxies.

    Forcing `verify` here matters: when REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is set (and
    `session.trust_env` is on, the default), requests ignores `session.verify`."""

    def __init__(self, netloc: str, ca_file: str, *, reroute_salesforce_hosts: bool = True) -> None:
        super().__init__()
        self._netloc = netloc
        self._ca_file = ca_file
        self._reroute = reroute_salesforce_hosts

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        if self._reroute and (host == "salesforce.com" or host.endswith(".salesforce.com")):
            request.url = urlunsplit(
                ("https", self._netloc, parts.path, parts.query, parts.fragment)
            )
            parts = urlsplit(request.url)
        if parts.netloc == self._netloc:
            kwargs["verify"] = self._ca_file
            kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)


class SalesforceEmulator:
    """One emulated org served over HTTPS. Use as a context manager, or start() / stop()."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_version: str = "64.0",
        api_limit: int = 15000,
        page_size: int = 2000,
        recycle_bin_days: int = 15,
        updated_window_days: int = 30,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        security_token: str = DEFAULT_SECURITY_TOKEN,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        consumer_secret: str = DEFAULT_CONSUMER_SECRET,
    ) -> None:
        self.clock = clock or Clock()
        self.api_version = api_version
        self.username = username
        self._org = Org(self.clock)
        self._org.recycle_bin_days = recycle_bin_days
        self._org.updated_window_days = updated_window_days
        self._auth = Auth(self._org.ids)
        self._auth.add_user(username, password, security_token, user_id=self._org.user_id)
        self._org.add_user_record(self._org.user_id, username)
        self._auth.add_app(consumer_key, consumer_secret, run_as=username)
        self._app = App(
            self._org, self._auth, api_version=api_version, api_limit=api_limit, page_size=page_size
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file = ""

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="sf-emulator-")
        cert, key = write_self_signed(Path(self._tmpdir.name))
        self._ca_file = str(cert)
        self._server = _Server(self._app, server_context(cert, key))
        port = self._server.server_address[1]
        self._app.instance_url = f"https://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="salesforce-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses and clients --------------------------------------------------------------

    @property
    def instance_url(self) -> str:
        """https://127.0.0.1:PORT (pass as simple-salesforce's instance_url)."""
        if not self._app.instance_url:
            raise RuntimeError("the emulator is not started")
        return self._app.instance_url

    @property
    def netloc(self) -> str:
        return self.instance_url.removeprefix("https://")

    @property
    def ca_file(self) -> str:
        """PEM file of the self-signed certificate: requests' verify=sf.ca_file."""
        return self._ca_file

    def data_url(self, version: str | None = None) -> str:
        return f"{self.instance_url}/services/data/v{version or self.api_version}/"

    def adapter(self, *, reroute_salesforce_hosts: bool = True) -> EmulatorAdapter:
        """Mount on any session (segsync's own): `session.mount("https://", sf.adapter())`."""
        return EmulatorAdapter(
            self.netloc, self.ca_file, reroute_salesforce_hosts=reroute_salesforce_hosts
        )

    def make_session(self, *, reroute_salesforce_hosts: bool = True) -> requests.Session:
        """A requests.Session with verify=sf.ca_file and `adapter()` mounted for https://, so
        simple-salesforce's hard-wired https://{domain}.salesforce.com logins reach the
        emulator too."""
        session = requests.Session()
        session.verify = self.ca_file
        session.mount("https://", self.adapter(reroute_salesforce_hosts=reroute_salesforce_hosts))
        return session

    def client(
        self, session: requests.Session | None = None, *, version: str | None = None
    ) -> Salesforce:
        """A direct-mode simple_salesforce.Salesforce with a fresh session token.
        Close `client.session` when done if you did not pass one."""
        from simple_salesforce.api import Salesforce

        return Salesforce(
            instance_url=self.instance_url,
            session_id=self.issue_session(),
            session=session or self.make_session(),
            version=version or self.api_version,
        )

    # --- users and sessions -----------------------------------------------------------------

    def add_user(self, username: str, password: str, security_token: str = "") -> str:
        with self._app.lock:
            user_id = self._auth.add_user(username, password, security_token)
            self._org.add_user_record(user_id, username)
            return user_id

    @property
    def marketing_user(self) -> bool:
        """The integration user's Marketing User flag (User.UserPermissionsMarketingUser)."""
        user = self._org.records[self._org.user_id]
        return bool(user.values.get("UserPermissionsMarketingUser"))

    @marketing_user.setter
    def marketing_user(self, value: bool) -> None:
        """Without the flag, describe shows Campaign / CampaignMember as not createable,
        updateable or deletable (writes themselves are not refused by the emulator)."""
        with self._app.lock:
            self._org.records[self._org.user_id].values["UserPermissionsMarketingUser"] = value
            for name in ("Campaign", "CampaignMember"):
                definition = self._org.objects[name]
                definition.createable = definition.updateable = definition.deletable = value

    def add_connected_app(
        self,
        consumer_key: str,
        *,
        consumer_secret: str | None = None,
        public_key_pem: bytes | str | None = None,
        run_as: str | None = None,
    ) -> None:
        """Register an app. With `public_key_pem`, JWT assertions must be signed by its key."""
        with self._app.lock:
            self._auth.add_app(consumer_key, consumer_secret, public_key_pem, run_as)

    def issue_session(self, username: str | None = None) -> str:
        with self._app.lock:
            return self._auth.issue(username or self.username)

    def expire_sessions(self) -> None:
        """Revoke every session issued so far: the next data call answers 401."""
        with self._app.lock:
            self._auth.expire_all()

    # --- settings ---------------------------------------------------------------------------

    @property
    def page_size(self) -> int:
        return self._app.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self._app.page_size = value

    @property
    def api_limit(self) -> int:
        return self._app.api_limit

    @api_limit.setter
    def api_limit(self, value: int) -> None:
        self._app.api_limit = value

    @property
    def api_used(self) -> int:
        return self._app.api_used

    @api_used.setter
    def api_used(self, value: int) -> None:
        self._app.api_used = value

    @property
    def recycle_bin_days(self) -> int:
        return self._org.recycle_bin_days

    @recycle_bin_days.setter
    def recycle_bin_days(self, value: int) -> None:
        self._org.recycle_bin_days = value

    @property
    def updated_window_days(self) -> int:
        return self._org.updated_window_days

    @updated_window_days.setter
    def updated_window_days(self, value: int) -> None:
        self._org.updated_window_days = value

    @property
    def enhanced_email(self) -> bool:
        """Whether the org has Enhanced Email (EmailMessage / EmailMessageRelation); on by
        default, as in most orgs."""
        return "EmailMessage" in self._org.objects

    @enhanced_email.setter
    def enhanced_email(self, value: bool) -> None:
        with self._app.lock:
            self._org.set_enabled(ENHANCED_EMAIL_OBJECTS, value)

    @property
    def bulk_polls_before_complete(self) -> int:
        """How many job-status polls a Bulk 2.0 query job answers before JobComplete (0)."""
        return self._app.bulk.polls_before_complete

    @bulk_polls_before_complete.setter
    def bulk_polls_before_complete(self, value: int) -> None:
        self._app.bulk.polls_before_complete = value

    # --- seeding and mutation (as an admin or another integration would) --------------------

    @contextmanager
    def _admin(self, action: str) -> Iterator[None]:
        """Serialise with request handling; report emulator-side refusals as ValueError."""
        with self._app.lock:
            try:
                yield
            except (ApiError, RecordError) as exc:
                raise ValueError(f"{action}: {exc}") from exc

    def add(self, sobject: str, **fields: Any) -> str:
        """Create a record as someone other than segsync (its writes are audited as foreign).
        Read-only fields such as CreatedDate or SystemModstamp may be set here."""
        with self._admin(f"cannot add {sobject}"):
            definition = self._org.object(sobject)
            values, _ = self._org.read_fields(definition, fields, PYTHON_API, creating=True)
            return self._org.insert(definition.name, values, PYTHON_API)

    def add_many(self, sobject: str, rows: Iterable[dict[str, Any]]) -> list[str]:
        return [self.add(sobject, **row) for row in rows]

    def add_member(self, campaign_id: str, person_id: str, **fields: Any) -> str:
        """Seed a CampaignMember for a Contact (003...) or Lead (00Q...)."""
        key = "LeadId" if person_id.startswith("00Q") else "ContactId"
        return self.add("CampaignMember", CampaignId=campaign_id, **{key: person_id}, **fields)

    def seed_foreign_campaign(
        self, name: str, *, member_ids: Sequence[str] = (), **fields: Any
    ) -> str:
        """A Campaign (and members) that belongs to someone else: segsync must not touch it."""
        fields.setdefault("IsActive", True)
        campaign_id = self.add("Campaign", Name=name, **fields)
        for person_id in member_ids:
            self.add_member(campaign_id, person_id)
        return campaign_id

    def update(self, record_id: str, **fields: Any) -> None:
        """Edit a record as a user would (LastModifiedDate and SystemModstamp move)."""
        with self._admin(f"cannot update {record_id}"):
            rec = self._org.target(record_id)
            values, _ = self._org.read_fields(
                self._org.objects[rec.sobject], fields, PYTHON_API, creating=False
            )
            self._org.update(rec.id, values, PYTHON_API)

    def touch(self, record_id: str) -> None:
        """A system-only change (e.g. a recalculation): only SystemModstamp moves."""
        with self._admin(f"cannot touch {record_id}"):
            self._org.touch(record_id)

    def delete(self, record_id: str) -> None:
        with self._admin(f"cannot delete {record_id}"):
            self._org.delete(record_id, PYTHON_API)

    def undelete(self, record_id: str) -> None:
        with self._admin(f"cannot undelete {record_id}"):
            self._org.undelete(record_id)

    def merge(self, survivor_id: str, *loser_ids: str) -> None:
        """Merge losers into the master (same object type), as the merge UI/API does."""
        with self._admin(f"cannot merge into {survivor_id}"):
            self._org.merge(survivor_id, list(loser_ids))

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        opportunity_name: str | None = None,
    ) -> LeadConversion:
        """Convert a Lead: creates (or links) a Contact and Account, optionally an Opportunity."""
        with self._admin(f"cannot convert {lead_id}"):
            return self._org.convert_lead(
                lead_id,
                contact_id=contact_id,
                account_id=account_id,
                opportunity_name=opportunity_name,
            )

    def log_email(
        self,
        from_id: str,
        to_ids: Sequence[str] = (),
        *,
        incoming: bool = True,
        message_date: dt.datetime | None = None,
        subject: str = "Re: your order",
        with_task: bool = True,
        cc_ids: Sequence[str] = (),
    ) -> EmailLog:
        """An email as Salesforce's email logging stores it: an EmailMessage, one
        EmailMessageRelation per sender / recipient (FromAddress, ToAddress, CcAddress), and
        -- with `with_task` -- the Task of subtype Email it links through ActivityId, whose
        WhoId is the sender of an incoming email (the first recipient of a sent one).
        Person ids may be Contacts, Leads or Users."""
        when = message_date or self.clock.now()
        who = from_id if incoming else (to_ids[0] if to_ids else None)
        task_id = None
        if with_task:
            task_id = self.add(
                "Task",
                Subject=f"Email: {subject}",
                TaskSubtype="Email",
                Type="Email",
                Status="Completed",
                ActivityDate=when.date(),
                WhoId=who if who and not who.startswith("005") else None,
            )
        message_id = self.add(
            "EmailMessage",
            Subject=subject,
            Incoming=incoming,
            MessageDate=when,
            Status="0" if incoming else "3",
            ActivityId=task_id,
        )
        relations = [(from_id, "FromAddress")]
        relations += [(i, "ToAddress") for i in to_ids] + [(i, "CcAddress") for i in cc_ids]
        relation_ids = tuple(
            self.add(
                "EmailMessageRelation",
                EmailMessageId=message_id,
                RelationId=person,
                RelationType=kind,
            )
            for person, kind in relations
        )
        return EmailLog(message_id, task_id, relation_ids)

    def purge_delete_log(self, through: dt.datetime | None = None) -> None:
        """Forget deletions up to `through` (default: now), as an emptied recycle bin would."""
        with self._app.lock:
            self._org.delete_log_purged_through = through or self.clock.now()

    def expire_query_cursors(self) -> None:
        """Following an old nextRecordsUrl now answers 400 INVALID_QUERY_LOCATOR."""
        with self._app.lock:
            self._app.cursors.clear()

    # --- schema -----------------------------------------------------------------------------

    def define_field(
        self, sobject: str, definition: FieldDef, *, segsync_may_write: bool = False
    ) -> None:
        """Add a custom field. With segsync_may_write, API updates that only touch this field
        on records segsync did not create are not reported as foreign writes."""
        with self._app.lock:
            target = self._org.object(sobject)
            target.add_field(definition)
            if segsync_may_write:
                self._org.segsync_fields.add((target.name, definition.name))

    def define_multipicklist(
        self,
        name: str,
        values: Sequence[str],
        *,
        sobjects: Sequence[str] = ("Contact", "Lead"),
        restricted: bool = False,
        label: str = "",
        readable: bool = True,
        createable: bool = True,
        updateable: bool = True,
    ) -> None:
        """The segment write-back field (e.g. Segsync_Segments__c) with its value set and
        field-level access. segsync may write it on any Contact or Lead."""
        for sobject in sobjects:
            self.define_field(
                sobject,
                FieldDef(
                    name,
                    "multipicklist",
                    label=label,
                    length=4099,
                    readable=readable,
                    createable=createable,
                    updateable=updateable,
                    picklist_values=list(values),
                    restricted=restricted,
                    custom=True,
                ),
                segsync_may_write=True,
            )

    def set_picklist_values(self, sobject: str, field: str, values: Sequence[str]) -> None:
        with self._app.lock:
            spec = self._org.object(sobject).field(field)
            if spec is None:
                raise KeyError(f"{sobject}.{field}")
            spec.picklist_values = list(values)

    def set_field_access(
        self,
        sobject: str,
        field: str,
        *,
        readable: bool | None = None,
        createable: bool | None = None,
        updateable: bool | None = None,
    ) -> None:
        """Field-level security for the API user (hidden fields give INVALID_FIELD)."""
        with self._app.lock:
            spec = self._org.object(sobject).field(field)
            if spec is None:
                raise KeyError(f"{sobject}.{field}")
            if readable is not None:
                spec.readable = readable
            if createable is not None:
                spec.createable = createable
            if updateable is not None:
                spec.updateable = updateable

    def field_type(self, sobject: str, field: str) -> FieldType:
        spec = self._org.object(sobject).field(field)
        if spec is None:
            raise KeyError(f"{sobject}.{field}")
        return spec.type

    # --- reading state ----------------------------------------------------------------------

    def get(self, record_id: str) -> dict[str, Any] | None:
        """A record's fields as JSON values (deleted and purged records included), or None."""
        with self._app.lock:
            rec = self._org.find(record_id)
            return None if rec is None else self._org.public(rec)

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Stored records of a type (also of a type switched off, e.g. Enhanced Email)."""
        with self._app.lock:
            found = lookup_object({**self._org.objects, **self._org.disabled}, sobject)
            if found is None:
                raise KeyError(sobject)
            name = found.name
            return [
                self._org.public(rec)
                for rec in self._org.records.values()
                if rec.sobject == name and (include_deleted or rec.deleted_at is None)
            ]

    def members(self, campaign_id: str) -> list[dict[str, Any]]:
        """Live CampaignMembers of a campaign."""
        return [m for m in self.records("CampaignMember") if m["CampaignId"] == campaign_id]

    def campaigns(self, name: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.records("Campaign") if name is None or c["Name"] == name]

    def created_by_segsync(self, record_id: str) -> bool:
        with self._app.lock:
            rec = self._org.find(record_id)
            return rec is not None and rec.origin == "api"

    # --- observability ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._app.lock:
            return list(self._app.requests)

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """Recorded requests by method and path prefix (prefix rules as for Fault)."""
        return sum(
            1
            for r in self.requests
            if request_matches(method, path_prefix, r.method, r.path, r.relative)
        )

    def write_requests(self) -> list[RecordedRequest]:
        """POST/PATCH/PUT/DELETE requests against sobjects/, composite/ or jobs/ingest."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        with self._app.lock:
            self._app.requests.clear()

    @property
    def foreign_writes(self) -> list[ForeignWrite]:
        with self._app.lock:
            return list(self._org.foreign_writes)

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of emulator bugs (answered as 500 UNKNOWN_EXCEPTION); expect none."""
        with self._app.lock:
            return list(self._app.internal_errors)

    # --- faults -----------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        with self._app.lock:
            self._app.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._app.lock:
            self._app.faults.clear()
