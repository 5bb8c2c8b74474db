"""Time-ordered identifiers (UUID version 7, RFC 9562).

Random UUIDs land anywhere in a unique index, so every insert dirties some random page of it; ids
that start with the time land at its end. The order is only a storage convenience: the log's order
is ``seq``.
"""

from __future__ import annotations

import os
import random
import time

_random = random.Random(os.urandom(32))


def _uuid7_int() -> int:
    """A UUIDv7 as an integer: 48 bits of Unix milliseconds, then 74 random bits.

    The bits come from a generator seeded once from the OS, not a system call per id: these ids
    only need to be unique, never secret (tokens are signed; salts still use ``os.urandom``).
    """
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    return (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant


def uuid7() -> str:
    """A UUIDv7 in its canonical form (``8-4-4-4-12`` lowercase hex), formatted without ``uuid.UUID``."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_hex() -> str:
    """A UUIDv7 as 32 lowercase hex digits."""
    return f"{_uuid7_int():032x}"
