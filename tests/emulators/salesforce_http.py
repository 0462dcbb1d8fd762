"""Request routing for the Salesforce emulator: REST, sObject Collections, logins.

`App.dispatch(HttpRequest) -> HttpResponse` is the whole server minus sockets. The socket side
(`salesforce.py`) only reads requests, honours a response's `delay` / `disconnect` flags and
writes bytes. Bulk 2.0 query jobs live in `salesforce_bulk`, describe bodies in
`salesforce_describe`.
"""

from __future__ import annotations

import re
import threading
import traceback
from typing import Any
from urllib.parse import parse_qs

from .salesforce_auth import Auth, AuthError
from .salesforce_bulk import BulkQueries
from .salesforce_describe import describe, global_describe, object_summary
from .salesforce_faults import Fault
from .salesforce_schema import FieldDef, ObjectDef, format_datetime, parse_datetime, to_json_value
from .salesforce_soql import (
    Cursor,
    SoqlError,
    compile_query,
    execute,
    page,
    record_url,
    render_json,
)
from .salesforce_store import ApiError, Org, RecordError, WriteContext
from .salesforce_wire import (
    JSON_TYPE,
    HttpRequest,
    HttpResponse,
    RecordedRequest,
    allow,
    error_response,
    json_response,
    not_found,
)

DATA_PATH = re.compile(r"^/services/data/v(\d+\.\d+)(?:/(.*))?$")
SOAP_PATH = re.compile(r"^/services/Soap/u/([^/]+)/?$")
TOKEN_PATH = "/services/oauth2/token"
MAX_COLLECTION = 200
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
    b"<p>Salesforce is temporarily unavailable. Please try again later.</p></body></html>"
)


