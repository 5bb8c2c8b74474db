"""HTTP errors: the one JSON error shape, and the status each domain error maps to."""

from __future__ import annotations

from aiohttp import web

from api.responses import json_response
from projections.errors import DomainError

STATUS_OF_CODE = {
    "email_taken": 409,
    "already_voted": 409,
    "poll_closed": 409,
    "poll_not_open": 409,
    "idempotency_key_reused": 409,
    "unknown_poll": 404,
    "unknown_candidate": 404,
    "unknown_user": 401,
    "not_eligible": 403,
    "results_not_open": 403,
    "invalid_polls_file": 400,
    "invalid_fields": 400,
}


class ApiError(Exception):
    """An error answered as it is: status, stable code, message, and the invalid fields."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}


def from_domain(error: DomainError) -> ApiError:
    """The HTTP face of a refused command."""
    return ApiError(STATUS_OF_CODE.get(error.code, 400), error.code, error.message, dict(error.fields))


def error_response(error: ApiError, request_id: str | None = None) -> web.Response:
    """``{"error": {"code", "message", "fields"}}`` with the error's status."""
    body: dict[str, object] = {"code": error.code, "message": error.message, "fields": error.fields}
    if request_id:
        body["requestId"] = request_id
    return json_response({"error": body}, status=error.status, headers=error.headers)
