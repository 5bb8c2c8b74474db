"""Commands, and the batch handler that decides them inside the write transaction.

The handler decides every command of a batch against a scratch state (the live state plus the batch
so far) and turns the outcome into events and inline projection rows; the group-commit writer
commits them in one transaction, only if the log still ends where the state does. The live state
moves only once the batch is durable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial, singledispatch

from ledger.chain import chain, commitment
from ledger.errors import EncodingError
from ledger.events import (
    CandidateAdded,
    Event,
    LoggedOut,
    PollClosed,
    PollCreated,
    PollOpened,
    UserErased,
    UserRegistered,
    VoteCast,
    encode,
    user_stream,
)
from ledger.ids import uuid7, uuid7_hex
from ledger.store import Head, NewEvent, PrivateData, StoredEvent
from ledger.writer import Decision
from projections.errors import DomainError, IdempotencyConflictError, InvalidValueError, PollConfigError
from projections.overlay import scratch, touched
from projections.rules import expected_version, violation
from projections.state import LedgerState, PrivateFields, VoteRecord
from projections.tables import POSITION, position_rows, rows_of


@dataclass(frozen=True)
class RegisterUser:
    """Sign a user up. ``email`` must already be normalized; the hash is computed by the caller."""

    email: str
    name: str
    password_hash: str
    part: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class EraseUser:
    """Erase a user's personal data: their private data goes, their votes stay."""

    user_id: str


@dataclass(frozen=True)
class LogOut:
    """Void one token of a user (its ``jti``), or (``token_id`` None) every token issued so far."""

    user_id: str
    token_id: str | None = None


@dataclass(frozen=True)
class CastVote:
    """Vote for a candidate of a poll, optionally under a client idempotency key."""

    user_id: str
    poll_id: str
    candidate_id: int
    key: str | None = None


@dataclass(frozen=True)
class CandidateSpec:
    name: str
    part: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class PollSpec:
    """A poll as the polls file describes it."""

    poll_id: str
    title: str
    policy: str = "single"
    results: str = "always"
    legacy: bool = False
    same_part: str | None = None
    not_own_team: bool = False
    opens_at: int | None = None
    closes_at: int | None = None
    open: bool = True
    candidates: tuple[CandidateSpec, ...] = ()


@dataclass(frozen=True)
class SyncPolls:
    """Append whatever of the polls file the ledger does not have yet (idempotent)."""

    polls: tuple[PollSpec, ...]


@dataclass(frozen=True)
class SetPollStatus:
    """Open or close a poll."""

    poll_id: str
    open: bool


Command = RegisterUser | CastVote | SyncPolls | SetPollStatus | EraseUser | LogOut


@dataclass(frozen=True)
class Registered:
    user_id: str
    seq: int


@dataclass(frozen=True)
class Appended:
    """The events a command appended (none when there was nothing to do)."""

    seqs: tuple[int, ...]
    types: tuple[str, ...]
    notes: tuple[str, ...] = ()


Result = Registered | VoteRecord | Appended


@dataclass
class Pending:
    """One event decided in a batch, as the state folds it in once it is durable."""

    event: Event
    private: PrivateFields | None = None
    private_data: PrivateData | None = None  # the private fields as kept: salt and canonical bytes
    event_id: str = field(default_factory=uuid7)
    erases: str | None = None  # a stream whose private data goes in the same transaction


@dataclass
class Plan:
    """What a command decided: its events, and its result once they have their positions."""

    pending: list[Pending]
    result: Callable[[list[StoredEvent]], Result]


