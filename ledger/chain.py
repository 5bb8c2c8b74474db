"""The hash chain: ``hash = SHA-256(prev_hash || body)``, starting from 32 zero bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.store import Head, NewEvent, StoredEvent


def link(prev_hash: bytes, body: bytes) -> bytes:
    """The hash of an event whose body is ``body`` and whose predecessor hashed to ``prev_hash``."""
    return hashlib.sha256(prev_hash + body).digest()


def commitment(salt: bytes, private_body: bytes) -> str:
    """The salted commitment that binds a private-data row to its event: hex SHA-256(salt || body)."""
    return hashlib.sha256(salt + private_body).hexdigest()


def chain(head: Head, events: Sequence[NewEvent]) -> list[StoredEvent]:
    """The rows ``events`` become when appended after ``head``: positions and hashes."""
    stored: list[StoredEvent] = []
    seq, prev = head.seq, head.hash
    for event in events:
        seq += 1
        digest = link(prev, event.body)
        private = event.private
        stored.append(StoredEvent(
            seq, event.event_id, event.type, event.stream, event.version, event.body, prev, digest,
            private.salt if private else None, private.body if private else None,
        ))
        prev = digest
    return stored
