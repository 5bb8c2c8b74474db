"""The audit an outsider runs: recompute everything from the log and name the first thing wrong.

Checks, in order of the log: each body decodes to a known type and version and re-encodes to the
same bytes, and the row's columns agree with it; ``seq`` is gapless from 1, each ``prev_hash`` is the
hash before it and each ``hash`` recomputes; each private-data commitment matches, and private data
is missing only where a ``UserErased`` erased it; each event obeys the rules against the state
before it. Then the replayed projections must equal the live tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from ledger.chain import commitment, link
from ledger.errors import CorruptEventError, LedgerError
from ledger.events import Envelope, UserErased, UserRegistered, decode, reencode
from ledger.store import GENESIS_HASH, EventStore, StoredEvent, fold_reads
from ledger.tree import check_tree
from projections.compare import differences, live_rows
from projections.rules import expected_version, violation
from projections.service import Progress, StoreOpener, in_second_process
from projections.state import LedgerState, PrivateFields, collector_paused
from projections.tables import state_rows


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


def _missing(expected_seq: int, seq: int) -> _Failed:
    """The failure for a row at ``seq`` where ``expected_seq`` should come next."""
    return _Failed(expected_seq, "chain", f"seq {expected_seq} is missing (next row is {seq})")


def _decoded(seq: int, body: bytes) -> Envelope:
    try:
        return decode(body)
    except CorruptEventError as exc:
        raise _Failed(seq, "decode", str(exc)) from exc


def _private(
    seq: int, envelope: Envelope, body: bytes, salt: bytes | None = None
) -> PrivateFields:
    """The registration's private fields kept as ``body``; with ``salt``, also checks their
    commitment and their canonical form."""
    if not isinstance(envelope.event, UserRegistered):
        raise _Failed(seq, "commitment", "private data kept for an event that has none")
    if salt is not None and commitment(salt, body) != envelope.event.commitment:
        raise _Failed(seq, "commitment", "private data does not match its commitment")
    try:
        private = PrivateFields.from_body(body)
    except CorruptEventError as exc:
        raise _Failed(seq, "commitment", f"private data is malformed: {exc}") from exc
    if salt is not None and private.canonical_body() != body:
        raise _Failed(seq, "commitment", "private data is not in canonical form")
    return private


def _check_row(
    event: StoredEvent, expected_seq: int, prev: bytes
) -> tuple[Envelope, PrivateFields | None]:
    """Every check one row needs no state for: its place in the chain, its body, its columns
    and its private data's commitment."""
    seq, event_id, type_name, stream, version, body, prev_hash, digest, salt, private_body = event
    if seq != expected_seq:
        raise _missing(expected_seq, seq)
    if prev_hash != prev:
        raise _Failed(seq, "chain", "prev_hash is not the hash of the event before")
    if link(prev, body) != digest:
        raise _Failed(seq, "chain", "hash does not recompute from prev_hash and body")
    envelope = _decoded(seq, body)
    if reencode(envelope) != body:
        raise _Failed(seq, "decode", "body is not in canonical form")
    if (event_id, type_name, stream, version) != (
        envelope.event_id, envelope.event.TYPE, envelope.stream, envelope.version
    ):
        raise _Failed(seq, "decode", "row columns disagree with the hashed body")
    return envelope, None if private_body is None else _private(seq, envelope, private_body, salt)


def _fold_checked(
    state: LedgerState, seq: int, digest: bytes, envelope: Envelope, private: PrivateFields | None
) -> None:
    """Fold an event in after checking it against the state before it: its stream version (as
    its body gives it: the row checks hold the column to the body) and the rules."""
    event = envelope.event
    if envelope.version != expected_version(state, event):
        raise _Failed(seq, "rules", f"stream version {envelope.version} is out of order")
    error = violation(state, event, private)
    if error is not None:
        raise _Failed(seq, "rules", f"{error.code}: {error.message}")
    if isinstance(event, UserErased) and state.users[event.user_id].email is not None:
        raise _Failed(seq, "commitment", "the user is erased, but their private data is still kept")
    state.fold(seq, digest, event, private)


def _check_private_kept(state: LedgerState) -> None:
    """Every registration's private data is kept, unless a ``UserErased`` destroyed it."""
    lost = [user.seq for user in state.users.values() if user.email is None and not user.erased]
    if lost:
        raise _Failed(min(lost), "commitment", "the private data of this registration is missing, "
                      "and no UserErased event erased it")


