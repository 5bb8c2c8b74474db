"""The HTTP server around the app: aiohttp's, with a request handler of its own.

Requests that aiohttp's parser refuses (a header line over 8,190 bytes, more than 128 headers, a
bad chunk size, Content-Length beside Transfer-Encoding...) never reach the app or its middlewares:
aiohttp's request handler answers them itself, in plain text that quotes the client's bytes, and
logs a traceback each. ``Protocol`` answers them in the one JSON error shape, quoting nothing, and
logs one line per rejection (aio-libs/aiohttp#3287 asks for a hook; there is none). It overrides
``aiohttp.web_protocol.RequestHandler.handle_error`` and ``log_access``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from api.errors import ApiError, error_response
from api.settings import Settings

log = logging.getLogger("vote_ledger.server")

# aiohttp's messages for its parser's rejections, first line only (the rest quotes the input), and
# what the client is told instead
_KNOWN_REJECTIONS = (
    ("Too many headers", "more header fields than the server reads (128)"),
    ("Content-Length can't be present with Transfer-Encoding",
     "both Content-Length and Transfer-Encoding, which could be read two ways"),
    ("Invalid character in chunk size", "a chunk size that is not a hexadecimal number"),
    ("Received HTTPS traffic on an HTTP port", "TLS on a plain HTTP port"),
)


def rejection_reason(exc: BaseException | None, limit: int) -> str:
    """What was wrong with a request aiohttp's parser refused, in words that quote none of it."""
    if isinstance(exc, LineTooLong):
        return f"a request line or header field over {limit} bytes"
    first = exc.message.split("\n", 1)[0] if isinstance(exc, HttpProcessingError) else ""
    for prefix, reason in _KNOWN_REJECTIONS:
        if first.startswith(prefix):
            return reason
    if isinstance(exc, BadHttpMethod):
        return "a request that is not HTTP"
    if isinstance(exc, BadStatusLine):
        return "a malformed request line"
    if isinstance(exc, InvalidURLError):
        return "a request target that is not a URL"
    if isinstance(exc, InvalidHeader):
        return "a malformed header field"
    if isinstance(exc, PayloadEncodingError):
        return "a malformed body encoding"
    return "a request that is not valid HTTP/1.1"


class Protocol(web.RequestHandler):
    """aiohttp's request handler, answering its parser's rejections as the app answers errors."""

    __slots__ = ("_rejected",)

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._rejected: web.BaseRequest | None = None

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp's: the answer has begun, the connection is lost
            raise ConnectionError("the response was already begun; cannot send an error after it")
        if status >= 500:
            # not the parser: something failed outside every middleware, which catch all else
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            error = ApiError(status, "internal_error", "something went wrong")
        else:
            reason = rejection_reason(exc, max(self.max_line_size, self.max_field_size))
            log.info("refused a request from %s: %s (%s)", request.remote, reason, type(exc).__name__)
            error = ApiError(status, "malformed_request", f"the request was refused: {reason}")
            self._rejected = request  # its line is the one above, not an access line besides
        response = error_response(error)
        response.force_close()
        return response

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        if request is not self._rejected:
            super().log_access(request, response, time)


class JsonErrorServer(web.Server):
    """aiohttp's low-level server, with ``Protocol`` for its connections."""

    def __call__(self) -> Protocol:
        return Protocol(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An ``AppRunner`` whose server is a ``JsonErrorServer``."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return JsonErrorServer(
            made.request_handler, request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation, loop=asyncio.get_running_loop(),
            **made._kwargs,
        )


def serve(app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger]) -> None:
    """Run the app until SIGINT or SIGTERM, then shut down gracefully (as ``web.run_app`` does)."""
    asyncio.run(_serve(app, settings, access_log_class))


async def _serve(
    app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = Runner(app, access_log_class=access_log_class, shutdown_timeout=30)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)", file=sys.stderr)
        await stop.wait()
    finally:
        await runner.cleanup()
