"""The web page: ``/`` (a JSON index of links for JSON clients), a poll's page, its projector view,
and their files (``api/web/``, shipped in the package: the page needs no network but this service).

The page is plain JavaScript modules and one style sheet, with no build step: what is in
``api/web/static`` is what the browser runs.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from marshmallow import Schema, fields

from api.errors import ApiError
from api.keys import LEDGER
from api.responses import json_response
from projections.queries import get_poll

WEB = Path(__file__).parent / "web"
STATIC = WEB / "static"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
INDEX = {"api": "/api/v1", "openapi": "/openapi.json", "docs": "/docs"}
LANGUAGES = ("ko", "en")
DEFAULT_LANGUAGE = "en"
# the page runs only its own files and talks only to this service
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Vary": "Accept, Accept-Language",
}


class IndexSchema(Schema):
    """Where a JSON client goes from ``/``."""

    api = fields.String(required=True, metadata={"example": INDEX["api"]})
    openapi = fields.String(required=True, metadata={"example": INDEX["openapi"]})
    docs = fields.String(required=True, metadata={"example": INDEX["docs"]})


@dataclass(frozen=True)
class Asset:
    """One file of the page, read once."""

    body: bytes
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """The page's files by name (only plain names in ``static``, only known types)."""
    found = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in TYPES:
            body = path.read_bytes()
            found[path.name] = Asset(body, TYPES[path.suffix], f'"{hashlib.sha256(body).hexdigest()[:20]}"')
    return found


@functools.cache
def template(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


def _weighted(header: str) -> list[tuple[str, float]]:
    """The values of an Accept-style header with their weights (malformed weights count as 0)."""
    values = []
    for part in header.split(","):
        value, *params = (p.strip() for p in part.split(";"))
        weight = 1.0
        for param in params:
            if param[:2].lower() == "q=":
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        if value:
            values.append((value.lower(), weight if 0.0 <= weight <= 1.0 else 0.0))
    return values


def wants_json(accept: str) -> bool:
    """Whether a client prefers JSON to HTML: a weight above HTML's, or as high and named
    outright where HTML only matches a wildcard (axios's ``application/json, text/plain, */*``).
    A browser, curl's ``*/*`` and no Accept at all get the page."""

    def rank(media: str) -> tuple[float, int]:
        kind = media.split("/")[0]
        best = (0.0, -1)
        for value, weight in _weighted(accept):
            exact = 2 if value == media else 1 if value == f"{kind}/*" else 0 if value == "*/*" else -1
            if exact >= 0 and exact > best[1]:
                best = (weight, exact)
        return best

    json_rank, html_rank = rank("application/json"), rank("text/html")
    return json_rank[0] > 0 and json_rank > html_rank


def language(accept_language: str) -> str:
    """The page's first language: the first of ``LANGUAGES`` the browser asks for, by weight."""
    for value, weight in sorted(_weighted(accept_language), key=lambda v: -v[1]):
        if weight > 0 and value.split("-")[0] in LANGUAGES:
            return value.split("-")[0]
    return DEFAULT_LANGUAGE


def _page(request: web.Request, name: str) -> web.Response:
    lang = language(request.headers.get("Accept-Language", ""))
    return web.Response(text=template(name).replace("{{lang}}", lang), content_type="text/html",
                        charset="utf-8", headers=PAGE_HEADERS)


routes = web.RouteTableDef()


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """The page; for a client that asks for JSON, where the API and its documents are."""
    if wants_json(request.headers.get("Accept", "")):
        return json_response(INDEX, headers={"Vary": "Accept"})
    return _page(request, "index.html")


@routes.get("/polls/{pollId}")
async def poll_page(request: web.Request) -> web.Response:
    """The page, opened at one poll."""
    get_poll(request.app[LEDGER].state, request.match_info["pollId"])
    return _page(request, "index.html")


@routes.get("/polls/{pollId}/screen")
async def screen(request: web.Request) -> web.Response:
    """The projector view: one poll's live results in large type, with no controls."""
    get_poll(request.app[LEDGER].state, request.match_info["pollId"])
    return _page(request, "screen.html")


@routes.get("/assets/{name}")
async def asset(request: web.Request) -> web.Response:
    """A file of the page; 304 when the client holds this version."""
    found = assets().get(request.match_info["name"])
    if found is None:
        raise ApiError(404, "not_found", "no such file")
    headers = {"ETag": found.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if found.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})