async def _check_rows(store: EventStore, upto: int) -> AuditFailure | None:
    """Run the stateless checks on rows 1 to ``upto``: the first failure, or None.

    In the second process it reads through a connection of its own, at its own moment: rows up to
    ``upto`` read the same as in the audit's snapshot (the log only grows), and private data
    erased in between is simply not there to check.
    """
    prev, expected = GENESIS_HASH, 1
    try:
        async for chunk in fold_reads(store).read_all(upto=upto):
            for event in chunk:
                _check_row(event, expected, prev)
                prev, expected = event.hash, expected + 1
    except _Failed as failed:
        return failed.failure
    return None


async def audit(
    store: EventStore, progress: Progress | None = None, reopen: StoreOpener | None = None
) -> AuditReport:
    """Run every check over the whole log and the live projections.

    With ``reopen``, a second process checks the rows' chain, bodies, columns and commitments
    while this one folds the log under the rules. The report is the same either way: the first
    failure in the audit's order, and the state folded up to it.
    """
    with collector_paused():  # the folds and their rows: millions of lasting objects, no cycles
        async with store.snapshot() as head:  # the log and the projections as of one moment
            total = head.seq
            if reopen is None:
                return await _audit(store, total, progress, check_rows=True)
            with in_second_process("audit", reopen, partial(_check_rows, upto=total)) as rows:
                report = await _audit(store, total, progress, check_rows=False)
                failure = await rows.result()
            if failure is None or failure.seq is None or not _first(failure, report.failure):
                return report
            state = report.state
            if state.head_seq >= failure.seq:  # the fold went on past that row: fold up to it again
                state = LedgerState()
                await _fold(store, state, failure.seq - 1, None, check_rows=False)
            return AuditReport(events=state.head_seq, failure=failure, state=state)


def _first(rows: AuditFailure, fold: AuditFailure | None) -> bool:
    """Whether a row check's failure comes before the fold's in the audit's order: by seq; at
    one seq the row checks run before the rules; the projections are compared last of all."""
    if fold is None or fold.check == "projections":
        return True
    return fold.seq is None or (rows.seq is not None and rows.seq <= fold.seq)


async def _fold(
    store: EventStore, state: LedgerState, upto: int, progress: Progress | None, check_rows: bool
) -> bytes:
    """Fold rows 1 to ``upto`` into ``state`` under the rules (and the row checks, if asked);
    the hash of the last row."""
    prev, expected = GENESIS_HASH, 1
    if check_rows:
        async for chunk in fold_reads(store).read_all(upto=upto):
            for event in chunk:
                envelope, private = _check_row(event, expected, prev)
                _fold_checked(state, event.seq, event.hash, envelope, private)
                prev, expected = event.hash, expected + 1
            if progress:
                progress(state.head_seq, upto)
    else:  # another process runs the row checks: read only what the fold needs
        async for rows in fold_reads(store).read_bodies(upto=upto):
            for seq, body, digest, private_body in rows:
                if seq != expected:
                    raise _missing(expected, seq)
                envelope = _decoded(seq, body)
                private = None if private_body is None else _private(seq, envelope, private_body)
                _fold_checked(state, seq, digest, envelope, private)
                expected += 1
            prev = rows[-1][2]
            if progress:
                progress(state.head_seq, upto)
    return prev


async def _audit(
    store: EventStore, total: int, progress: Progress | None, check_rows: bool
) -> AuditReport:
    report = AuditReport()
    state = report.state
    try:
        prev = await _fold(store, state, total, progress, check_rows)
        report.events, report.head_seq, report.head_hash = state.head_seq, state.head_seq, prev
        _check_private_kept(state)
        await _compare_projections(store, state)
        await _check_tree(store, state.head_seq)
    except _Failed as failed:
        report.failure = failed.failure
        report.events = state.head_seq
    return report


async def _check_tree(store: EventStore, upto: int) -> None:
    """The stored Merkle tree must be the log's, and every checkpoint a root of it."""
    try:
        check = await check_tree(store, upto)
    except LedgerError as exc:
        raise _Failed(None, "tree", f"the Merkle tree cannot be read: {exc}") from exc
    if check.fault is not None:
        raise _Failed(check.fault_seq, "tree", check.fault)


async def _compare_projections(store: EventStore, state: LedgerState) -> None:
    """The live projection tables must hold exactly the rows of ``state``."""
    try:
        live = await live_rows(store.rows)  # within the audit's snapshot
    except LedgerError as exc:
        raise _Failed(None, "projections", f"the projection tables cannot be read: {exc}") from exc
    found = differences(live, state_rows(state))
    if not found:
        return
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
