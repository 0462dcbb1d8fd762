"""Plain request / response values passed between the emulator's socket side and its router."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .salesforce_store import ApiError

JSON_TYPE = "application/json;charset=UTF-8"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    disconnect: bool = False  # send half the body, then close the connection


@dataclass
class RecordedRequest:
    """One request as the emulator saw it (tests read these)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    relative: str | None  # path after /services/data/vXX.X/, None for other paths
    status: int = 0
    fault: str | None = None  # the kind of the injected fault that hit this request

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def is_write(self) -> bool:
        return (
            self.method in WRITE_METHODS
            and self.relative is not None
            and self.relative.startswith(("sobjects", "composite", "jobs/ingest"))
        )


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(status, json.dumps(payload).encode(), JSON_TYPE, dict(headers or {}))


def error_response(status: int, code: str, message: str) -> HttpResponse:
    return json_response(status, [{"message": message, "errorCode": code}])


def not_found() -> HttpResponse:
    return error_response(404, "NOT_FOUND", "The requested resource does not exist")


def allow(method: str, *allowed: str) -> HttpResponse | None:
    """None if `method` is allowed, else the 405 Salesforce answers."""
    if method in allowed:
        return None
    return error_response(
        405,
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}",
    )
