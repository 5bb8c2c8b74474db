"""The OpenAPI 3 document, generated from the request and response schemas, and its docs page.

The Swagger UI assets are served by the service itself (from the ``swagger-ui-bundle`` package), so
the docs page works with no internet.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import swagger_ui_bundle
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from api.errors import ApiError
from api.page import IndexSchema
from api.responses import json_bytes_response
from api.schemas import (
    CheckpointQuerySchema,
    ConsistencyProofSchema,
    ConsistencyQuerySchema,
    EraseMeSchema,
    ErrorSchema,
    HealthSchema,
    InclusionProofSchema,
    InclusionQuerySchema,
    LegacyCandidateSchema,
    LegacyLoginSchema,
    LegacySignupSchema,
    LegacyVoteQuerySchema,
    LegacyVoteSchema,
    LoginResponseSchema,
    LoginSchema,
    LogKeySchema,
    LogoutQuerySchema,
    MeSchema,
    PollListSchema,
    PollSchema,
    ReceiptListSchema,
    ResultsQuerySchema,
    ResultsSchema,
    TokenCheckSchema,
    TokenQuerySchema,
    UserCreateSchema,
    UserSchema,
    VoteRequestSchema,
    VoteResponseSchema,
)
from api.stream import StreamQuerySchema

ERROR_TEXT = {
    400: "Malformed body, missing or invalid field, bad query parameter",
    401: "Missing, malformed, expired or forged token; wrong email or password",
    403: "Not eligible, or results not visible yet",
    404: "Unknown poll, candidate or checkpoint",
    409: "Email taken, already voted, poll closed or not open",
    413: "Body over the size limit",
    415: "The body is not JSON",
    429: "Too many failed logins, or signups, from this client (see Retry-After)",
    503: "The ledger cannot take writes right now, or too many password checks are waiting "
         "(see Retry-After)",
}


@dataclass
class Operation:
    """One documented route."""

    method: str
    path: str
    summary: str
    ok: int
    response: type[Schema] | Schema | dict[str, Any] | None
    body: type[Schema] | None = None
    form: type[Schema] | None = None
    query: type[Schema] | None = None
    auth: bool = False
    errors: list[int] = field(default_factory=list)
    tag: str = "JSON API"
    media: str = "application/json"
    parameters: list[dict[str, Any]] = field(default_factory=list)  # besides pollId, the query and bodies
    also: dict[str, Any] = field(default_factory=dict)  # the answer's other media types: their schemas


POLL_ID = {"in": "path", "name": "pollId", "required": True, "schema": {"type": "string"}}
TEXT = {"type": "string"}
STREAM_EVENTS = {"type": "string", "description": (
    "`text/event-stream`. A `results` event (its `id` the ledger position its totals count up to; its "
    "data the results route's answer plus the poll's `status`) at once and at every change; or, while "
    "the caller may not see the results, one `hidden` event (an empty `id`; its data `pollId`, `asOf`, "
    "`status` and the results route's 403 `error`), followed by the results once they open. A "
    "`: keep-alive` comment every 15 s. Browsers pass the token as `?token=`, since an EventSource "
    "cannot send Authorization."
)}

OPERATIONS = [
    Operation("post", "/api/v1/users", "Sign up", 201, UserSchema, body=UserCreateSchema,
              errors=[400, 409, 413, 415, 429, 503]),
    Operation("post", "/api/v1/auth/login", "Log in", 200, LoginResponseSchema, body=LoginSchema,
              errors=[400, 401, 413, 415, 429, 503]),
    Operation("post", "/api/v1/auth/logout", "Log out this token, or every token (?everywhere=true)",
              204, None, query=LogoutQuerySchema, auth=True, errors=[400, 401, 503]),
    Operation("get", "/api/v1/me", "The caller and their ballots", 200, MeSchema, auth=True,
              errors=[401]),
    Operation("delete", "/api/v1/me", "Erase the caller's personal data (their votes stay)", 204, None,
              body=EraseMeSchema, auth=True, errors=[400, 401, 413, 415, 503]),
    Operation("get", "/api/v1/polls", "Every poll", 200, PollListSchema),
    Operation("get", "/api/v1/polls/{pollId}", "One poll", 200, PollSchema, errors=[404]),
    Operation("post", "/api/v1/polls/{pollId}/votes", "Vote (optionally with Idempotency-Key)", 201,
              VoteResponseSchema, body=VoteRequestSchema, auth=True,
              errors=[400, 401, 403, 404, 409, 413, 415, 503]),
    Operation("get", "/api/v1/polls/{pollId}/results", "Results, now or as of a ledger position", 200,
              ResultsSchema, query=ResultsQuerySchema, errors=[400, 401, 403, 404]),
    Operation("get", "/api/v1/me/receipts", "The caller's vote receipts, one per vote", 200,
              ReceiptListSchema, auth=True, errors=[401], tag="Verifiable log"),
    Operation("get", "/api/v1/log/checkpoint", "The latest signed checkpoint, or the one of ?size=N", 200,
              None, query=CheckpointQuerySchema, errors=[400, 404], tag="Verifiable log",
              media="text/plain"),
    Operation("get", "/api/v1/log/key", "The verifier key checkpoints are signed with", 200, LogKeySchema,
              tag="Verifiable log"),
    Operation("get", "/api/v1/log/proof/inclusion", "Proof that the event at seq is in the tree of size",
              200, InclusionProofSchema, query=InclusionQuerySchema, errors=[400], tag="Verifiable log"),
    Operation("get", "/api/v1/log/proof/consistency", "Proof that the tree of to extends the tree of from",
              200, ConsistencyProofSchema, query=ConsistencyQuerySchema, errors=[400],
              tag="Verifiable log"),
    Operation("get", "/healthz", "Whether the ledger takes writes", 200, HealthSchema, errors=[503],
              tag="Operations"),
    Operation("get", "/openapi.json", "This document", 200, {"type": "object"}, tag="Operations"),
    Operation("get", "/docs", "The browsable docs page", 200, None, tag="Operations", media="text/html"),
    Operation("get", "/docs/init.js", "The docs page's start-up script", 200, None, tag="Operations",
              media="application/javascript"),
    Operation("post", "/auth/signup", "Sign up (2020 route; form or JSON)", 201, UserSchema,
              form=LegacySignupSchema, errors=[400, 409, 413, 429, 503], tag="Legacy 2020 routes"),
    Operation("post", "/auth/login", "Log in (2020 route): the bare JWT as text", 200, None,
              form=LegacyLoginSchema, errors=[400, 401, 413, 429, 503], tag="Legacy 2020 routes",
              media="text/plain"),
    Operation("get", "/auth/token", "Check a token (?token= or Authorization)", 200, TokenCheckSchema,
              query=TokenQuerySchema, errors=[400, 401], tag="Legacy 2020 routes"),
    Operation("get", "/candidates", "The legacy poll's candidates and vote counts", 200,
              LegacyCandidateSchema(many=True), tag="Legacy 2020 routes"),
    Operation("get", "/vote", "Vote in the legacy poll: ?id=N", 200, LegacyVoteSchema,
              query=LegacyVoteQuerySchema, auth=True, errors=[400, 401, 403, 404, 409, 503],
              tag="Legacy 2020 routes"),
    Operation("get", "/api/v1/polls/{pollId}/results/stream",
              "Live results as Server-Sent Events: now, then at every change", 200, STREAM_EVENTS,
              query=StreamQuerySchema, errors=[400, 401, 404, 503], tag="JSON API", media="text/event-stream",
              parameters=[{"in": "header", "name": "Last-Event-ID", "schema": TEXT, "description":
                           "The id of the last event received (a ledger position): only later changes "
                           "are sent. An EventSource sends it by itself when it reconnects."}]),
    Operation("get", "/", "The web page; for a client that asks for JSON, the links to the API", 200,
              None, tag="Web page", media="text/html", also={"application/json": IndexSchema}),
    Operation("get", "/polls/{pollId}", "The web page, at one poll", 200, None, errors=[404],
              tag="Web page", media="text/html"),
    Operation("get", "/polls/{pollId}/screen", "A poll's projector view: live results, large, no controls",
              200, None, errors=[404], tag="Web page", media="text/html"),
    Operation("get", "/assets/{name}", "A file of the web page (a script, its style sheet, its icon)", 200,
              None, errors=[404], tag="Web page", media="text/javascript",
              also={"text/css": TEXT, "image/svg+xml": TEXT},
              parameters=[{"in": "path", "name": "name", "required": True, "schema": TEXT}]),
]


def _operation(op: Operation) -> dict[str, Any]:
    content_type = op.media
    schema: Any = op.response if op.response is not None else TEXT
    spec: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {str(op.ok): {"description": "OK", "content": {content_type: {"schema": schema}}}},
    }
    spec["responses"][str(op.ok)]["content"].update({media: {"schema": s} for media, s in op.also.items()})
    if op.ok == 204:
        spec["responses"]["204"] = {"description": "Done; no content"}
    for status in op.errors:
        spec["responses"][str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": ErrorSchema}},
        }
    parameters: list[Any] = [POLL_ID] if "{pollId}" in op.path else []
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    parameters += op.parameters
    if op.path.endswith("/votes") or op.path == "/vote":
        parameters.append({"in": "header", "name": "Idempotency-Key", "schema": TEXT,
                           "description": "Retrying with the same key returns the original vote."})
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    if op.form is not None:
        spec["requestBody"] = {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": op.form},
            "application/json": {"schema": op.form},
        }}
    if op.auth:
        spec["security"] = [{"bearer": []}]
    return spec


@functools.cache
def build_spec() -> dict[str, Any]:
    """The OpenAPI 3 document of every route."""
    spec = APISpec(
        title="vote-ledger",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "A vote service whose result anyone can check: every signup and vote "
                             "is an event in a hash-chained, append-only ledger."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document: dict[str, Any] = spec.to_dict()
    return document


ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vote-ledger API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""
# validatorUrl: null keeps the page from asking validator.swagger.io about the document
DOCS_INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs", validatorUrl: null});\n'

@functools.cache
def _encoded_spec() -> bytes:
    """The document as served: encoded once."""
    return msgspec.json.encode(build_spec())


routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_bytes_response(_encoded_spec())


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


@routes.get("/docs/init.js")
async def docs_init(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_INIT, content_type="application/javascript")


ASSET_TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png"}
ASSET_NAMES = frozenset(p.name for p in ASSETS.iterdir() if p.suffix in ASSET_TYPES and p.is_file())


@routes.get("/docs/assets/{name}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """A Swagger UI file from the installed bundle (only plain file names, only known types)."""
    name = request.match_info["name"]
    if name not in ASSET_NAMES:
        raise ApiError(404, "not_found", "no such docs asset")
    path = ASSETS / name
    return web.Response(body=path.read_bytes(), content_type=ASSET_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=86400"})
