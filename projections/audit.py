"""The audit an outsider runs: recompute everything from the log and name the first thing wrong.

Checks, in order of the log: each body decodes to a known type and version and re-encodes to the
same bytes, and the row's columns agree with it; ``seq`` is gapless from 1, each ``prev_hash`` is the
hash before it and each ``hash`` recomputes; each private-data commitment matches; each event obeys
the rules against the state before it. Then the replayed projections must equal the live tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.chain import GENESIS_HASH, commitment, link
from ledger.errors import CorruptEventError, LedgerError
from ledger.events import UserRegistered, decode, reencode
from ledger.store import EventStore, StoredEvent
from projections.compare import differences, live_rows
from projections.rules import expected_version, violation
from projections.service import Progress
from projections.state import LedgerState, PrivateFields


@dataclass(frozen=True)
class AuditFailure:
    """The first thing found wrong: where (``seq``), which check, and what."""

    seq: int | None
    check: str
    message: str


@dataclass
class AuditReport:
    """The outcome of an audit, with the recomputed totals an auditor publishes."""

    events: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS_HASH
    failure: AuditFailure | None = None
    state: LedgerState = field(default_factory=LedgerState)

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Failed(Exception):
    def __init__(self, seq: int | None, check: str, message: str) -> None:
        super().__init__(message)
        self.failure = AuditFailure(seq, check, message)


def _check_event(state: LedgerState, event: StoredEvent, expected_seq: int, prev: bytes) -> None:
    if event.seq != expected_seq:
        raise _Failed(expected_seq, "chain", f"seq {expected_seq} is missing (next row is {event.seq})")
    if event.prev_hash != prev:
        raise _Failed(event.seq, "chain", "prev_hash is not the hash of the event before")
    if link(prev, event.body) != event.hash:
        raise _Failed(event.seq, "chain", "hash does not recompute from prev_hash and body")
    try:
        envelope = decode(event.body)
    except CorruptEventError as exc:
        raise _Failed(event.seq, "decode", str(exc)) from exc
    if reencode(envelope) != event.body:
        raise _Failed(event.seq, "decode", "body is not in canonical form")
    columns = (event.event_id, event.type, event.stream, event.version)
    if columns != (envelope.event_id, envelope.event.TYPE, envelope.stream, envelope.version):
        raise _Failed(event.seq, "decode", "row columns disagree with the hashed body")
    private = None
    if event.private is not None:
        if not isinstance(envelope.event, UserRegistered):
            raise _Failed(event.seq, "commitment", "private data kept for an event that has none")
        if commitment(event.private.salt, event.private.body) != envelope.event.commitment:
            raise _Failed(event.seq, "commitment", "private data does not match its commitment")
        try:
            private = PrivateFields.from_private(event.private)
        except CorruptEventError as exc:
            raise _Failed(event.seq, "commitment", f"private data is malformed: {exc}") from exc
        if private.canonical_body() != event.private.body:
            raise _Failed(event.seq, "commitment", "private data is not in canonical form")
    if event.version != expected_version(state, envelope.event):
        raise _Failed(event.seq, "rules", f"stream version {event.version} is out of order")
    error = violation(state, envelope.event, private)
    if error is not None:
        raise _Failed(event.seq, "rules", f"{error.code}: {error.message}")
    state.apply(event.seq, event.hash, envelope.event, private)


async def audit(store: EventStore, progress: Progress | None = None) -> AuditReport:
    """Run every check over the whole log and the live projections."""
    async with store.snapshot():  # the log and the projections as of one moment
        return await _audit(store, progress)


async def _audit(store: EventStore, progress: Progress | None) -> AuditReport:
    report = AuditReport()
    state = report.state
    total = (await store.head()).seq
    prev, expected = GENESIS_HASH, 1
    try:
        async for chunk in store.read():
            for event in chunk:
                _check_event(state, event, expected, prev)
                prev, expected = event.hash, expected + 1
            if progress:
                progress(state.head_seq, total)
        report.events, report.head_seq, report.head_hash = state.head_seq, state.head_seq, prev
        try:
            live = await live_rows(store.fetch_all)
        except LedgerError as exc:
            raise _Failed(None, "projections", f"the projection tables cannot be read: {exc}") from exc
        found = differences(live, state)
        if found:
            position = [d for d in found if d.table == "projection_position" and d.live]
            at = position[0].live[1] if position and position[0].live else None
            if at is not None and at > state.head_seq:
                raise _Failed(
                    state.head_seq + 1, "projections",
                    f"the projections are at seq {at} but the log ends at {state.head_seq}: "
                    "events after it are missing",
                )
            if at is not None and at < state.head_seq:
                raise _Failed(
                    at + 1, "projections",
                    f"the log goes on past seq {at}, where the projections stop: seq {at + 1} "
                    "onwards was appended behind the service's back",
                )
            raise _Failed(found[0].seq, "projections", found[0].describe())
    except _Failed as failed:
        report.failure = failed.failure
        report.events = state.head_seq
    return report