def idempotency_digest(key: str) -> str:
    """What the ledger keeps of a client's idempotency key: its SHA-256, never the text itself
    (a client may put anything in it, and hashed bodies can never be erased)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@singledispatch
def decide(command: Command, view: LedgerState, now_ms: int) -> Plan | VoteRecord:
    """What ``command`` appends after ``view`` (or, for a replayed vote, its earlier record);
    raises the DomainError that refuses it. One handler per command type."""
    raise TypeError(f"no handler decides {type(command).__name__}")


@decide.register
def _register(cmd: RegisterUser, view: LedgerState, now_ms: int) -> Plan:
    private = PrivateFields(cmd.email, cmd.name, cmd.password_hash)
    salt, body = os.urandom(16), private.canonical_body()
    event = UserRegistered(uuid7_hex(), commitment(salt, body), cmd.part, cmd.team)
    return Plan(
        [Pending(event, private, PrivateData(salt, body))],
        lambda rows: Registered(event.user_id, rows[0].seq),
    )


@decide.register
def _vote(cmd: CastVote, view: LedgerState, now_ms: int) -> Plan | VoteRecord:
    key = idempotency_digest(cmd.key) if cmd.key is not None else None
    if key is not None:
        earlier = view.idempotency.get((cmd.user_id, key))
        if earlier is not None:
            if (earlier.poll_id, earlier.candidate_id) != (cmd.poll_id, cmd.candidate_id):
                raise IdempotencyConflictError(
                    "this Idempotency-Key was used for a different vote"
                )
            return earlier
    return Plan(
        [Pending(VoteCast(cmd.poll_id, cmd.candidate_id, cmd.user_id, now_ms, key))],
        lambda rows: VoteRecord(rows[0].seq, cmd.poll_id, cmd.candidate_id),
    )


@decide.register
def _erase(cmd: EraseUser, view: LedgerState, now_ms: int) -> Plan:
    return Plan([Pending(UserErased(cmd.user_id), erases=user_stream(cmd.user_id))], _appended)


@decide.register
def _log_out(cmd: LogOut, view: LedgerState, now_ms: int) -> Plan:
    return Plan([Pending(LoggedOut(cmd.user_id, cmd.token_id))], _appended)


@decide.register
def _sync(cmd: SyncPolls, view: LedgerState, now_ms: int) -> Plan:
    pending: list[Pending] = []
    notes: list[str] = []
    legacy = [p.poll_id for p in cmd.polls if p.legacy]
    if view.legacy_poll_id is not None and legacy and legacy != [view.legacy_poll_id]:
        raise PollConfigError(
            f"poll {view.legacy_poll_id!r} is already the legacy poll; {legacy[0]!r} cannot be"
        )
    next_id = max(view.candidates, default=0) + 1
    for spec in cmd.polls:
        poll = view.polls.get(spec.poll_id)
        if poll is None:
            pending.append(Pending(PollCreated(
                spec.poll_id, spec.title, spec.policy, spec.results, spec.legacy,
                spec.same_part, spec.not_own_team, spec.opens_at, spec.closes_at,
            )))
            known: set[str] = set()
        else:
            known = {c.name for c in poll.candidates.values()}
            changed = [
                name for name, have, want in (
                    ("title", poll.title, spec.title), ("policy", poll.policy, spec.policy),
                    ("results", poll.results, spec.results), ("legacy", poll.legacy, spec.legacy),
                    ("same_part", poll.same_part, spec.same_part),
                    ("not_own_team", poll.not_own_team, spec.not_own_team),
                    ("opens_at", poll.opens_at, spec.opens_at), ("closes_at", poll.closes_at, spec.closes_at),
                ) if have != want
            ]
            if changed:
                notes.append(
                    f"poll {spec.poll_id!r} is already in the ledger with other {', '.join(changed)}; "
                    "the ledger's are kept (rules do not change under a running vote)"
                )
        for candidate in spec.candidates:
            if candidate.name in known:
                continue
            known.add(candidate.name)
            pending.append(Pending(CandidateAdded(
                spec.poll_id, next_id, candidate.name, candidate.part, candidate.team
            )))
            next_id += 1
        if poll is None and spec.open:
            pending.append(Pending(PollOpened(spec.poll_id)))
    return Plan(pending, partial(_appended, notes=tuple(notes)))


@decide.register
def _status(cmd: SetPollStatus, view: LedgerState, now_ms: int) -> Plan:
    poll = view.polls.get(cmd.poll_id)
    if poll is None:
        raise PollConfigError(f"no poll {cmd.poll_id!r}")
    if poll.status == ("open" if cmd.open else "closed"):
        return Plan([], _appended)
    return Plan([Pending(PollOpened(cmd.poll_id) if cmd.open else PollClosed(cmd.poll_id))], _appended)


def _appended(rows: list[StoredEvent], notes: tuple[str, ...] = ()) -> Appended:
    return Appended(tuple(r.seq for r in rows), tuple(r.type for r in rows), notes)


def _admit(view: LedgerState, decided: list[Pending]) -> list[NewEvent] | DomainError:
    """Check a command's events in order, encode them, and fold them into ``view``: all or none.

    A command of several events is tried on a scratch of the scratch first, so that one breaking a
    rule halfway leaves the batch's state as it was. Encoding here, per command, means a value
    that cannot be written refuses its own command rather than failing the whole batch.
    """
    trial = scratch(view) if len(decided) > 1 else view
    new: list[NewEvent] = []
    for item in decided:
        error = violation(trial, item.event, item.private)
        if error is not None:
            return error
        version = expected_version(trial, item.event)
        try:
            body = encode(item.event_id, item.event, version)
        except EncodingError as exc:
            return _unwritable(exc)
        new.append(NewEvent(
            item.event_id, item.event.TYPE, item.event.stream(), version, body, item.private_data
        ))
        trial.apply(trial.head_seq + 1, b"", item.event, item.private)
    if trial is not view:
        for item in decided:
            view.apply(view.head_seq + 1, b"", item.event, item.private)
    return new


def _unwritable(exc: EncodingError) -> InvalidValueError:
    return InvalidValueError(f"a field cannot be stored: {exc}")


class Decider:
    """The group-commit batch handler: keeps ``state`` in step with the log and decides commands."""

    def __init__(self, state: LedgerState, clock: Callable[[], int]) -> None:
        self.state = state
        self._clock = clock

    def catch_up(self, events: Sequence[StoredEvent]) -> None:
        """Fold in what other writers appended."""
        self.state.catch_up(events)

    def decide(self, commands: Sequence[Command]) -> Decision[Result, Pending]:
        """Decide every command against the state plus the batch so far; change nothing yet."""
        view = scratch(self.state)
        now_ms = self._clock()
        head = at = Head(self.state.head_seq, self.state.head_hash)
        events: list[StoredEvent] = []
        pending: list[Pending] = []
        results: list[Result | Exception] = []
        erase: list[str] = []
        for command in commands:
            try:
                plan = decide(command, view, now_ms)
            except DomainError as exc:
                results.append(exc)
                continue
            except EncodingError as exc:
                results.append(_unwritable(exc))
                continue
            if isinstance(plan, VoteRecord):  # a replay: the vote recorded earlier
                results.append(plan)
                continue
            admitted = _admit(view, plan.pending)
            if isinstance(admitted, DomainError):
                results.append(admitted)
                continue
            stored = chain(at, admitted)
            if stored:
                at = Head(stored[-1].seq, stored[-1].hash)
            events += stored
            pending += plan.pending
            erase += [item.erases for item in plan.pending if item.erases is not None]
            results.append(plan.result(stored))
        writes = rows_of(
            touched(view.users).values(), touched(view.polls).values(),
            touched(view.ballots), touched(view.idempotency),
        )
        if events:
            writes[POSITION] = position_rows(at.seq, at.hash)
        return Decision(head, events, pending, writes, results, erase)

    def committed(self, decision: Decision[Result, Pending]) -> None:
        """The batch is durable: fold it into the live state (unless a reader already caught up)."""
        for item, row in zip(decision.pending, decision.events, strict=True):
            if row.seq > self.state.head_seq:
                self.state.apply(row.seq, row.hash, item.event, item.private)
