"""The HTTP server around the app: aiohttp's, with two guards that its ``run_app`` has no hook for.

- **Parser rejections** (a header line over 8,190 bytes, more than 128 headers, a bad chunk size,
  Content-Length beside Transfer-Encoding...) never reach the app or its middlewares: aiohttp's
  request handler answers them itself, in plain text that quotes the client's bytes, and logs a
  traceback each. ``Protocol`` answers them in the one JSON error shape, quoting nothing, and logs
  one line per rejection (aio-libs/aiohttp#3287 asks for a hook; there is none).
- **Connections** each hold a file descriptor. ``GuardedServer`` keeps them under a limit that
  leaves a reserve of descriptors for the ledger's files and for accepting and answering; past it,
  the connections idle longest (keep-alive, or never used) are closed first, and the first such
  closing of an episode is logged, once.

Both lean on ``aiohttp.web_protocol.RequestHandler``: its ``handle_error`` and ``log_access``, and
``_waiter``, which is set while a connection waits for its next request (aiohttp's keep-alive
timeout closes a connection on the same test).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import signal
import sys
import time
from collections import OrderedDict
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
from api.keys import LEDGER
from api.settings import Settings, SettingsError

log = logging.getLogger("vote_ledger.server")

BACKLOG = 128  # connections the kernel queues for the server (aiohttp's default)
RESERVE = 64  # descriptors kept for the ledger's files, the batch writer's pipes, the event loop
# A running service holds about 24 descriptors besides its connections. Up to BACKLOG connections
# can be accepted in one pass of the event loop before the server counts them, so both are kept.
SHED_QUIET = 60.0  # seconds without shedding after which the next shedding is logged again

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

    __slots__ = ("_guard", "_rejected")

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._rejected: web.BaseRequest | None = None

    @property
    def idle(self) -> bool:
        """Waiting for a request: between two, before the first, or partway through its headers."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

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

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        self._guard.used(self)
        return answered


class GuardedServer(web.Server):
    """aiohttp's low-level server, with ``Protocol`` and a limit on open connections."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        # shedding goes 5 % below the limit, so that it runs once per burst, not once per connection
        self._shed_to = max(1, max_connections - max_connections // 20)
        self._open: OrderedDict[Protocol, None] = OrderedDict()  # least recently used first
        self._last_shed = -SHED_QUIET
        self.shed = 0  # connections closed to stay under the limit, in all

    def __call__(self) -> Protocol:
        return Protocol(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        assert isinstance(handler, Protocol)
        self._open[handler] = None
        if len(self._open) > self.max_connections:
            self._shed_idle()

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        if isinstance(handler, Protocol):
            self._open.pop(handler, None)

    def used(self, handler: Protocol) -> None:
        """A connection just answered a request: it is the last to be shed now."""
        if handler in self._open:
            self._open.move_to_end(handler)

    def _shed_idle(self) -> None:
        """Close the connections idle longest, down to 5 % under the limit (busy ones never)."""
        excess = len(self._open) - self._shed_to
        victims = list(itertools.islice((h for h in self._open if h.idle), excess))
        for handler in victims:
            del self._open[handler]
            handler.force_close()
        self.shed += len(victims)
        now = time.monotonic()
        if now - self._last_shed >= SHED_QUIET:
            log.warning(
                "%d connections open, over the limit of %d: closing the idle ones, oldest first "
                "(%d now, %d since start; logged again after %d s without any)",
                len(self._open) + len(victims), self.max_connections, len(victims), self.shed,
                SHED_QUIET,
            )
        self._last_shed = now


class Runner(web.AppRunner):
    """An ``AppRunner`` whose server is a ``GuardedServer``."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return GuardedServer(
            made.request_handler, request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation, loop=asyncio.get_running_loop(),
            max_connections=self._max_connections, **made._kwargs,
        )


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (each connection holds one); the new
    soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_limit(settings: Settings, files: int) -> int:
    """The most connections kept open under a limit of ``files`` descriptors."""
    room = files - RESERVE - BACKLOG
    if room < 16:
        raise SettingsError(
            f"the open-file limit ({files}) leaves no room for connections: {RESERVE + BACKLOG} "
            f"descriptors are kept in reserve; raise it (ulimit -n)"
        )
    return min(settings.max_connections, room) if settings.max_connections else room


def serve(app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger]) -> None:
    """Run the app until SIGINT or SIGTERM, then shut down gracefully (as ``web.run_app`` does)."""
    files = raise_file_limit()
    limit = connection_limit(settings, files)
    asyncio.run(_serve(app, settings, access_log_class, limit))


async def _serve(
    app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger], limit: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = Runner(app, max_connections=limit, access_log_class=access_log_class, shutdown_timeout=30)
    await runner.setup()
    try:
        await app[LEDGER].start_seal_worker()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=BACKLOG)
        await site.start()
        print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)", file=sys.stderr)
        # once it is up: a start that fails is one line
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        log.info("open-file limit %d: up to %d connections, %d descriptors in reserve",
                 files, limit, files - limit)
        await stop.wait()
    finally:
        await runner.cleanup()
