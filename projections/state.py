"""The fold: ``LedgerState.apply`` turns the log, event by event, into the read model.

It is pure (no clock, no randomness, no I/O) so that replaying the same log always yields the same
state: the service, the rebuild, the audit and time travel all use this one fold.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledger.codec import canonical
from ledger.errors import CorruptEventError
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
    decode,
)
from ledger.store import GENESIS_HASH, BodyRow, ShardRow, StoredEvent
from projections.model import Ballot, Candidate, Poll, User


class PrivateFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The personal data of a registration, as kept beside the log."""

    email: str
    name: str
    password_hash: str

    @classmethod
    def from_body(cls, body: bytes) -> PrivateFields:
        """The fields of the bytes kept beside the log."""
        try:
            return _PRIVATE.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise CorruptEventError(f"private data is not email, name and password_hash: {exc}") from exc

    def canonical_body(self) -> bytes:
        """The canonical bytes kept beside the log, which the commitment covers."""
        return canonical(msgspec.structs.asdict(self))


_PRIVATE = msgspec.json.Decoder(PrivateFields)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a fold builds millions of long-lived objects.

    The fold makes no reference cycles, and each collection would walk the growing state again;
    with it running, a replay of a million events takes a tenth longer.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class VoteRecord(msgspec.Struct, frozen=True, gc=False):
    """Where a vote landed: the ledger position and what it was for (untracked by the collector,
    as ``Ballot`` is)."""

    seq: int
    poll_id: str
    candidate_id: int


@dataclass
class LedgerState:
    """Everything the projections know, as of ``head_seq``."""

    head_seq: int = 0
    head_hash: bytes = GENESIS_HASH
    users: dict[str, User] = field(default_factory=dict)
    users_by_email: dict[str, str] = field(default_factory=dict)
    polls: dict[str, Poll] = field(default_factory=dict)
    candidates: dict[int, Candidate] = field(default_factory=dict)
    ballots: dict[tuple[str, str], Ballot] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], VoteRecord] = field(default_factory=dict)
    revoked_tokens: dict[str, int] = field(default_factory=dict)  # a logged-out token id -> seq
    legacy_poll_id: str | None = None
    events_by_type: dict[str, int] = field(default_factory=dict)

    def catch_up(self, events: Iterable[StoredEvent]) -> None:
        """Fold in rows of the log, skipping those this state already holds."""
        self.fold_rows((e.seq, e.body, e.hash, e.private_body) for e in events if e.seq > self.head_seq)

    def fold_rows(self, rows: Iterable[BodyRow]) -> None:
        """Fold in rows read by ``FoldReads.read_bodies``; the first must be the next position."""
        for seq, body, digest, private_body in rows:
            private = PrivateFields.from_body(private_body) if private_body is not None else None
            self.apply(seq, digest, decode(body).event, private)

    def fold_shard_rows(self, rows: Iterable[ShardRow]) -> None:
        """Fold in rows read by ``FoldReads.read_shard``, whose positions have gaps by design.

        Each row's stream column must name its body's stream: the shards are chosen by the column,
        and a row in the wrong shard would be folded by too few shards or too many.
        """
        for seq, body, digest, private_body, stream in rows:
            found = decode(body)
            if found.stream != stream:
                raise CorruptEventError(
                    f"seq {seq}: the stream column says {stream!r}, the body {found.stream!r}"
                )
            private = PrivateFields.from_body(private_body) if private_body is not None else None
            self.fold(seq, digest, found.event, private)

    def merge_shard(self, other: LedgerState) -> None:
        """Add the fold of another shard of the log, read up to the same position (each shard
        shares ``POLL_STREAMS``): the two make the fold of the whole log.

        Both folded every poll's events. Each user's registration, ballots and idempotency keys
        are in one shard only, and so is each vote: the tallies add up.
        """
        if self.polls.keys() != other.polls.keys():
            raise CorruptEventError("the shards hold different polls: they were not read to one position")
        for poll_id, poll in self.polls.items():
            theirs = other.polls[poll_id]
            poll.total_votes += theirs.total_votes
            for candidate_id, candidate in poll.candidates.items():
                candidate.votes += theirs.candidates[candidate_id].votes
        taken = self.users_by_email.keys() & other.users_by_email.keys()
        if taken:
            raise CorruptEventError(f"{len(taken)} email(s) are registered to two users: run the audit")
        self.users.update(other.users)
        self.users_by_email.update(other.users_by_email)
        self.ballots.update(other.ballots)
        self.idempotency.update(other.idempotency)
        self.revoked_tokens.update(other.revoked_tokens)
        for name, count in other.events_by_type.items():
            if name not in _POLL_TYPES:  # those both shards counted
                self.events_by_type[name] = self.events_by_type.get(name, 0) + count
        if other.head_seq > self.head_seq:
            self.head_seq, self.head_hash = other.head_seq, other.head_hash

    def apply(
        self, seq: int, digest: bytes, event: Event, private: PrivateFields | None = None
    ) -> None:
        """Fold one event in. ``seq`` must be the next position of the log."""
        if seq != self.head_seq + 1:
            raise CorruptEventError(f"expected seq {self.head_seq + 1}, got {seq}")
        self.fold(seq, digest, event, private)

    def fold(
        self, seq: int, digest: bytes, event: Event, private: PrivateFields | None = None
    ) -> None:
        """Fold one event in at ``seq``, wherever the state stands: for partial folds (time
        travel reads one poll's streams only, so its positions have gaps by design)."""
        handler = _HANDLERS[type(event)]
        try:
            handler(self, seq, event, private)
        except KeyError as exc:  # a log the writer never wrote: an event lost, or one forged
            raise CorruptEventError(
                f"seq {seq}: {event.TYPE} names {exc.args[0]!r}, which no event before it created;"
                " run the audit"
            ) from None
        self.head_seq, self.head_hash = seq, digest
        self.events_by_type[event.TYPE] = self.events_by_type.get(event.TYPE, 0) + 1

    @property
    def legacy_poll(self) -> Poll | None:
        """The poll that ``/candidates`` and ``/vote`` serve, if any."""
        return self.polls.get(self.legacy_poll_id) if self.legacy_poll_id else None

    def user_by_email(self, email: str) -> User | None:
        user_id = self.users_by_email.get(email)
        return self.users.get(user_id) if user_id else None


