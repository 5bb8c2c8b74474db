"""The projection tables: each declared once, as a ``TableSpec`` with the function that gives a
record's row right beside it (a tuple in the spec's column order).

The store derives each table's layout, keys and writes from its spec; this module only says what
the tables hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.tables import Column, Row, TableSpec
from projections.model import Ballot, Candidate, Poll, User
from projections.state import LedgerState, VoteRecord

USERS = TableSpec(
    "users",
    (Column("user_id", str), Column("email", str, nullable=True, unique=True),
     Column("name", str, nullable=True), Column("part", str, nullable=True),
     Column("team", str, nullable=True), Column("seq", int)),
)
"""Upserted by user id (an erasure empties the email and name); an email taken by another user
still fails the write: the unique constraint is the last defence."""


def user_row(u: User) -> Row:
    return (u.user_id, u.email, u.name, u.part, u.team, u.seq)


POLLS = TableSpec(
    "polls",
    (Column("poll_id", str), Column("title", str), Column("policy", str), Column("results", str),
     Column("legacy", int), Column("same_part", str, nullable=True), Column("not_own_team", int),
     Column("opens_at", int, nullable=True), Column("closes_at", int, nullable=True),
     Column("status", str), Column("total_votes", int), Column("seq", int)),
)


def poll_row(p: Poll) -> Row:
    return (
        p.poll_id, p.title, p.policy, p.results, int(p.legacy), p.same_part,
        int(p.not_own_team), p.opens_at, p.closes_at, p.status, p.total_votes, p.seq,
    )


CANDIDATES = TableSpec(
    "candidates",
    (Column("candidate_id", int), Column("poll_id", str), Column("name", str),
     Column("part", str, nullable=True), Column("team", str, nullable=True),
     Column("votes", int), Column("seq", int)),
    unique=(("poll_id", "name"),),
)


def candidate_row(c: Candidate) -> Row:
    return (c.candidate_id, c.poll_id, c.name, c.part, c.team, c.votes, c.seq)


BALLOTS = TableSpec(
    "ballots",
    (Column("poll_id", str), Column("user_id", str), Column("candidate_id", int),
     Column("count", int), Column("seq", int)),
    key=2,
)


def ballot_row(key: tuple[str, str], b: Ballot) -> Row:
    return (key[0], key[1], b.candidate_id, b.count, b.seq)


IDEMPOTENCY = TableSpec(
    "idempotency",
    (Column("user_id", str), Column("key", str), Column("seq", int), Column("poll_id", str),
     Column("candidate_id", int)),
    key=2,
)


def idempotency_row(key: tuple[str, str], r: VoteRecord) -> Row:
    return (key[0], key[1], r.seq, r.poll_id, r.candidate_id)


POSITION = TableSpec(
    "projection_position", (Column("name", str), Column("seq", int), Column("hash", bytes)),
)

PROJECTIONS = (USERS, POLLS, CANDIDATES, BALLOTS, IDEMPOTENCY)
TABLES = (*PROJECTIONS, POSITION)
"""Every table, in the order they are compared and reported."""


def position_rows(seq: int, digest: bytes) -> list[Row]:
    """Every projection's position: the seq and hash of the last event folded in."""
    return [(spec.name, seq, digest) for spec in PROJECTIONS]


def rows_of(
    users: Iterable[User],
    polls: Iterable[Poll],
    ballots: Mapping[tuple[str, str], Ballot],
    idempotency: Mapping[tuple[str, str], VoteRecord],
) -> dict[TableSpec, list[Row]]:
    """Rows for the given records, table by table."""
    poll_list = list(polls)
    return {
        USERS: [user_row(u) for u in users],
        POLLS: [poll_row(p) for p in poll_list],
        CANDIDATES: [candidate_row(c) for p in poll_list for c in p.candidates.values()],
        BALLOTS: [ballot_row(k, b) for k, b in ballots.items()],
        IDEMPOTENCY: [idempotency_row(k, r) for k, r in idempotency.items()],
    }


def state_rows(state: LedgerState) -> dict[TableSpec, list[Row]]:
    """Every row the projection tables must hold for ``state``, sorted by key."""
    tables = rows_of(state.users.values(), state.polls.values(), state.ballots, state.idempotency)
    tables[POSITION] = position_rows(state.head_seq, state.head_hash)
    # whole rows sort in key order, and without a key function in half the time: every table's
    # key is its first columns, so no comparison reaches a column past them
    return {spec: sorted(rows) for spec, rows in tables.items()}