class App:
    """Everything behind the socket: state, routing, faults, accounting, request log."""

    def __init__(
        self, org: Org, auth: Auth, *, api_version: str, api_limit: int, page_size: int
    ) -> None:
        self.org = org
        self.auth = auth
        self.api_version = api_version
        self.api_limit = api_limit
        self.api_used = 0
        self.page_size = page_size
        self.instance_url = ""
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[str] = []
        self.cursors: dict[str, Cursor] = {}
        self.bulk = BulkQueries(org)
        self._locators = 0

    # --- entry point ------------------------------------------------------------------------

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        match = DATA_PATH.match(request.path)
        relative = (match.group(2) or "") if match else None
        with self.lock:
            record = RecordedRequest(
                request.method,
                request.path,
                request.query,
                request.body.decode("utf-8", "replace"),
                relative,
            )
            self.requests.append(record)
            try:
                response = self._dispatch(request, match, record)
            except Exception:
                self.internal_errors.append(traceback.format_exc())
                response = error_response(
                    500, "UNKNOWN_EXCEPTION", "An unexpected error occurred (emulator bug)"
                )
            record.status = response.status
            return response

    def _dispatch(
        self, request: HttpRequest, match: re.Match[str] | None, record: RecordedRequest
    ) -> HttpResponse:
        fault = self._take_fault(
            request.method, request.path, record.relative, request.param("q") or ""
        )
        if fault is not None:
            record.fault = fault.kind
            if not fault.reaches_org:
                return self._limit_header(self._fault_response(fault), counted=match is not None)
        if match is not None:
            response = self._data(request, match.group(1), record.relative or "", fault)
        elif request.path.rstrip("/") == "/services/data":
            response = json_response(200, self._versions())
        elif request.path == TOKEN_PATH and request.method == "POST":
            response = self._token(request)
        elif (soap := SOAP_PATH.match(request.path)) and request.method == "POST":
            status, text = self.auth.soap_login(request.body, soap.group(1), self.instance_url)
            response = HttpResponse(status, text.encode(), "text/xml;charset=UTF-8")
        else:
            response = not_found()
        if fault is not None:
            self._shape(response, fault)
        return response

    def _take_fault(
        self, method: str, path: str, relative: str | None, soql: str = ""
    ) -> Fault | None:
        for fault in self.faults:
            if (
                not fault.exhausted
                and fault.matches(method, path, relative, soql)
                and fault.consume()
            ):
                return fault
        return None

    def _fault_response(self, fault: Fault) -> HttpResponse:
        kind = fault.kind
        if kind == "http_500":
            return error_response(
                500, "UNKNOWN_EXCEPTION", fault.message or "An unexpected error occurred."
            )
        if kind in ("http_502", "http_503", "http_504", "html_error"):
            status = {"http_502": 502, "http_503": 503, "http_504": 504, "html_error": 200}[kind]
            title = {
                502: b"502 Bad Gateway",
                503: b"503 Service Unavailable",
                504: b"504 Gateway Timeout",
                200: b"Maintenance",
            }[status]
            return HttpResponse(
                status, _HTML_PAGE.replace(b"{title}", title), "text/html;charset=UTF-8"
            )
        if kind == "server_unavailable":
            return error_response(
                503, "SERVER_UNAVAILABLE", fault.message or "Server temporarily unavailable."
            )
        if kind == "session_expired":
            self.auth.expire_all()
            return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if kind == "http_429":
            response = error_response(
                429, "REQUEST_LIMIT_EXCEEDED", fault.message or "Too many requests; slow down."
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            return response
        if kind == "empty_result":
            return json_response(200, {"totalSize": 0, "done": True, "records": []})
        if kind == "request_limit_exceeded":
            return error_response(
                403, "REQUEST_LIMIT_EXCEEDED", fault.message or "TotalRequests Limit exceeded."
            )
        # unable_to_lock_row, delay, disconnect and malformed_json only shape processed requests.
        raise ValueError(f"fault {kind} must reach the org")

    def _shape(self, response: HttpResponse, fault: Fault) -> None:
        if fault.kind == "delay":
            response.delay = fault.seconds
        elif fault.kind == "disconnect":
            response.disconnect = True
            if len(response.body) < 2:
                response.body = b'{"truncated": true, "padding": "' + b"x" * 64 + b'"}'
        elif fault.kind == "malformed_json":
            body = response.body or b'{"records": []}'
            response.status = 200
            response.content_type = JSON_TYPE
            response.body = body[: max(1, len(body) // 2)]
        elif fault.kind != "unable_to_lock_row":  # a "no reach" kind forced to reach the org
            replacement = self._fault_response(fault)
            response.status, response.body = replacement.status, replacement.body
            response.content_type = replacement.content_type

    def _limit_header(self, response: HttpResponse, counted: bool) -> HttpResponse:
        if counted:
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
        return response

    # --- logins -----------------------------------------------------------------------------

    def _token(self, request: HttpRequest) -> HttpResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        try:
            payload = self.auth.token(form, request.headers.get("authorization"), self.instance_url)
        except AuthError as exc:
            return json_response(400, {"error": exc.error, "error_description": exc.description})
        return json_response(200, payload)

    def _versions(self) -> list[dict[str, str]]:
        versions = sorted({"60.0", "61.0", "62.0", "63.0", "64.0", self.api_version}, key=float)
        return [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in versions]

    # --- REST data API ----------------------------------------------------------------------

    def _data(
        self, request: HttpRequest, version: str, relative: str, fault: Fault | None
    ) -> HttpResponse:
        if not self.auth.valid(request.headers.get("authorization")):
            return self._limit_header(
                error_response(401, "INVALID_SESSION_ID", "Session expired or invalid"), True
            )
        if self.api_used >= self.api_limit:
            return self._limit_header(
                error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), True
            )
        self.api_used += 1
        ctx = WriteContext(True, request.method, request.path)
        try:
            response = self._route(request, version, relative, fault, ctx)
        except ApiError as exc:
            response = json_response(exc.status, exc.body())
        except RecordError as exc:
            response = json_response(
                400, [{"message": exc.message, "errorCode": exc.code, "fields": exc.fields}]
            )
        except SoqlError as exc:
            response = error_response(400, exc.code, exc.message)
        return self._limit_header(response, True)

    def _route(
        self,
        request: HttpRequest,
        version: str,
        relative: str,
        fault: Fault | None,
        ctx: WriteContext,
    ) -> HttpResponse:
        parts = [p for p in relative.split("/") if p]
        method = request.method
        head = parts[0] if parts else ""
        if not parts:
            return allow(method, "GET") or json_response(200, self._resources(version))
        if head in ("query", "queryAll") and len(parts) <= 2:
            return allow(method, "GET") or self._query(request, version, head, parts[1:])
        if head == "limits":
            if parts[1:] == ["recordCount"]:
                return allow(method, "GET") or self._record_count(request)
            return allow(method, "GET") or json_response(200, self._limits())
        if head == "sobjects":
            return self._sobjects(request, version, parts[1:], fault, ctx)
        if parts[:2] == ["composite", "sobjects"]:
            return self._collections(request, version, parts[2:], fault, ctx)
        if parts[:2] == ["jobs", "query"]:
            return self.bulk.handle(request, version, parts[2:])
        return not_found()

    def _resources(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        names = ["sobjects", "query", "queryAll", "limits", "composite", "jobs/query"]
        return {name.split("/")[0]: f"{base}/{name}" for name in names}

    def _limits(self) -> dict[str, dict[str, int]]:
        jobs = len(self.bulk.jobs)
        return {
            "DailyApiRequests": {
                "Max": self.api_limit,
                "Remaining": max(0, self.api_limit - self.api_used),
            },
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - jobs},
            "DailyBulkV2QueryFileStorageMB": {"Max": 1048576, "Remaining": 1048576},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        }

    def _record_count(self, request: HttpRequest) -> HttpResponse:
        wanted = [n for n in (request.param("sObjects") or "").split(",") if n]
        names = [self.org.object(n).name for n in wanted] if wanted else list(self.org.objects)
        counts = [
            {"count": sum(1 for _ in self.org.rows(name, False)), "name": name} for name in names
        ]
        return json_response(200, {"sObjects": counts})

    # --- queries ----------------------------------------------------------------------------

    def _batch_size(self, request: HttpRequest) -> int:
        size = 2000
        options = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", options)
        if found:
            size = min(2000, max(200, int(found.group(1))))
        return max(1, min(size, self.page_size))

    def _query(
        self, request: HttpRequest, version: str, endpoint: str, rest: list[str]
    ) -> HttpResponse:
        if rest:
            return self._query_more(version, endpoint, rest[0])
        text = request.param("q")
        if text is None:
            return error_response(400, "MALFORMED_QUERY", "The 'q' parameter is required")
        bound = compile_query(text, self.org.objects)
        rows = execute(
            bound, self.org.rows(bound.sobject.name, endpoint == "queryAll"), self.org.live
        )
        if bound.count_only:
            return json_response(200, {"totalSize": len(rows), "done": True, "records": []})
        records = [render_json(bound, row, self.org.live, version) for row in rows]
        self._locators += 1
        cursor = Cursor(
            f"0r8EM{self._locators:013d}", bound.sobject.name, endpoint, records, len(records)
        )
        return self._query_page(cursor, 0, self._batch_size(request), version)

    def _query_page(self, cursor: Cursor, offset: int, size: int, version: str) -> HttpResponse:
        chunk, next_offset = page(cursor.records, offset, size)
        payload: dict[str, Any] = {"totalSize": cursor.total, "done": next_offset is None}
        if (
            next_offset is not None
        ):  # cursors stay until expire_query_cursors(): pages can be retried
            self.cursors[cursor.locator] = cursor
            cursor.page_size = size
            payload["nextRecordsUrl"] = (
                f"/services/data/v{version}/{cursor.endpoint}/{cursor.locator}-{next_offset}"
            )
        payload["records"] = chunk
        return json_response(200, payload)

    def _query_more(self, version: str, endpoint: str, token: str) -> HttpResponse:
        locator, _, offset_text = token.partition("-")
        cursor = self.cursors.get(locator)
        if cursor is None or not offset_text.isdigit():
            return error_response(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._query_page(cursor, int(offset_text), cursor.page_size, version)

    # --- sObject resources ------------------------------------------------------------------

    def _sobjects(
        self,
        request: HttpRequest,
        version: str,
        parts: list[str],
        fault: Fault | None,
        ctx: WriteContext,
    ) -> HttpResponse:
        method = request.method
        if not parts:
            return allow(method, "GET") or json_response(
                200, global_describe(self.org.objects.values(), version)
            )
        definition = self.org.object(parts[0])
        if len(parts) == 1:
            if method == "GET":
                return json_response(
                    200,
                    {
                        "objectDescribe": object_summary(definition, version),
                        "recentItems": [],
                    },
                )
            return allow(method, "POST") or self._create_one(request, definition, fault, ctx)
        action = parts[1]
        if len(parts) == 2 and action == "describe":
            return allow(method, "GET") or json_response(200, describe(definition, version))
        if len(parts) == 2 and action in ("updated", "deleted"):
            return allow(method, "GET") or self._replication(request, definition, action)
        if len(parts) == 2:
            return self._one_record(request, version, definition, action, fault, ctx)
        return not_found()

    def _create_one(
        self, request: HttpRequest, definition: ObjectDef, fault: Fault | None, ctx: WriteContext
    ) -> HttpResponse:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
        values, problem = self.org.read_fields(definition, body, ctx, creating=True)
        if problem is not None:
            raise problem
        if fault is not None and fault.kind == "unable_to_lock_row":
            raise RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", []
            )
        new_id = self.org.insert(definition.name, values, ctx)
        return json_response(201, {"id": new_id, "success": True, "errors": []})

    def _one_record(
        self,
        request: HttpRequest,
        version: str,
        definition: ObjectDef,
        record_id: str,
        fault: Fault | None,
        ctx: WriteContext,
    ) -> HttpResponse:
        method = request.method
        rec = self.org.find(record_id)
        if rec is None or rec.sobject != definition.name or self.org.purged(rec):
            return not_found()
        if method == "GET":
            if rec.deleted_at is not None:
                return not_found()
            names = [n for n in (request.param("fields") or "").split(",") if n]
            fields = self._visible_fields(definition, names)
            payload: dict[str, Any] = {
                "attributes": {"type": rec.sobject, "url": record_url(version, rec.sobject, rec.id)}
            }
            payload.update({f.name: to_json_value(rec.values.get(f.name)) for f in fields})
            return json_response(200, payload)
        if rec.deleted_at is not None:
            return error_response(404, "ENTITY_IS_DELETED", "entity is deleted")
        if method == "PATCH":
            body = request.json()
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
            values, problem = self.org.read_fields(definition, body, ctx, creating=False)
            if problem is not None:
                raise problem
            if fault is not None and fault.kind == "unable_to_lock_row":
                raise RecordError(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {rec.id}",
                    [],
                )
            self.org.update(rec.id, values, ctx)
            return HttpResponse(204)
        if method == "DELETE":
            if fault is not None and fault.kind == "unable_to_lock_row":
                raise RecordError(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {rec.id}",
                    [],
                )
            self.org.delete(rec.id, ctx)
            return HttpResponse(204)
        return allow(method, "GET", "PATCH", "DELETE") or HttpResponse(204)

    @staticmethod
    def _visible_fields(definition: ObjectDef, names: list[str]) -> list[FieldDef]:
        if not names:
            return [f for f in definition.fields.values() if f.readable]
        fields = []
        for name in names:
            found = definition.readable_field(name.strip())
            if found is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on sobject of type {definition.name}",
                )
            fields.append(found)
        return fields

    def _replication(
        self, request: HttpRequest, definition: ObjectDef, action: str
    ) -> HttpResponse:
        try:
            start = parse_datetime(request.param("start") or "")
            end = parse_datetime(request.param("end") or "")
        except ValueError as exc:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", f"start and end must be ISO 8601 datetimes: {exc}"
            ) from exc
        if action == "updated":
            ids, latest = self.org.updated_ids(definition.name, start, end)
            return json_response(200, {"ids": ids, "latestDateCovered": format_datetime(latest)})
        found, earliest, latest = self.org.deleted_records(definition.name, start, end)
        return json_response(
            200,
            {
                "deletedRecords": [
                    {"id": i, "deletedDate": format_datetime(when)} for i, when in found
                ],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest),
            },
        )

    # --- sObject Collections ----------------------------------------------------------------

    def _collections(
        self,
        request: HttpRequest,
        version: str,
        rest: list[str],
        fault: Fault | None,
        ctx: WriteContext,
    ) -> HttpResponse:
        method = request.method
        if method == "GET" and len(rest) == 1:
            return self._collection_retrieve(request, version, self.org.object(rest[0]))
        if rest and not (method == "DELETE" and len(rest) == 1):
            return not_found()
        if method == "DELETE":
            return self._collection_delete(request, fault, ctx)
        if method not in ("POST", "PATCH"):
            return allow(method, "POST", "PATCH", "DELETE") or HttpResponse(204)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected an object with a 'records' array")
        records: list[Any] = body["records"]
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = bool(body.get("allOrNone", False))
        creating = method == "POST"
        prepared = []
        for item in records:
            if not isinstance(item, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
            sobject = (item.get("attributes") or {}).get("type")
            if not sobject:
                raise ApiError(
                    400, "INVALID_TYPE", "No SObject Type defined in the record's attributes"
                )
            try:
                definition = self.org.object(sobject)
            except ApiError as exc:
                raise ApiError(
                    400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported."
                ) from exc
            values, problem = self.org.read_fields(definition, item, ctx, creating=creating)
            record_id = item.get("id", item.get("Id"))
            prepared.append((definition, values, problem, record_id))
        with self.org.transaction():
            results: list[dict[str, Any]] = []
            for index, (definition, values, problem, record_id) in enumerate(prepared):
                result: dict[str, Any] = {} if creating else {"id": record_id}
                try:
                    if problem is not None:
                        raise problem
                    if creating and record_id is not None:
                        raise RecordError(
                            "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                        )
                    if not creating and not record_id:
                        raise RecordError(
                            "MISSING_ARGUMENT", "Id not specified in an update call", []
                        )
                    if (
                        fault is not None
                        and fault.kind == "unable_to_lock_row"
                        and fault.locks(index)
                    ):
                        locked = values.get("CampaignId") or record_id or "the parent record"
                        raise RecordError(
                            "UNABLE_TO_LOCK_ROW",
                            f"unable to obtain exclusive access to this record or 1 records: {locked}",
                            [],
                        )
                    if creating:
                        result["id"] = self.org.insert(definition.name, values, ctx)
                    else:
                        target = self.org.target(str(record_id), expected_type=definition.name)
                        result["id"] = target.id
                        self.org.update(target.id, values, ctx)
                    result.update(success=True, errors=[])
                except RecordError as exc:
                    result.update(success=False, errors=[exc.entry()])
                results.append(result)
            finished = self._finish(results, all_or_none, keep_ids=not creating)
        return json_response(200, finished)

    def _finish(
        self, results: list[dict[str, Any]], all_or_none: bool, keep_ids: bool
    ) -> list[dict[str, Any]]:
        if not all_or_none or all(r["success"] for r in results):
            self.org.commit()
            return results
        self.org.rollback()
        rolled_back = {
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
            "fields": [],
        }
        finished = []
        for result in results:
            if result["success"]:
                entry: dict[str, Any] = {"id": result["id"]} if keep_ids else {}
                entry.update(success=False, errors=[dict(rolled_back)])
                finished.append(entry)
            else:
                finished.append(result)
        return finished

    def _collection_delete(
        self, request: HttpRequest, fault: Fault | None, ctx: WriteContext
    ) -> HttpResponse:
        ids = [i for i in (request.param("ids") or "").split(",") if i]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = (request.param("allOrNone") or "false").lower() == "true"
        with self.org.transaction():
            results: list[dict[str, Any]] = []
            for index, record_id in enumerate(ids):
                result: dict[str, Any] = {"id": record_id}
                try:
                    if (
                        fault is not None
                        and fault.kind == "unable_to_lock_row"
                        and fault.locks(index)
                    ):
                        raise RecordError(
                            "UNABLE_TO_LOCK_ROW",
                            f"unable to obtain exclusive access to this record or 1 records: {record_id}",
                            [],
                        )
                    target = self.org.target(record_id)
                    result["id"] = target.id
                    self.org.delete(target.id, ctx)
                    result.update(success=True, errors=[])
                except RecordError as exc:
                    result.update(success=False, errors=[exc.entry()])
                results.append(result)
            finished = self._finish(results, all_or_none, keep_ids=True)
        return json_response(200, finished)

    def _collection_retrieve(
        self, request: HttpRequest, version: str, definition: ObjectDef
    ) -> HttpResponse:
        ids = [i for i in (request.param("ids") or "").split(",") if i]
        names = [n for n in (request.param("fields") or "").split(",") if n]
        if not ids or not names:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
        if len(ids) > 2000:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 2000 records into this call",
            )
        fields = self._visible_fields(definition, names)
        out: list[dict[str, Any] | None] = []
        for record_id in ids:
            rec = self.org.find(record_id)
            if rec is None or rec.deleted_at is not None or rec.sobject != definition.name:
                out.append(None)
                continue
            item: dict[str, Any] = {
                "attributes": {"type": rec.sobject, "url": record_url(version, rec.sobject, rec.id)}
            }
            item.update({f.name: to_json_value(rec.values.get(f.name)) for f in fields})
            out.append(item)
        return json_response(200, out)
