"""Builders for real ledger files, and the tools to tamper with them the way an attacker would.

Ledgers are built through ``VoteLedger`` (the real Decider and group-commit writer) on real SQLite
files. Tampering goes around the store with a plain ``sqlite3`` connection, triggers dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ledger.chain import link
from ledger.events import Event, VoteCast, encode
from ledger.open import open_store
from ledger.store import GENESIS_HASH, EventStore, StoredEvent
from ledger.tables import TableSpec
from projections.audit import AuditReport, audit
from projections.commands import (
    CandidateSpec,
    CastVote,
    Command,
    PollSpec,
    Registered,
    RegisterUser,
    Result,
    SyncPolls,
)
from projections.compare import live_rows
from projections.service import StoreOpener, VoteLedger, fold_in_two, replay
from projections.state import LedgerState, VoteRecord
from tests.ledger.helpers import TEST_SIGNING

Row = tuple[Any, ...]
TRIGGERS = ("events_no_update", "events_no_delete", "events_chain")
T0 = 1_800_000_000_000  # a fixed "now" in milliseconds for ledgers with an injected clock


def candidates(*names: str, part: str | None = None) -> tuple[CandidateSpec, ...]:
    return tuple(CandidateSpec(name, part) for name in names)


# --- building ledgers through VoteLedger ----------------------------------------------------------


async def open_ledger(
    path: Path, clock: Callable[[], int] | None = None, max_batch: int = 512
) -> VoteLedger:
    """A VoteLedger on ``path`` (created if missing)."""
    store = await open_store(path, create=True)
    if clock is None:
        return await VoteLedger.open(store, TEST_SIGNING, max_batch=max_batch)
    return await VoteLedger.open(store, TEST_SIGNING, clock=clock, max_batch=max_batch)


async def execute_all(
    ledger: VoteLedger, commands: Sequence[Command], chunk: int = 2000
) -> list[Result | BaseException]:
    """Run ``commands`` concurrently, ``chunk`` at a time; refusals are returned, not raised."""
    results: list[Result | BaseException] = []
    for start in range(0, len(commands), chunk):
        part = commands[start : start + chunk]
        results += await asyncio.gather(*(ledger.execute(c) for c in part), return_exceptions=True)
    return results


async def register(
    ledger: VoteLedger, count: int, prefix: str = "user", part: str | None = None,
    team: str | None = None,
) -> list[str]:
    """Register ``count`` users concurrently; their user ids in order."""
    commands = [
        RegisterUser(f"{prefix}{i}@example.com", f"{prefix} {i}", f"hash-{prefix}-{i}", part, team)
        for i in range(count)
    ]
    results = await execute_all(ledger, commands)
    ids = []
    for result in results:
        assert isinstance(result, Registered), result
        ids.append(result.user_id)
    return ids


def candidate_ids(ledger: VoteLedger, poll_id: str) -> list[int]:
    return sorted(ledger.state.polls[poll_id].candidates)


@dataclass
class Built:
    """A closed ledger file and what was put in it."""

    path: Path
    users: list[str]
    candidates: dict[str, list[int]]
    head: int
    votes: list[VoteRecord] = field(default_factory=list)


SAMPLE_POLLS = (
    PollSpec(
        "president", "Class president", "single", legacy=True,
        candidates=candidates("정시원", "고은", "유현우"),
    ),
    PollSpec("mascot", "Mascot", "changeable", candidates=candidates("Cat", "Dog", "Owl", "Fox")),
    PollSpec("snack", "Snack of the week", "unlimited", candidates=candidates("Chips", "Fruit")),
    PollSpec(
        "fe-lead", "Frontend lead", "single", same_part="FE",
        candidates=candidates("Ada", "Linus", part="FE"),
    ),
)


async def build_sample(path: Path, users: int = 50) -> Built:
    """SyncPolls, ``users`` registrations and a few hundred votes under every policy, then close."""
    ledger = await open_ledger(path)
    try:
        await ledger.execute(SyncPolls(SAMPLE_POLLS))
        commands: list[Command] = [
            RegisterUser(f"voter{i}@example.com", f"Voter {i}", f"argon2-{i}", "FE" if i % 3 else "BE")
            for i in range(users)
        ]
        ids = [r.user_id for r in await execute_all(ledger, commands) if isinstance(r, Registered)]
        cands = {p.poll_id: candidate_ids(ledger, p.poll_id) for p in SAMPLE_POLLS}
        votes: list[Command] = []
        for i, user in enumerate(ids):
            votes.append(CastVote(user, "president", cands["president"][i % 3]))
            votes.append(CastVote(user, "mascot", cands["mascot"][i % 4], key=f"mascot-{i}"))
            if i % 2:
                votes.append(CastVote(user, "mascot", cands["mascot"][(i + 1) % 4]))
            votes += [CastVote(user, "snack", cands["snack"][(i + k) % 2]) for k in range(i % 3)]
            votes.append(CastVote(user, "fe-lead", cands["fe-lead"][i % 2]))  # BE voters are refused
        results = await execute_all(ledger, votes)
        records = [r for r in results if isinstance(r, VoteRecord)]
        head = ledger.state.head_seq
    finally:
        await ledger.close()
    return Built(path, ids, cands, head, records)


# --- reading and auditing closed files ----------------------------------------------------------


async def audit_file(path: Path) -> AuditReport:
    """The audit an outsider runs: the file opened read-only, audited in one process and in
    two, which must report exactly the same."""
    store = await open_store(path, readonly=True)
    try:
        report = await audit(store)
        in_two = await audit(store, reopen=partial(open_store, path, readonly=True))
    finally:
        await store.close()
    assert in_two == report
    return report


async def replay_file(path: Path, upto: int | None = None) -> LedgerState:
    store = await open_store(path, readonly=True)
    try:
        return await replay(store, upto=upto)
    finally:
        await store.close()


async def replay_in_two(store: EventStore, reopen: StoreOpener) -> LedgerState:
    """The whole log folded in two processes, as the rebuild folds it (``fold_in_two``)."""
    async with fold_in_two(store, reopen) as halves:
        return await halves.merged(await halves.own())


async def replay_in_two_file(path: Path) -> LedgerState:
    store = await open_store(path, readonly=True)
    try:
        return await replay_in_two(store, partial(open_store, path, readonly=True))
    finally:
        await store.close()


async def read_events(path: Path) -> list[StoredEvent]:
    store = await open_store(path, readonly=True)
    try:
        return [event async for chunk in store.read() for event in chunk]
    finally:
        await store.close()


async def live_tables(path: Path) -> dict[str, list[Row]]:
    store = await open_store(path, readonly=True)
    try:
        return named(await live_rows(store.rows))
    finally:
        await store.close()


def named(tables: Mapping[TableSpec, list[Row]]) -> dict[str, list[Row]]:
    """Rows table by table, keyed by the tables' names."""
    return {spec.name: rows for spec, rows in tables.items()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_ledger(src: Path, dst: Path) -> Path:
    """A copy of a closed ledger file (and its WAL, should one be left), readable by its owner
    alone, as the service keeps its own."""
    shutil.copyfile(src, dst)
    dst.chmod(0o600)
    for suffix in ("-wal", "-shm"):
        side = src.with_name(src.name + suffix)
        if side.exists():
            shutil.copyfile(side, dst.with_name(dst.name + suffix))
            dst.with_name(dst.name + suffix).chmod(0o600)
    return dst


# --- tampering -----------------------------------------------------------------------------------


@contextmanager
def tamper(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection with the append-only triggers dropped, committed on exit."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        yield conn
        conn.execute("COMMIT")


def rechain(conn: sqlite3.Connection, from_seq: int) -> None:
    """Recompute ``prev_hash`` and ``hash`` of every row from ``from_seq`` on, as a forger would."""
    before = conn.execute("SELECT hash FROM events WHERE seq = ?", (from_seq - 1,)).fetchone()
    prev = before[0] if before else GENESIS_HASH
    rows = conn.execute("SELECT seq, body FROM events WHERE seq >= ? ORDER BY seq", (from_seq,))
    for seq, body in rows.fetchall():
        digest_ = link(prev, body)
        conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest_, seq))
        prev = digest_


def body_of(conn: sqlite3.Connection, seq: int) -> bytes:
    row = conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
    body: bytes = row[0]
    return body


def first_seq(conn: sqlite3.Connection, type_: str, after: int = 0) -> int:
    row = conn.execute(
        "SELECT min(seq) FROM events WHERE type = ? AND seq > ?", (type_, after)
    ).fetchone()
    assert row[0] is not None, f"no {type_} after seq {after}"
    seq: int = row[0]
    return seq


def forge(path: Path, event: Event) -> int:
    """Append ``event`` with a correctly computed chain link, behind the service's back.

    The row extends the chain at its head, so it passes even the ``events_chain`` trigger. Its
    stream version is the next one of its stream. Returns the forged row's seq.
    """
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        version = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM events WHERE stream = ?", (event.stream(),)
        ).fetchone()[0]
        event_id = str(uuid.uuid4())
        body = encode(event_id, event, version)
        conn.execute(
            "INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, event_id, event.TYPE, event.stream(), version, body, prev, link(prev, body)),
        )
        conn.execute("COMMIT")
    return seq


def forged_vote(poll_id: str, candidate_id: int, user_id: str, at: int = T0) -> VoteCast:
    return VoteCast(poll_id, candidate_id, user_id, at)
