"""Canonical JSON (RFC 8785) for event bodies.

Bodies hold only dicts with ASCII keys, lists, strings, booleans, null and integers of magnitude
below 2**53. For exactly that subset the JSON Canonicalization Scheme and Python's
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` produce the same bytes
(keys are ASCII, so code-point order equals UTF-16 order; strings escape the same way). The encoder
enforces the subset, which is what lets it use the fast path; the test suite checks it against the
``rfc8785`` reference implementation.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.errors import EncodingError

MAX_SAFE_INTEGER = 2**53 - 1

_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def _check(value: Any) -> None:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise EncodingError("strings must be valid Unicode (no lone surrogates)") from exc
        return
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return
        raise EncodingError(f"integer {value} is outside the safe range of ±(2**53 - 1)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise EncodingError(f"object keys must be ASCII strings, not {key!r}")
            _check(item)
        return
    if isinstance(value, list):
        for item in value:
            _check(item)
        return
    raise EncodingError(f"{type(value).__name__} cannot appear in an event body")


def canonical(value: Any) -> bytes:
    """Encode ``value`` as RFC 8785 canonical JSON bytes, refusing anything outside the subset."""
    _check(value)
    return _dumps(value).encode("utf-8")


def parse(body: bytes) -> Any:
    """Decode JSON bytes; raises ``ValueError`` for anything that is not strict UTF-8 JSON."""
    return json.loads(body.decode("utf-8"))
