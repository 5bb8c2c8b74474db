"""Canonical JSON (RFC 8785) for event bodies.

Bodies hold only dicts with ASCII keys, lists, strings, booleans, null and integers of magnitude
below 2**53. For exactly that subset the JSON Canonicalization Scheme is plain JSON with sorted keys,
no whitespace and no escaping beyond the mandatory (keys are ASCII, so code-point order equals UTF-16
order), which is what msgspec's encoder writes with ``order="sorted"``. The encoder enforces the
subset; the test suite checks it against the ``rfc8785`` reference implementation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.errors import EncodingError

MAX_SAFE_INTEGER = 2**53 - 1

ENCODER = msgspec.json.Encoder(order="sorted")
"""Sorted keys and fields, no whitespace: canonical for values inside the subset."""


def _check(value: Any) -> None:
    """Refuse anything outside the subset (lone surrogates are caught when encoding to UTF-8)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise EncodingError(f"object keys must be ASCII strings, not {key!r}")
            _check(item)
    elif kind is list:
        for item in value:
            _check(item)
    elif kind is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise EncodingError(f"integer {value} is outside the safe range of ±(2**53 - 1)")
    elif not (kind is str or kind is bool or value is None):
        raise EncodingError(f"{kind.__name__} cannot appear in an event body")


def canonical(value: Any) -> bytes:
    """Encode ``value`` as RFC 8785 canonical JSON bytes, refusing anything outside the subset."""
    _check(value)
    try:
        return ENCODER.encode(value)
    except UnicodeEncodeError as exc:
        raise EncodingError("strings must be valid Unicode (no lone surrogates)") from exc

