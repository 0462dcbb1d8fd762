"""Bulk API 2.0 query jobs for the Salesforce emulator.

``POST jobs/query`` runs the SOQL at once (a snapshot) and answers ``UploadComplete``; each
``GET jobs/query/{id}`` poll advances the job, to ``JobComplete`` after
`polls_before_complete` polls (0: the first poll). ``GET .../results`` pages the CSV with
``maxRecords`` and the ``Sforce-Locator`` header (base64 of the next offset, ``null`` at the
end) plus ``Sforce-NumberOfRecords``. Every value is quoted; nulls are empty strings.
PATCH ``{"state": "Aborted"}``, DELETE and GET ``jobs/query`` (list) are there too.
COUNT() and OFFSET are refused, as Bulk 2.0 does.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from .salesforce_schema import format_datetime, to_csv_value
from .salesforce_soql import compile_query, execute, render_flat
from .salesforce_store import ApiError, Org
from .salesforce_wire import HttpRequest, HttpResponse, allow, json_response, not_found

DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}


@dataclass
class BulkQueryJob:
    id: str
    operation: str
    sobject: str
    created: dt.datetime
    api_version: str
    columns: list[str]
    rows: list[list[str]]
    column_delimiter: str
    line_ending: str
    state: str = "UploadComplete"
    polls: int = 0


class BulkQueries:
    """The jobs/query resource tree."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.jobs: dict[str, BulkQueryJob] = {}
        self.polls_before_complete = 0

    def handle(self, request: HttpRequest, version: str, rest: list[str]) -> HttpResponse:
        method = request.method
        if not rest:
            if method == "POST":
                return self._create(request, version)
            infos = [self._info(job) for job in self.jobs.values()]
            return allow(method, "GET", "POST") or json_response(
                200, {"done": True, "records": infos, "nextRecordsUrl": None}
            )
        job = self.jobs.get(rest[0])
        if job is None or len(rest) > 2 or (len(rest) == 2 and rest[1] != "results"):
            return not_found()
        if len(rest) == 2:
            return allow(method, "GET") or self._results(request, job)
        if method == "GET":
            self._poll(job)
            return json_response(200, self._info(job))
        if method == "PATCH":
            body = request.json()
            if not isinstance(body, dict) or body.get("state") != "Aborted":
                raise ApiError(400, "INVALIDJOBSTATE", "Query jobs can only be set to Aborted")
            if job.state == "JobComplete":
                raise ApiError(400, "INVALIDJOBSTATE", "Job is already complete")
            job.state = "Aborted"
            return json_response(200, self._info(job))
        if method == "DELETE":
            del self.jobs[job.id]
            return HttpResponse(204)
        return allow(method, "GET", "PATCH", "DELETE") or HttpResponse(204)

    def _poll(self, job: BulkQueryJob) -> None:
        if job.state not in ("UploadComplete", "InProgress"):
            return
        job.polls += 1
        job.state = "JobComplete" if job.polls > self.polls_before_complete else "InProgress"

    def _create(self, request: HttpRequest, version: str) -> HttpResponse:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(
                400, "INVALIDJOB", f"Unsupported operation {operation!r} for a query job"
            )
        delimiter = body.get("columnDelimiter", "COMMA")
        line_ending = body.get("lineEnding", "LF")
        if delimiter not in DELIMITERS or line_ending not in ("LF", "CRLF"):
            raise ApiError(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
        bound = compile_query(str(body.get("query") or ""), self.org.objects)
        if bound.count_only or bound.query.offset is not None:
            raise ApiError(
                400, "INVALIDJOB", "Bulk API 2.0 query jobs don't support COUNT() or OFFSET"
            )
        rows = execute(
            bound, self.org.rows(bound.sobject.name, operation == "queryAll"), self.org.live
        )
        job = BulkQueryJob(
            id=self.org.ids.next("750"),
            operation=operation,
            sobject=bound.sobject.name,
            created=self.org.now(),
            api_version=version,
            columns=[column.name for column in bound.columns],
            rows=[
                [to_csv_value(v) for v in render_flat(bound, row, self.org.live)] for row in rows
            ],
            column_delimiter=delimiter,
            line_ending=line_ending,
        )
        self.jobs[job.id] = job
        return json_response(200, self._info(job))

    def _info(self, job: BulkQueryJob) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.sobject,
            "createdById": self.org.user_id,
            "createdDate": format_datetime(job.created),
            "systemModstamp": format_datetime(job.created),
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.api_version),
            "jobType": "V2Query",
            "lineEnding": job.line_ending,
            "columnDelimiter": job.column_delimiter,
        }
        if job.state == "JobComplete":
            info.update(numberRecordsProcessed=len(job.rows), retries=0, totalProcessingTime=0)
        return info

    def _results(self, request: HttpRequest, job: BulkQueryJob) -> HttpResponse:
        if job.state != "JobComplete":
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Job {job.id} is not complete (state {job.state})"
            )
        locator = request.param("locator")
        offset = 0
        if locator:
            try:
                offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
            except (ValueError, binascii.Error) as exc:
                raise ApiError(400, "INVALID_LOCATOR", f"invalid locator {locator}") from exc
        wanted = request.param("maxRecords") or ""
        size = int(wanted) if wanted.isdigit() and int(wanted) > 0 else max(len(job.rows), 1)
        chunk = job.rows[offset : offset + size]
        next_offset = offset + len(chunk)
        buffer = io.StringIO()
        writer = csv.writer(
            buffer,
            delimiter=DELIMITERS[job.column_delimiter],
            lineterminator="\r\n" if job.line_ending == "CRLF" else "\n",
            quoting=csv.QUOTE_ALL,
        )
        writer.writerow(job.columns)
        writer.writerows(chunk)
        if next_offset < len(job.rows):
            next_locator = base64.b64encode(str(next_offset).encode()).decode().rstrip("=")
        else:
            next_locator = "null"
        headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(chunk))}
        return HttpResponse(200, buffer.getvalue().encode(), "text/csv;charset=UTF-8", headers)
