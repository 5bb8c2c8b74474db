"""The projection tables: their layout, their rows as the fold sees them, and inline writes.

Every constraint is declared inside its table (no separate indexes), so a shadow table built by a
rebuild carries them when it is renamed into place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.store import Row, Statement
from projections.model import Ballot, Candidate, Poll, User
from projections.state import LedgerState, VoteRecord

TABLES: dict[str, str] = {
    "users": """(
        user_id TEXT PRIMARY KEY, email TEXT UNIQUE, name TEXT, part TEXT, team TEXT,
        seq INTEGER NOT NULL)""",
    "polls": """(
        poll_id TEXT PRIMARY KEY, title TEXT NOT NULL, policy TEXT NOT NULL,
        results TEXT NOT NULL, legacy INTEGER NOT NULL, same_part TEXT,
        not_own_team INTEGER NOT NULL, opens_at INTEGER, closes_at INTEGER,
        status TEXT NOT NULL, total_votes INTEGER NOT NULL, seq INTEGER NOT NULL)""",
    "candidates": """(
        candidate_id INTEGER PRIMARY KEY, poll_id TEXT NOT NULL, name TEXT NOT NULL,
        part TEXT, team TEXT, votes INTEGER NOT NULL, seq INTEGER NOT NULL,
        UNIQUE (poll_id, name))""",
    "ballots": """(
        poll_id TEXT NOT NULL, user_id TEXT NOT NULL, candidate_id INTEGER NOT NULL,
        count INTEGER NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (poll_id, user_id)) WITHOUT ROWID""",
    "idempotency": """(
        user_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
        poll_id TEXT NOT NULL, candidate_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, key)) WITHOUT ROWID""",
    "projection_position": "(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash BLOB NOT NULL)",
}

KEYS = {
    "users": "user_id",
    "polls": "poll_id",
    "candidates": "candidate_id",
    "ballots": "poll_id, user_id",
    "idempotency": "user_id, key",
    "projection_position": "name",
}

SEQ_COLUMN = {
    "users": 5, "polls": 11, "candidates": 6, "ballots": 4, "idempotency": 2,
    "projection_position": 1,
}

PROJECTIONS = ("users", "polls", "candidates", "ballots", "idempotency")


def ddl(suffix: str = "", if_not_exists: bool = True, names: Iterable[str] = TABLES) -> str:
    """CREATE TABLE statements for the projection tables (``suffix`` names shadow tables)."""
    guard = "IF NOT EXISTS " if if_not_exists else ""
    return "\n".join(f"CREATE TABLE {guard}{name}{suffix} {TABLES[name]};" for name in names)


def definitions(name: str) -> set[str]:
    """What SQLite's schema keeps for a projection table made by ``ddl``: as created, or as
    renamed from a rebuild's shadow table."""
    return {f"CREATE TABLE {name} {TABLES[name]}", f'CREATE TABLE "{name}" {TABLES[name]}'}


def user_row(u: User) -> Row:
    return (u.user_id, u.email, u.name, u.part, u.team, u.seq)


def poll_row(p: Poll) -> Row:
    return (
        p.poll_id, p.title, p.policy, p.results, int(p.legacy), p.same_part,
        int(p.not_own_team), p.opens_at, p.closes_at, p.status, p.total_votes, p.seq,
    )


def candidate_row(c: Candidate) -> Row:
    return (c.candidate_id, c.poll_id, c.name, c.part, c.team, c.votes, c.seq)


def ballot_row(key: tuple[str, str], b: Ballot) -> Row:
    return (key[0], key[1], b.candidate_id, b.count, b.seq)


def idempotency_row(key: tuple[str, str], r: VoteRecord) -> Row:
    return (key[0], key[1], r.seq, r.poll_id, r.candidate_id)


def position_rows(seq: int, digest: bytes) -> list[Row]:
    """Every projection's position: the seq and hash of the last event folded in."""
    return [(name, seq, digest) for name in PROJECTIONS]


def rows_of(
    users: Iterable[User],
    polls: Iterable[Poll],
    ballots: Mapping[tuple[str, str], Ballot],
    idempotency: Mapping[tuple[str, str], VoteRecord],
) -> dict[str, list[Row]]:
    """Rows for the given records, table by table."""
    poll_list = list(polls)
    return {
        "users": [user_row(u) for u in users],
        "polls": [poll_row(p) for p in poll_list],
        "candidates": [candidate_row(c) for p in poll_list for c in p.candidates.values()],
        "ballots": [ballot_row(k, b) for k, b in ballots.items()],
        "idempotency": [idempotency_row(k, r) for k, r in idempotency.items()],
    }


def state_rows(state: LedgerState) -> dict[str, list[Row]]:
    """Every row the projection tables must hold for ``state``, sorted by key."""
    tables = rows_of(state.users.values(), state.polls.values(), state.ballots, state.idempotency)
    tables["projection_position"] = position_rows(state.head_seq, state.head_hash)
    # whole rows sort in key order, and without a key function in half the time: in every table
    # the first two columns are unique together, so no comparison reaches a column past them
    return {name: sorted(rows) for name, rows in tables.items()}


def statements(tables: Mapping[str, list[Row]], suffix: str = "") -> list[Statement]:
    """Whole-row inserts for the rows, table by table (each row function gives every column).

    New users must not collide: a plain INSERT keeps the email constraint as the last defence;
    every other table is upserted.
    """
    found: list[Statement] = []
    for table, rows in tables.items():
        if rows:
            verb = "INSERT" if table == "users" else "INSERT OR REPLACE"
            found.append((f"{verb} INTO {table}{suffix} VALUES ({', '.join('?' * len(rows[0]))})", rows))
    return found
