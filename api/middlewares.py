"""The error middleware (one JSON error shape for everything), request ids and the access log."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import re
import sys
import time as _time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from api.errors import ApiError, error_response, from_domain
from ledger.errors import LedgerError, StoreUnavailableError
from ledger.writer import WriterClosedError
from projections.errors import DomainError

log = logging.getLogger("vote_ledger.api")
REQUEST_ID = web.RequestKey("request_id", str)
STARTED = web.RequestKey("started", float)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


_PROCESS = uuid.uuid4().hex[:8]
_counter = itertools.count(1)


def _request_id(request: web.Request) -> str:
    """The caller's ``X-Request-Id`` if it is safe to echo, else this process's next id."""
    given = request.headers.get("X-Request-Id")
    if given is not None and _SAFE_ID.match(given):
        return given
    return f"{_PROCESS}-{next(_counter):x}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to the JSON error shape; log anything unexpected with the request id."""
    request[STARTED] = _time.perf_counter()
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except DomainError as exc:
        response = error_response(from_domain(exc))
    except (StoreUnavailableError, WriterClosedError) as exc:
        log.warning("request %s: ledger unavailable: %s", request_id, exc)
        response = error_response(
            ApiError(503, "store_unavailable", "the ledger cannot take writes right now; try again",
                     headers={"Retry-After": "1"})
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 413 else "the request body is too large"
        response = error_response(
            ApiError(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message,
                     headers={k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")})
        )
    except LedgerError:
        log.exception("request %s: ledger error", request_id)
        response = error_response(ApiError(503, "store_unavailable", "the ledger is unavailable"), request_id)
    except (ConnectionError, web.RequestPayloadError) as exc:
        if _client_gone(request):
            # the client left before its request was read: nobody to answer, and nothing broken here
            log.info("request %s: the client disconnected during %s %s", request_id, request.method,
                     request.path[:200])
            response = error_response(ApiError(CLIENT_GONE, "client_disconnected", "the client went away"))
        elif isinstance(exc, web.RequestPayloadError):  # a body its own encoding refuses (a bad chunk)
            response = error_response(ApiError(400, "malformed_body", "the body's encoding is malformed"))
        else:
            log.exception("request %s: unexpected error", request_id)
            response = error_response(ApiError(500, "internal_error", "something went wrong"), request_id)
    except Exception:
        log.exception("request %s: unexpected error", request_id)
        response = error_response(ApiError(500, "internal_error", "something went wrong"), request_id)
    response.headers["X-Request-Id"] = request_id
    return response


CLIENT_GONE = 499  # the access log's status for a request whose client left before its answer (nginx's)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Lines:
    """Lines written to stderr once per event-loop pass: one write for every request answered in it."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write at once
                sys.stderr.write(line)
                return
        self._lines.append(line)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            sys.stderr.write("".join(lines))


_ACCESS_LINES = _Lines()
atexit.register(_ACCESS_LINES.flush)


class AccessLogger(AbstractAccessLogger):
    """One line per request: time, method, path, status, duration and request id (text or JSON).

    Lines are formatted here and written straight to stderr while the ``aiohttp.access`` logger is
    enabled: a LogRecord per request costs more than the rest of a vote's handling in Python, and
    so does a write per line under load, so the lines of one event-loop pass go out together.
    """

    json_format = False
    _second = 0
    _stamp = ""

    def _now(self) -> str:
        now = int(_time.time())
        if now != self._second:
            stamp = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(now))
            AccessLogger._second, AccessLogger._stamp = now, stamp
        return self._stamp

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        started = request.get(STARTED)
        if started is not None:  # aiohttp's own figure has the loop clock's resolution: 1 ms on uvloop
            time = _time.perf_counter() - started
        if self.json_format:
            line = msgspec.json.encode({
                "time": self._now(), "method": request.method, "path": request.path,
                "status": response.status, "ms": round(time * 1000, 2), "requestId": request_id,
                "remote": request.remote,
            }).decode()
        else:
            line = (f"{self._now()} {request.method} {request.path} {response.status} "
                    f"{time * 1000:.2f}ms {request_id}")
        _ACCESS_LINES.add(line + "\n")

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class JsonAccessLogger(AccessLogger):
    json_format = True


def setup_logging(json_format: bool) -> type[AccessLogger]:
    """Application logs to stderr with a timestamp; returns the access logger class to use."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s" if json_format else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return JsonAccessLogger if json_format else AccessLogger
