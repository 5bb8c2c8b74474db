"""The hash chain: ``hash = SHA-256(prev_hash || body)``, starting from 32 zero bytes."""

from __future__ import annotations

import hashlib

GENESIS_HASH = bytes(32)


def link(prev_hash: bytes, body: bytes) -> bytes:
    """The hash of an event whose body is ``body`` and whose predecessor hashed to ``prev_hash``."""
    return hashlib.sha256(prev_hash + body).digest()


def commitment(salt: bytes, private_body: bytes) -> str:
    """The salted commitment that binds a private-data row to its event: hex SHA-256(salt || body)."""
    return hashlib.sha256(salt + private_body).hexdigest()
