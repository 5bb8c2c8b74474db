"""Group commit through the vote ledger: batches land whole, gapless and chained, and every rule is
decided on the log as it stands when the batch commits, also against a second writer on the same ledger.

The writer's logic runs on both backends: two stores on one in-memory ledger are two writers as
two processes on one file are. Where a test injects a fault into the store, or counts its
transactions, it runs on a real SQLite file. Every command runs under a deadline, so a wedged
writer fails its test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger.memory import MemoryEventStore
from ledger.open import open_store
from ledger.sqlite.store import SqliteEventStore
from ledger.store import EMPTY_WRITES, Head, StoredEvent
from ledger.tables import TableWrites
from projections.commands import (
    Appended,
    CandidateSpec,
    CastVote,
    Command,
    PollSpec,
    Registered,
    RegisterUser,
    Result,
    SyncPolls,
)
from projections.errors import (
    AlreadyVotedError,
    EmailTakenError,
    PollConfigError,
    UnknownCandidateError,
    UnknownPollError,
)
from projections.service import FRESHNESS, VoteLedger
from projections.state import VoteRecord
from projections.tables import POSITION
from tests.ledger.helpers import TEST_SIGNING, answered_inline, assert_chain, read_all

DEADLINE = 20.0  # seconds
POLL = PollSpec("p1", "Best language", candidates=(CandidateSpec("Ada"), CandidateSpec("Bob")))


class CountingStore(SqliteEventStore):
    """The real SQLite store, counting the batches it commits."""

    commits = 0

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        foreign = await super().append(head, events, writes, erase)
        if not foreign:
            self.commits += 1
        return foreign


class HeldAnswerStore(SqliteEventStore):
    """The real SQLite store, holding each committed batch's answer until the test releases it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        foreign = await super().append(head, events, writes, erase)
        self.committed.set()
        await self.release.wait()
        return foreign


