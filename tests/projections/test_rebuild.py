"""Rebuild equals live, row for row, on a randomized history of over 100,000 events.

The history is driven through ``VoteLedger.execute`` (the real Decider and group-commit writer) in
concurrent chunks of 2,000 commands, from a seeded generator: registrations (some with a taken
email), votes under the single, changeable and unlimited policies and under eligibility rules,
refused votes of every kind, idempotency keys, and polls closed and reopened with SetPollStatus.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from ledger.sqlite import SqliteEventStore
from projections.commands import (
    CandidateSpec,
    CastVote,
    Command,
    PollSpec,
    Registered,
    RegisterUser,
    SetPollStatus,
    SyncPolls,
)
from projections.errors import DomainError, EmailTakenError
from projections.queries import tally_at
from projections.rebuild import RebuildReport, rebuild
from projections.tables import state_rows
from tests.projections.helpers import (
    Row,
    audit_file,
    build_sample,
    candidates,
    copy_ledger,
    execute_all,
    live_tables,
    open_ledger,
    replay_file,
    tamper,
)

TARGET_EVENTS = 100_000
CHUNK = 2_000
SEED = 20_201_113
TEAMS = ("Aetheria", "Pre:folio", "Hooking")
PARTS = ("FE", "BE", None)

POLLS = (
    PollSpec("single", "Single vote", "single", candidates=candidates("A", "B", "C", "D")),
    PollSpec("changeable", "Changeable", "changeable", candidates=candidates("E", "F", "G", "H", "I")),
    PollSpec("unlimited", "Unlimited", "unlimited", candidates=candidates("J", "K", "L")),
    PollSpec("fe-only", "Frontend only", "changeable", same_part="FE",
             candidates=candidates("M", "N", part="FE")),
    PollSpec("teams", "Best team", "unlimited", not_own_team=True,
             candidates=tuple(CandidateSpec(team, team=team) for team in TEAMS)),
)
POLL_WEIGHTS = (0.15, 0.3, 0.3, 0.1, 0.15)


@dataclass
class History:
    path: Path
    head: int
    outcomes: Counter[str]
    events_by_type: dict[str, int]
    live_state_rows: dict[str, list[Row]]
    seconds: float


def _commands(
    rng: random.Random, users: list[str], cands: dict[str, list[int]], next_email: list[int]
) -> list[Command]:
    commands: list[Command] = []
    polls = [p.poll_id for p in POLLS]
    for _ in range(CHUNK):
        if rng.random() < 0.07:
            n = next_email[0] if rng.random() > 0.02 else rng.randrange(next_email[0])  # taken email
            next_email[0] = max(next_email[0], n + 1)
            commands.append(RegisterUser(f"u{n}@example.com", f"User {n}", f"h{n}",
                                         rng.choice(PARTS), rng.choice((*TEAMS, None))))
            continue
        poll = rng.choices(polls, POLL_WEIGHTS)[0]
        candidate = rng.choice(cands[poll]) if rng.random() > 0.01 else 10_000  # unknown candidate
        key = f"k{rng.randrange(4)}" if rng.random() < 0.05 else None
        commands.append(CastVote(rng.choice(users), poll, candidate, key))
    if rng.random() < 0.6:  # close a poll for a while, then reopen it
        poll = rng.choice(polls)
        closed_at = rng.randrange(CHUNK - 200)
        commands.insert(closed_at, SetPollStatus(poll, open=False))
        commands.insert(closed_at + rng.randrange(20, 200), SetPollStatus(poll, open=True))
    return commands


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    path = tmp_path_factory.mktemp("rebuild") / "ledger.db"
    rng = random.Random(SEED)
    started = time.perf_counter()
    ledger = await open_ledger(path)
    outcomes: Counter[str] = Counter()
    try:
        await ledger.execute(SyncPolls(POLLS))
        cands = {p.poll_id: sorted(ledger.state.polls[p.poll_id].candidates) for p in POLLS}
        next_email = [0]
        while ledger.state.head_seq < TARGET_EVENTS:
            users = list(ledger.state.users) or ["nobody"]
            for result in await execute_all(ledger, _commands(rng, users, cands, next_email), CHUNK):
                if isinstance(result, DomainError):
                    outcomes[result.code] += 1
                else:
                    assert not isinstance(result, BaseException), repr(result)
                    outcomes[type(result).__name__] += 1
        live = state_rows(ledger.state)
        head, by_type = ledger.state.head_seq, dict(ledger.state.events_by_type)
    finally:
        await ledger.close()
    return History(path, head, outcomes, by_type, live, time.perf_counter() - started)


@pytest.fixture
def ledger_copy(history: History, tmp_path: Path) -> Path:
    return copy_ledger(history.path, tmp_path / "ledger.db")


async def rebuild_file(path: Path) -> RebuildReport:
    store = await SqliteEventStore.open(path)
    try:
        return await rebuild(store)
    finally:
        await store.close()


def test_history_has_over_100k_events_of_every_kind_and_refusal(history: History) -> None:
    print(f"built {history.head} events in {history.seconds:.1f} s: {dict(history.outcomes)}")
    assert history.head >= TARGET_EVENTS
    assert set(history.events_by_type) == {
        "PollCreated", "CandidateAdded", "PollOpened", "PollClosed", "UserRegistered", "VoteCast",
    }
    assert history.events_by_type["PollClosed"] >= 10
    for code in ("already_voted", "poll_closed", "not_eligible", "unknown_candidate",
                 "idempotency_key_reused", "email_taken"):
        assert history.outcomes[code] > 0, code
    assert history.outcomes["VoteRecord"] > 80_000


async def test_inline_projections_equal_a_fresh_replay_of_the_whole_log(history: History) -> None:
    replayed = state_rows(await replay_file(history.path))

    assert await live_tables(history.path) == history.live_state_rows == replayed


async def test_rebuild_of_an_untouched_ledger_reports_no_changes(history: History, ledger_copy: Path) -> None:
    before = await live_tables(ledger_copy)

    report = await rebuild_file(ledger_copy)

    assert report.changes == []
    assert report.head_seq == history.head
    assert await live_tables(ledger_copy) == before == history.live_state_rows


async def test_rebuild_reports_exactly_the_edited_rows_restores_them_and_the_audit_then_passes(
    history: History, ledger_copy: Path
) -> None:
    rows = history.live_state_rows
    rng = random.Random(SEED + 1)
    candidate = rng.choice(rows["candidates"])
    deleted_ballot, edited_ballot = rng.sample(rows["ballots"], 2)
    user = rng.choice(rows["users"])
    idempotent = rng.choice(rows["idempotency"])
    poll = next(r for r in rows["polls"] if r[0] == "unlimited")
    bogus_ballot = ("unlimited", "0" * 32, candidate[0], 3, 42)
    position = next(r for r in rows["projection_position"] if r[0] == "users")
    assert position[1] == history.head
    with tamper(ledger_copy) as conn:
        conn.execute("UPDATE candidates SET votes = votes + 5 WHERE candidate_id = ?", (candidate[0],))
        conn.execute("DELETE FROM ballots WHERE poll_id = ? AND user_id = ?", deleted_ballot[:2])
        conn.execute("UPDATE ballots SET count = count + 1 WHERE poll_id = ? AND user_id = ?",
                     edited_ballot[:2])
        conn.execute("INSERT INTO ballots VALUES (?, ?, ?, ?, ?)", bogus_ballot)
        conn.execute("UPDATE users SET email = 'mallory@example.com' WHERE user_id = ?", user[:1])
        conn.execute("DELETE FROM idempotency WHERE user_id = ? AND key = ?", idempotent[:2])
        conn.execute("UPDATE polls SET total_votes = 0 WHERE poll_id = 'unlimited'")
        conn.execute("DELETE FROM projection_position WHERE name = 'users'")

    report = await rebuild_file(ledger_copy)

    changes = {(d.table, d.key): (d.live, d.expected) for d in report.changes}
    assert len(changes) == len(report.changes)
    assert changes == {
        ("candidates", candidate[:1]): ((*candidate[:5], candidate[5] + 5, candidate[6]), candidate),
        ("ballots", deleted_ballot[:2]): (None, deleted_ballot),
        ("ballots", edited_ballot[:2]): ((*edited_ballot[:3], edited_ballot[3] + 1, edited_ballot[4]),
                                         edited_ballot),
        ("ballots", bogus_ballot[:2]): (bogus_ballot, None),
        ("users", user[:1]): ((user[0], "mallory@example.com", *user[2:]), user),
        ("idempotency", idempotent[:2]): (None, idempotent),
        ("polls", ("unlimited",)): ((*poll[:10], 0, poll[11]), poll),
        ("projection_position", ("users",)): (None, position),
    }
    replayed = state_rows(await replay_file(ledger_copy))
    assert await live_tables(ledger_copy) == replayed == rows
    assert (await audit_file(ledger_copy)).ok


async def test_a_rebuilt_ledger_reopens_keeps_voting_and_still_passes_the_audit(tmp_path: Path) -> None:
    """The swapped-in tables carry their constraints and take inline writes like the originals."""
    built = await build_sample(tmp_path / "small.db")
    with tamper(built.path) as conn:
        conn.execute("UPDATE candidates SET votes = 0")
        conn.execute("DELETE FROM users")
    assert len((await rebuild_file(built.path)).changes) > len(built.users)

    ledger = await open_ledger(built.path)
    try:
        user = await ledger.execute(RegisterUser("late@example.com", "Late", "h", "FE"))
        assert isinstance(user, Registered)
        with pytest.raises(EmailTakenError):
            await ledger.execute(RegisterUser("late@example.com", "Again", "h"))
        await ledger.execute(CastVote(user.user_id, "snack", built.candidates["snack"][0]))
    finally:
        await ledger.close()
    report = await audit_file(built.path)
    assert report.ok, report.failure
    assert report.head_seq == built.head + 2
    assert await live_tables(built.path) == state_rows(report.state)


async def test_tally_at_the_head_of_the_big_history_equals_the_live_tallies(history: History) -> None:
    """The ledger is far longer than one read chunk: time travel must page through all of it."""
    rows = history.live_state_rows
    store = await SqliteEventStore.open(history.path, readonly=True)
    try:
        for poll in rows["polls"]:
            results = await tally_at(store, poll[0], history.head)
            assert results.total_votes == poll[10]
            assert [(t.candidate_id, t.votes) for t in results.candidates] == [
                (c[0], c[5]) for c in rows["candidates"] if c[1] == poll[0]
            ]
    finally:
        await store.close()