def _user_registered(
    state: LedgerState, seq: int, event: UserRegistered, private: PrivateFields | None
) -> None:
    user = User(
        event.user_id,
        private.email if private else None,
        private.name if private else None,
        event.part,
        event.team,
        seq,
    )
    state.users[event.user_id] = user
    if user.email is not None:
        state.users_by_email[user.email] = event.user_id


def _user_erased(state: LedgerState, seq: int, event: UserErased, _: object) -> None:
    user = state.users[event.user_id]
    if user.email is not None:
        del state.users_by_email[user.email]
    # a new record, not a change to the old one: a batch's scratch state shares the live records
    state.users[event.user_id] = msgspec.structs.replace(
        user, email=None, name=None, seq=seq, erased=True, version=user.version + 1
    )


def _logged_out(state: LedgerState, seq: int, event: LoggedOut, _: object) -> None:
    user = state.users[event.user_id]
    if event.token_id is not None:
        state.revoked_tokens[event.token_id] = seq
    generation = user.generation + (event.token_id is None)
    state.users[event.user_id] = msgspec.structs.replace(
        user, version=user.version + 1, generation=generation
    )


def _poll_created(state: LedgerState, seq: int, event: PollCreated, _: object) -> None:
    state.polls[event.poll_id] = Poll(
        event.poll_id, event.title, event.policy, event.results, event.legacy,
        event.same_part, event.not_own_team, event.opens_at, event.closes_at, seq,
    )
    if event.legacy:
        state.legacy_poll_id = event.poll_id


def _candidate_added(state: LedgerState, seq: int, event: CandidateAdded, _: object) -> None:
    candidate = Candidate(
        event.candidate_id, event.poll_id, event.name, event.part, event.team, seq
    )
    poll = state.polls[event.poll_id]
    poll.candidates[event.candidate_id] = candidate
    poll.stream_version += 1
    state.candidates[event.candidate_id] = candidate


def _poll_opened(state: LedgerState, seq: int, event: PollOpened, _: object) -> None:
    poll = state.polls[event.poll_id]
    poll.status = "open"
    poll.stream_version += 1


def _poll_closed(state: LedgerState, seq: int, event: PollClosed, _: object) -> None:
    poll = state.polls[event.poll_id]
    poll.status = "closed"
    poll.stream_version += 1


def _vote_cast(state: LedgerState, seq: int, event: VoteCast, _: object) -> None:
    poll = state.polls[event.poll_id]
    # keys reuse the poll's and the user's own id strings rather than the copies each decoded
    # event brings: with 200k ballots that is tens of megabytes
    user = state.users.get(event.user_id)
    user_id = user.user_id if user is not None else event.user_id
    key = (poll.poll_id, user_id)
    ballot = state.ballots.get(key)
    candidate = poll.candidates[event.candidate_id]
    if ballot is not None and poll.policy == "changeable":
        poll.candidates[ballot.candidate_id].votes -= 1
    else:
        poll.total_votes += 1
    candidate.votes += 1
    if ballot is None:
        state.ballots[key] = Ballot(event.candidate_id, 1, seq)
    else:
        ballot.candidate_id, ballot.count, ballot.seq = event.candidate_id, ballot.count + 1, seq
    if event.key is not None:
        state.idempotency[(user_id, event.key)] = VoteRecord(seq, poll.poll_id, event.candidate_id)


_POLL_TYPES = frozenset(cls.TYPE for cls in (PollCreated, CandidateAdded, PollOpened, PollClosed))
"""The types of the events in poll streams."""

_HANDLERS: dict[type[Event], Callable[[LedgerState, int, Any, PrivateFields | None], None]] = {
    UserRegistered: _user_registered,
    PollCreated: _poll_created,
    CandidateAdded: _candidate_added,
    PollOpened: _poll_opened,
    PollClosed: _poll_closed,
    VoteCast: _vote_cast,
    UserErased: _user_erased,
    LoggedOut: _logged_out,
}