class GatedStore(SqliteEventStore):
    """The real SQLite store, holding each batch at the door until the test opens the gate."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        self.waiting.set()
        await self.gate.wait()
        return await super().append(head, events, writes, erase)


@pytest.fixture(params=["sqlite", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's ledger is: a SQLite file, or an in-memory ledger named for the test."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    name = f"group-commit-{uuid.uuid4().hex}"
    yield f"memory:{name}"
    MemoryEventStore.forget(name)


@asynccontextmanager
async def open_ledger(
    location: str | Path, store_type: type[SqliteEventStore] | None = None, max_batch: int = 512
) -> AsyncIterator[VoteLedger]:
    """A ledger on ``location`` (created if missing), through ``store_type`` if given."""
    if store_type is None:
        store = await open_store(location, create=True)
    else:
        store = await store_type.open(location, create=True)
    try:
        ledger = await VoteLedger.open(store, TEST_SIGNING, max_batch=max_batch)
        yield ledger
        await asyncio.wait_for(ledger.close(), DEADLINE)
    finally:
        await store.close()  # a no-op after ledger.close(); releases the file if that failed


@pytest.fixture
async def ledger(location: str) -> AsyncIterator[VoteLedger]:
    async with open_ledger(location) as ledger:
        yield ledger


@pytest.fixture
async def pair(location: str) -> AsyncIterator[tuple[VoteLedger, VoteLedger]]:
    """Two ledgers on one log, each with its own store: two processes, as far as the log can tell."""
    async with open_ledger(location) as one, open_ledger(location) as two:
        yield one, two


async def execute(ledger: VoteLedger, command: Command) -> Result:
    return await asyncio.wait_for(ledger.execute(command), DEADLINE)


async def settle(*pending: Awaitable[Result]) -> list[Result | BaseException]:
    """Run commands concurrently; each outcome is its result or its error."""
    return await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), DEADLINE)


async def register(ledger: VoteLedger, email: str) -> str:
    result = await execute(ledger, RegisterUser(email, email.split("@")[0], "argon2-hash"))
    assert isinstance(result, Registered)
    return result.user_id


def candidate_ids(ledger: VoteLedger, poll_id: str = "p1") -> list[int]:
    return sorted(ledger.state.polls[poll_id].candidates)


def outcome_names(*outcomes: Result | BaseException) -> list[str]:
    return sorted(type(outcome).__name__ for outcome in outcomes)


async def assert_log_is_whole(ledger: VoteLedger) -> None:
    """The log is gapless and chained, and the inline projections stand at its head."""
    events = await read_all(ledger.store)
    assert_chain(events)
    positions = {(seq, digest) for _, seq, digest in await ledger.store.rows(POSITION)}
    assert positions == {(events[-1].seq, events[-1].hash)}


# --- one writer -----------------------------------------------------------------------------


async def test_a_thousand_concurrent_registrations_land_gapless_in_few_transactions(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "ledger.db", CountingStore) as ledger:
        store = ledger.store
        assert isinstance(store, CountingStore)
        store.commits = 0

        results = await settle(
            *(ledger.execute(RegisterUser(f"user{i}@example.org", f"User {i}", "hash")) for i in range(1000))
        )

        registered = [r for r in results if isinstance(r, Registered)]
        assert len(registered) == 1000
        assert sorted(r.seq for r in registered) == list(range(1, 1001))
        assert len({r.user_id for r in registered}) == 1000
        assert 1 <= store.commits <= 10  # group commit: a handful of transactions, not a thousand
        events = await read_all(store)
        assert_chain(events)
        assert {e.seq: e.stream for e in events} == {r.seq: f"user:{r.user_id}" for r in registered}
        assert len(ledger.state.users) == 1000
        await assert_log_is_whole(ledger)


@pytest.mark.parametrize("max_batch", [1, 512], ids=["one-per-batch", "one-batch"])
async def test_a_concurrent_double_vote_is_accepted_once(location: str, max_batch: int) -> None:
    async with open_ledger(location, max_batch=max_batch) as ledger:
        await execute(ledger, SyncPolls((POLL,)))
        user = await register(ledger, "ada@example.org")
        ada, bob = candidate_ids(ledger)

        results = await settle(
            *(ledger.execute(CastVote(user, "p1", ada if i % 2 else bob)) for i in range(20))
        )

        accepted = [r for r in results if isinstance(r, VoteRecord)]
        refused = [r for r in results if not isinstance(r, VoteRecord)]
        assert len(accepted) == 1
        assert len(refused) == 19
        assert all(isinstance(r, AlreadyVotedError) for r in refused)
        poll = ledger.state.polls["p1"]
        assert (poll.total_votes, sum(c.votes for c in poll.candidates.values())) == (1, 1)
        votes = [e for e in await read_all(ledger.store) if e.type == "VoteCast"]
        assert [e.seq for e in votes] == [accepted[0].seq]
        await assert_log_is_whole(ledger)


async def test_a_failing_command_does_not_fail_the_others_in_its_batch(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "ledger.db", CountingStore) as ledger:
        store = ledger.store
        assert isinstance(store, CountingStore)
        await execute(ledger, SyncPolls((POLL,)))
        users = [await register(ledger, f"voter{i}@example.org") for i in range(10)]
        ada, _ = candidate_ids(ledger)
        store.commits = 0

        results = await settle(
            *(ledger.execute(CastVote(u, "p1", ada)) for u in users[:5]),
            *(ledger.execute(CastVote(u, "p1", 999)) for u in users[5:]),
            ledger.execute(CastVote(users[0], "no-such-poll", ada)),
            ledger.execute(RegisterUser("late@example.org", "Late", "hash")),
        )

        assert store.commits == 1  # one batch held them all
        assert all(isinstance(r, VoteRecord) for r in results[:5])
        assert all(isinstance(r, UnknownCandidateError) for r in results[5:10])
        assert isinstance(results[10], UnknownPollError)
        assert isinstance(results[11], Registered)
        assert ledger.state.polls["p1"].candidates[ada].votes == 5
        await assert_log_is_whole(ledger)


async def test_a_bad_polls_file_does_not_fail_the_registrations_batched_with_it(ledger: VoteLedger) -> None:
    bad = SyncPolls((POLL, PollSpec("p2", "Broken", policy="no-such-policy")))

    registration, sync, good = await settle(
        ledger.execute(RegisterUser("ada@example.org", "Ada", "hash")),
        ledger.execute(bad),
        ledger.execute(SyncPolls((PollSpec("p3", "Fine"),))),
    )

    assert isinstance(registration, Registered)
    assert isinstance(sync, PollConfigError)
    assert isinstance(good, Appended)
    assert "p1" not in ledger.state.polls  # the bad command left nothing behind, not even its good half
    assert set(ledger.state.polls) == {"p3"}
    await assert_log_is_whole(ledger)


async def test_a_refresh_between_a_commit_and_its_answer_does_not_break_the_writer(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "ledger.db", HeldAnswerStore) as ledger:
        store = ledger.store
        assert isinstance(store, HeldAnswerStore)
        pending = asyncio.create_task(ledger.execute(RegisterUser("ada@example.org", "Ada", "hash")))
        await asyncio.wait_for(store.committed.wait(), DEADLINE)

        await ledger.refresh()  # e.g. a read request, catching up while the batch is being answered
        store.release.set()

        first = await asyncio.wait_for(pending, DEADLINE)
        second = await execute(ledger, RegisterUser("bob@example.org", "Bob", "hash"))
        assert isinstance(first, Registered) and isinstance(second, Registered)
        assert (first.seq, second.seq) == (1, 2)
        assert ledger.state.head_seq == 2
        await assert_log_is_whole(ledger)


async def test_refreshing_all_the_time_while_writing_keeps_state_and_log_in_step(ledger: VoteLedger) -> None:
    stop = asyncio.Event()

    async def refresher() -> int:
        count = 0
        while not stop.is_set():
            await ledger.refresh()
            count += 1
            await asyncio.sleep(0)
        return count

    task = asyncio.create_task(refresher())
    try:
        for batch in range(20):
            results = await settle(
                *(ledger.execute(RegisterUser(f"{batch}-{i}@example.org", "x", "hash")) for i in range(20))
            )
            assert all(isinstance(r, Registered) for r in results), results
    finally:
        stop.set()
        assert await asyncio.wait_for(task, DEADLINE) > 0

    assert ledger.state.head_seq == 400
    assert len(ledger.state.users) == 400
    await assert_log_is_whole(ledger)


# --- two writers on one file ----------------------------------------------------------------


async def test_refresh_sees_the_other_ledgers_events_while_a_batch_of_its_own_is_in_flight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    async with open_ledger(path) as one, open_ledger(path, GatedStore) as two:
        store = two.store
        assert isinstance(store, GatedStore)
        mine = asyncio.create_task(two.execute(RegisterUser("two@example.org", "Two", "hash")))
        try:
            await asyncio.wait_for(store.waiting.wait(), DEADLINE)  # seq 1 is in flight in ``two``
            await register(one, "one@example.org")  # ... and taken by ``one``

            await two.refresh()

            assert two.state.user_by_email("one@example.org") is not None
        finally:
            store.gate.set()
            result = await asyncio.wait_for(mine, DEADLINE)
        assert isinstance(result, Registered) and result.seq == 2


async def test_one_user_voting_through_two_ledgers_at_once_is_accepted_once(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    users = [await register(one, f"voter{i}@example.org") for i in range(10)]
    ada, bob = candidate_ids(one)
    await two.refresh()  # as the service does before each request: ``two`` knows the poll and users

    results = await settle(
        *(ledger.execute(CastVote(u, "p1", ada if ledger is one else bob)) for u in users for ledger in pair)
    )

    for user, first, second in zip(users, results[::2], results[1::2], strict=True):
        assert outcome_names(first, second) == ["AlreadyVotedError", "VoteRecord"], user
    votes = [e for e in await read_all(one.store) if e.type == "VoteCast"]
    assert len(votes) == 10
    await one.refresh()
    await two.refresh()
    for ledger in pair:
        poll = ledger.state.polls["p1"]
        assert poll.total_votes == 10
        assert poll.candidates[ada].votes + poll.candidates[bob].votes == 10
    await assert_log_is_whole(one)


async def test_an_email_registered_through_one_ledger_is_taken_in_the_other(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await register(one, "ada@example.org")

    with pytest.raises(EmailTakenError):
        await execute(two, RegisterUser("ada@example.org", "Ada again", "hash"))


async def test_concurrent_registrations_of_one_email_through_two_ledgers_succeed_once(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    emails = [f"person{i}@example.org" for i in range(20)]

    results = await settle(
        *(ledger.execute(RegisterUser(email, "Someone", "hash")) for email in emails for ledger in pair)
    )

    for email, first, second in zip(emails, results[::2], results[1::2], strict=True):
        assert outcome_names(first, second) == ["EmailTakenError", "Registered"], email
    events = await read_all(pair[0].store)
    assert len(events) == 20
    assert_chain(events)


async def test_two_ledgers_writing_at_once_lose_and_duplicate_nothing(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair

    results = await settle(
        *(ledger.execute(RegisterUser(f"{name}{i}@example.org", "x", "hash"))
          for i in range(150) for name, ledger in (("one", one), ("two", two)))
    )

    assert sorted(r.seq for r in results if isinstance(r, Registered)) == list(range(1, 301))
    await one.refresh()
    await two.refresh()
    assert one.state.head_seq == two.state.head_seq == 300
    assert one.state.users_by_email == two.state.users_by_email
    assert len(one.state.users_by_email) == 300
    await assert_log_is_whole(one)


async def test_refresh_shows_one_ledger_what_the_other_appended(pair: tuple[VoteLedger, VoteLedger]) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    user = await register(one, "ada@example.org")

    assert two.state.user_by_email("ada@example.org") is None
    await two.refresh()

    found = two.state.user_by_email("ada@example.org")
    assert found is not None and found.user_id == user
    assert "p1" in two.state.polls
    assert (two.state.head_seq, two.state.head_hash) == (one.state.head_seq, one.state.head_hash)
    await two.refresh()  # nothing new: a no-op
    assert two.state.head_seq == one.state.head_seq


async def test_the_check_before_a_read_waits_for_nothing_unless_another_ledger_appended(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    await two.refresh()

    answered_inline(two.refresh_or_stay(0.0))  # nothing new: no task, no wait
    await register(one, "ada@example.org")
    await two.refresh_or_stay(0.0)  # the other's events: read, in a task bounded in time
    await one.refresh_or_stay(0.0)  # its own: the head is looked at, nothing read

    assert two.state.user_by_email("ada@example.org") is not None
    answered_inline(two.refresh_or_stay(0.0))
    answered_inline(one.refresh_or_stay(0.0))


async def test_a_read_waits_for_a_check_that_found_the_other_ledgers_commits(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await two.refresh()
    await register(one, "ada@example.org")
    await asyncio.sleep(2 * FRESHNESS)  # two's last check is older than a read may be

    check = asyncio.ensure_future(two.refresh_or_stay(FRESHNESS))
    await asyncio.sleep(0)  # it asked the store, which said yes: the log is followed in a task

    assert not two.fresh(FRESHNESS)  # so a read arriving now waits for it (as fresh_reads does)
    await check
    assert two.fresh(DEADLINE)  # nothing more to follow (within any bound a loaded machine needs)
    assert two.state.user_by_email("ada@example.org") is not None


async def test_a_vote_is_not_refused_for_what_only_the_other_ledger_has_seen(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    user = await register(one, "ada@example.org")
    ada, _ = candidate_ids(one)

    # ``two`` never refreshed: its writer must look at the log before refusing an unknown poll or user
    vote = await execute(two, CastVote(user, "p1", ada))

    assert isinstance(vote, VoteRecord)
    assert vote.seq == one.state.head_seq + 1
    with pytest.raises(AlreadyVotedError):
        await execute(one, CastVote(user, "p1", ada))
    await assert_log_is_whole(two)


async def test_a_refusal_on_a_stale_state_is_decided_again_on_the_log(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    user = await register(one, "ada@example.org")

    with pytest.raises(UnknownCandidateError):
        await execute(two, CastVote(user, "p1", 999))

    assert two.state.head_seq == one.state.head_seq  # it caught up to refuse for the right reason


async def test_a_vote_accepted_on_a_stale_state_is_decided_again_on_the_log(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    await execute(one, SyncPolls((POLL,)))
    user = await register(one, "ada@example.org")
    ada, bob = candidate_ids(one)
    await two.refresh()
    first = await execute(one, CastVote(user, "p1", ada))

    # ``two`` has not seen that vote: only the head check at commit can tell it
    assert ("p1", user) not in two.state.ballots
    with pytest.raises(AlreadyVotedError):
        await execute(two, CastVote(user, "p1", bob))

    assert isinstance(first, VoteRecord)
    assert two.state.head_seq == one.state.head_seq == first.seq
    assert two.state.polls["p1"].candidates[ada].votes == 1
    await assert_log_is_whole(two)


async def test_a_registration_through_a_stale_ledger_lands_after_the_other_ledgers_events(
    pair: tuple[VoteLedger, VoteLedger],
) -> None:
    one, two = pair
    theirs = [await register(one, f"one{i}@example.org") for i in range(3)]

    mine = await execute(two, RegisterUser("two@example.org", "Two", "hash"))

    assert isinstance(mine, Registered)
    assert mine.seq == 4
    assert set(theirs) <= set(two.state.users)  # caught up on the way
    await assert_log_is_whole(two)
