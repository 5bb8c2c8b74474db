"""CORS for frontends on other origins: ``*`` by default, preflights answered on every route.

A small middleware rather than aiohttp-cors: the contract wants ``Access-Control-Allow-Origin: *``
by default (aiohttp-cors always reflects the caller's origin), preflights that succeed on any path
without a token, and CORS headers on error answers too, so a frontend can read a 401 and open its
login form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aiohttp import web

from api.middlewares import Handler

ALLOWED_METHODS = "GET, POST, OPTIONS"
DEFAULT_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
EXPOSED_HEADERS = "X-Request-Id, Retry-After"
CORS_HEADERS = web.RequestKey("cors_headers", dict[str, str])
"""The CORS headers of the request's answer, for a handler that sends its headers itself (a stream)."""
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


def cors_middleware(origins: Sequence[str]) -> web.middleware:  # type: ignore[valid-type]
    """A middleware allowing ``origins`` (``*`` allows any)."""
    any_origin = "*" in origins
    allowed = frozenset(origins)

    def allow(origin: str, headers: dict[str, str]) -> bool:
        if any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
            return True
        headers["Vary"] = "Origin"
        if origin in allowed:
            headers["Access-Control-Allow-Origin"] = origin
            return True
        return False

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        headers: dict[str, str] = {}
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if allow(origin, headers):
                requested = request.headers.get("Access-Control-Request-Headers", "").strip()
                headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                headers["Access-Control-Allow-Headers"] = (
                    requested if requested and _HEADER_LIST.match(requested) else DEFAULT_HEADERS
                )
                headers["Access-Control-Max-Age"] = "3600"
            return web.Response(status=204, headers=headers)
        if allow(origin, headers):
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        request[CORS_HEADERS] = headers
        response = await handler(request)
        response.headers.update(headers)
        return response

    return cors
