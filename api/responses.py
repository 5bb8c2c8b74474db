"""JSON responses, and a cache of encoded answers for the reads every frontend repeats."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import msgspec
from aiohttp import hdrs, web
from multidict import CIMultiDict

JSON_TYPE = "application/json; charset=utf-8"


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with UTF-8 text as it is (names are not ``\\u``-escaped), bytes as standard base64."""
    return json_bytes_response(msgspec.json.encode(data), status, headers)


def json_bytes_response(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A response for JSON already encoded.

    The header is given whole: aiohttp's ``content_type`` and ``charset`` arguments build it
    through property setters, which cost as much again as the rest of the response object.
    """
    fields = CIMultiDict(headers or {})
    fields[hdrs.CONTENT_TYPE] = JSON_TYPE
    return web.Response(body=body, status=status, headers=fields)


class ResponseCache:
    """Encoded answers that hold until the ledger moves: a read between two appends is a lookup.

    Keyed by the ledger's head: every event moves it, so nothing outlives the state it was made from.
    """

    def __init__(self) -> None:
        self._seq = -1
        self._bodies: dict[Hashable, bytes] = {}

    def encoded(self, seq: int, key: Hashable, make: Callable[[], Any]) -> bytes:
        """The JSON of ``make()`` at head ``seq``, made once per head and key."""
        if seq != self._seq:
            self._seq, self._bodies = seq, {}
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = msgspec.json.encode(make())
        return body
