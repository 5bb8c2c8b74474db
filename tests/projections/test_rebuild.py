"""Rebuild equals live, row for row, on a randomized history of over 100,000 events.

The history is driven through ``VoteLedger.execute`` (the real Decider and group-commit writer) in
concurrent chunks of 2,000 commands, from a seeded generator: registrations (some with a taken
email), votes under the single, changeable and unlimited policies and under eligibility rules,
refused votes of every kind, idempotency keys, and polls closed and reopened with SetPollStatus.
"""

from __future__ import annotations

import gc
import random
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio

from ledger.errors import CorruptEventError
from ledger.open import open_store
from ledger.tables import TableSpec
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
from projections.tables import TABLES, state_rows
from tests.projections.helpers import (
    Row,
    audit_file,
    build_sample,
    candidates,
    copy_ledger,
    execute_all,
    forge,
    forged_vote,
    live_tables,
    named,
    open_ledger,
    replay_file,
    replay_in_two_file,
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
        live = named(state_rows(ledger.state))
        head, by_type = ledger.state.head_seq, dict(ledger.state.events_by_type)
    finally:
        await ledger.close()
    return History(path, head, outcomes, by_type, live, time.perf_counter() - started)


@pytest.fixture
def ledger_copy(history: History, tmp_path: Path) -> Path:
    return copy_ledger(history.path, tmp_path / "ledger.db")


async def rebuild_file(path: Path, processes: int = 1) -> RebuildReport:
    store = await open_store(path)
    reopen = partial(open_store, path, readonly=True) if processes == 2 else None
    try:
        return await rebuild(store, reopen=reopen)
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
    replayed = named(state_rows(await replay_file(history.path)))

    assert await live_tables(history.path) == history.live_state_rows == replayed


async def test_a_fold_in_two_processes_equals_the_fold_of_the_whole_log(history: History) -> None:
    whole = await replay_file(history.path)

    halves = await replay_in_two_file(history.path)

    assert halves == whole  # every user, poll, tally, ballot and idempotency key, and the head
    assert halves.events_by_type == history.events_by_type
    assert named(state_rows(halves)) == history.live_state_rows


async def test_the_fold_gives_the_collector_nothing_to_walk_per_signup_or_vote(history: History) -> None:
    """A running service gains a user per signup and a ballot per voter: were the collector to
    track them, every full collection would walk them all (78 ms a collection after 100k votes,
    stalling every request)."""
    state = await replay_file(history.path)

    assert state.ballots and not any(gc.is_tracked(ballot) for ballot in state.ballots.values())
    assert state.users and not any(gc.is_tracked(user) for user in state.users.values())
    assert state.idempotency and not any(gc.is_tracked(record) for record in state.idempotency.values())


@pytest.mark.parametrize("processes", [1, 2])
async def test_rebuild_of_an_untouched_ledger_reports_no_changes(
    history: History, ledger_copy: Path, processes: int
) -> None:
    before = await live_tables(ledger_copy)
    schema = _schema(ledger_copy)

    report = await rebuild_file(ledger_copy, processes)

    assert report.changes == []
    assert report.rebuilt == []
    assert _schema(ledger_copy) == schema  # nothing written: every table already agreed
    assert report.head_seq == history.head
    assert await live_tables(ledger_copy) == before == history.live_state_rows


@pytest.mark.parametrize("processes", [1, 2])
async def test_rebuild_reports_exactly_the_edited_rows_restores_them_and_the_audit_then_passes(
    history: History, ledger_copy: Path, processes: int
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

    report = await rebuild_file(ledger_copy, processes)

    changes = {(d.table, d.key): (d.live, d.expected) for d in report.changes}
    assert len(changes) == len(report.changes)
    assert report.rebuilt == [spec.name for spec in TABLES]
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
    replayed = named(state_rows(await replay_file(ledger_copy)))
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
    assert await live_tables(built.path) == named(state_rows(report.state))


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_rebuild_folds_in_what_was_appended_while_it_folded(tmp_path: Path, processes: int) -> None:
    """Events appended after the fold read the head, and before the rebuild took the write lock,
    are folded in within its transaction: the tables it writes end at the log's real head."""
    built = await build_sample(tmp_path / "small.db")
    voters = [next(u for u in built.users if ord(u[-1]) % 2 == half) for half in (0, 1)]
    snack = built.candidates["snack"][0]
    appended: list[int] = []

    def append_during_the_fold(done: int, total: int) -> None:
        if not appended:  # one vote by a user of each half, without their projection rows
            appended.extend(forge(built.path, forged_vote("snack", snack, voter)) for voter in voters)

    store = await open_store(built.path)
    reopen = partial(open_store, built.path, readonly=True) if processes == 2 else None
    try:
        report = await rebuild(store, append_during_the_fold, reopen)
    finally:
        await store.close()

    assert appended == [built.head + 1, built.head + 2]
    assert report.head_seq == built.head + 2
    assert {"ballots", "candidates", "projection_position"} <= set(report.rebuilt)
    audited = await audit_file(built.path)
    assert audited.ok, audited.failure
    assert audited.state.polls["snack"].candidates[snack].votes == (
        (await replay_file(built.path, upto=built.head)).polls["snack"].candidates[snack].votes + 2
    )


async def test_a_rebuild_in_two_reads_the_live_rows_again_if_they_changed_after_it_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reads the live rows while the second process's half comes in: a commit after that
    read, before the write lock, must not go unseen."""
    built = await build_sample(tmp_path / "small.db")
    store = await open_store(built.path)
    read = store.rows
    tables_read: list[str] = []

    async def edit_once_the_live_rows_are_read(spec: TableSpec) -> list[Row]:
        rows = await read(spec)
        tables_read.append(spec.name)
        if len(tables_read) == len(TABLES):
            with tamper(built.path) as conn:
                conn.execute("UPDATE candidates SET votes = votes + 1")
        return rows

    monkeypatch.setattr(store, "rows", edit_once_the_live_rows_are_read)
    try:
        report = await rebuild(store, reopen=partial(open_store, built.path, readonly=True))
    finally:
        await store.close()

    # the projections' live rows, read before the write lock; then the tree's, checked under it
    assert tables_read == [spec.name for spec in TABLES] + ["merkle_tree", "checkpoints"]
    assert report.rebuilt == ["candidates"]
    audited = await audit_file(built.path)
    assert audited.ok, audited.failure


def _schema(path: Path) -> list[tuple[str, str, str | None]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


async def test_rebuild_builds_afresh_only_the_tables_that_differ(history: History, ledger_copy: Path) -> None:
    with tamper(ledger_copy) as conn:
        conn.execute("UPDATE candidates SET votes = votes + 1")
    schema = {name: sql for _, name, sql in _schema(ledger_copy)}

    report = await rebuild_file(ledger_copy)

    assert report.rebuilt == ["candidates"]
    assert {d.table for d in report.changes} == {"candidates"}
    after = {name: sql for _, name, sql in _schema(ledger_copy)}
    created = schema.pop("candidates")
    assert created is not None and after.pop("candidates") == created.replace("candidates", '"candidates"', 1)
    assert after == schema
    assert await live_tables(ledger_copy) == history.live_state_rows


async def test_a_table_with_the_right_rows_but_a_foreign_shape_is_built_afresh(tmp_path: Path) -> None:
    """An index or trigger someone added, or a constraint someone dropped, goes with a rebuild."""
    built = await build_sample(tmp_path / "small.db")
    rows = await live_tables(built.path)
    with tamper(built.path) as conn:
        conn.execute("CREATE INDEX ballots_by_candidate ON ballots (candidate_id)")
        conn.execute(
            "CREATE TRIGGER no_new_polls BEFORE INSERT ON polls BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
        conn.execute("ALTER TABLE users RENAME TO users_old")
        conn.execute("CREATE TABLE Users (user_id, email, name, part, team, seq)")  # no constraints
        conn.execute("INSERT INTO users SELECT * FROM users_old")
        conn.execute("DROP TABLE users_old")
        conn.execute("CREATE INDEX users_by_part ON USERS (part)")  # SQLite's names ignore case

    report = await rebuild_file(built.path)

    assert report.changes == []
    assert report.rebuilt == ["users", "polls", "ballots"]
    assert {name for kind, name, _ in _schema(built.path) if kind != "table"}.isdisjoint(
        {"ballots_by_candidate", "no_new_polls", "users_by_part"}
    )
    assert await live_tables(built.path) == rows
    with closing(sqlite3.connect(built.path)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO users SELECT user_id || 'x', email, name, part, team, seq FROM users")


@pytest.mark.parametrize("half", [0, 1])
async def test_a_fold_in_two_ends_at_the_last_event_whichever_half_holds_it(
    tmp_path: Path, half: int
) -> None:
    built = await build_sample(tmp_path / "small.db")
    voter = next(u for u in built.users if ord(u[-1]) % 2 == half)
    ledger = await open_ledger(built.path)
    try:
        await ledger.execute(CastVote(voter, "snack", built.candidates["snack"][0]))
    finally:
        await ledger.close()

    halves = await replay_in_two_file(built.path)

    assert halves == await replay_file(built.path)
    assert halves.head_seq == built.head + 1


@pytest.mark.parametrize("where", ["first", "middle"])
async def test_a_missing_event_stops_a_fold_in_two_as_it_stops_a_replay(tmp_path: Path, where: str) -> None:
    """Neither half sees the other's positions: the merge counts them, and an event that names
    what a missing one created fails in its half."""
    built = await build_sample(tmp_path / "small.db")
    seq = 1 if where == "first" else built.head // 2
    with tamper(built.path) as conn:
        conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
    expected = {
        "first": "seq 2: CandidateAdded names 'president', which no event before it created",
        "middle": f"head is at seq {built.head}, but {built.head - 1} events lie up to it",
    }[where]

    with pytest.raises(CorruptEventError, match=f"expected seq {seq}, got {seq + 1}"):
        await replay_file(built.path)
    with pytest.raises(CorruptEventError, match=expected):
        await replay_in_two_file(built.path)
    with pytest.raises(CorruptEventError, match=expected):
        await rebuild_file(built.path, processes=2)


async def test_a_row_whose_stream_column_is_not_its_bodys_stops_a_fold_in_two(tmp_path: Path) -> None:
    """The shards are chosen by the column: a vote filed under a poll's stream would be counted
    by both processes."""
    built = await build_sample(tmp_path / "small.db")
    seq = built.votes[0].seq
    with tamper(built.path) as conn:
        conn.execute("UPDATE events SET stream = 'poll:elsewhere' WHERE seq = ?", (seq,))

    with pytest.raises(CorruptEventError, match=f"seq {seq}: the stream column says 'poll:elsewhere'"):
        await replay_in_two_file(built.path)


async def test_one_email_registered_to_users_of_both_halves_stops_a_fold_in_two(tmp_path: Path) -> None:
    built = await build_sample(tmp_path / "small.db")
    even = next(u for u in built.users if ord(u[-1]) % 2 == 0)
    odd = next(u for u in built.users if ord(u[-1]) % 2 == 1)
    with tamper(built.path) as conn:
        conn.execute(
            "UPDATE private_data SET body = (SELECT p.body FROM private_data p JOIN events e "
            "ON p.event_id = e.id WHERE e.stream = ?) WHERE event_id = (SELECT id FROM events "
            "WHERE stream = ?)", (f"user:{even}", f"user:{odd}"),
        )

    with pytest.raises(CorruptEventError, match="1 email"):
        await replay_in_two_file(built.path)


async def test_tally_at_the_head_of_the_big_history_equals_the_live_tallies(history: History) -> None:
    """The ledger is far longer than one read chunk: time travel must page through all of it."""
    rows = history.live_state_rows
    store = await open_store(history.path, readonly=True)
    try:
        for poll in rows["polls"]:
            results = await tally_at(store, poll[0], history.head)
            assert results.total_votes == poll[10]
            assert [(t.candidate_id, t.votes) for t in results.candidates] == [
                (c[0], c[5]) for c in rows["candidates"] if c[1] == poll[0]
            ]
    finally:
        await store.close()
