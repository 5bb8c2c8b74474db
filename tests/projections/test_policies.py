"""Voting policies and eligibility, decided by the real Decider and group-commit writer (no HTTP).

The rules need no disk: their ledgers are in memory, audited after each test. A restart, and the
forged rows only a file lets an outsider write, take a real ledger file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.open import locate
from projections.audit import AuditReport
from projections.commands import (
    CandidateSpec,
    CastVote,
    PollSpec,
    Registered,
    RegisterUser,
    SetPollStatus,
    SyncPolls,
)
from projections.errors import (
    AlreadyVotedError,
    IdempotencyConflictError,
    NotEligibleError,
    PollClosedError,
    PollNotOpenError,
    UnknownCandidateError,
    UnknownPollError,
)
from projections.service import VoteLedger
from projections.state import VoteRecord
from tests.conftest import audit_in_process, open_vote_ledger
from tests.projections.helpers import (
    T0,
    audit_file,
    candidates,
    execute_all,
    forge,
    forged_vote,
)

HOUR = 3_600_000
TEAMS = ("Aetheria", "Hooking")
POLLS = (
    PollSpec("single", "Single", "single", candidates=candidates("S1", "S2", "S3")),
    PollSpec("changeable", "Changeable", "changeable", candidates=candidates("C1", "C2", "C3")),
    PollSpec("unlimited", "Unlimited", "unlimited", candidates=candidates("U1", "U2")),
    PollSpec("fe-only", "Frontend lead", "single", same_part="FE",
             candidates=candidates("F1", "F2", part="FE")),
    PollSpec("teams", "Best team", "changeable", not_own_team=True,
             candidates=tuple(CandidateSpec(t, team=t) for t in TEAMS)),
    PollSpec("timed", "Timed", "single", opens_at=T0 + HOUR, closes_at=T0 + 2 * HOUR,
             candidates=candidates("T1", "T2")),
    PollSpec("pending", "Not opened yet", "single", open=False, candidates=candidates("P1")),
)


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Setup:
    db: str  # a ledger file's path, or a memory: URL
    ledger: VoteLedger
    clock: Clock
    cands: dict[str, list[int]] = field(default_factory=dict)

    closed: bool = False

    @property
    def file(self) -> Path:
        """The ledger file, for a ledger that keeps one."""
        path = locate(self.db).path
        assert path is not None, f"{self.db} keeps no file"
        return path

    async def reopen(self) -> None:
        await self.ledger.close()
        self.ledger = await open_vote_ledger(self.db, self.clock)

    async def close(self) -> None:
        await self.ledger.close()
        self.closed = True

    async def user(self, part: str | None = None, team: str | None = None) -> str:
        n = len(self.ledger.state.users)
        result = await self.ledger.execute(RegisterUser(f"v{n}@example.com", f"V{n}", "h", part, team))
        assert isinstance(result, Registered)
        return result.user_id

    async def vote(self, user: str, poll: str, index: int, key: str | None = None) -> VoteRecord:
        result = await self.ledger.execute(CastVote(user, poll, self.cands[poll][index], key))
        assert isinstance(result, VoteRecord)
        return result

    def votes(self, poll: str) -> list[int]:
        p = self.ledger.state.polls[poll]
        return [p.candidates[c].votes for c in self.cands[poll]]

    def total(self, poll: str) -> int:
        return self.ledger.state.polls[poll].total_votes

    @property
    def head(self) -> int:
        return self.ledger.state.head_seq


async def start(db: str) -> Setup:
    """A ledger at ``db`` with every poll of ``POLLS``, on a clock the test controls."""
    clock = Clock()
    ledger = await open_vote_ledger(db, clock)
    await ledger.execute(SyncPolls(POLLS))
    cands = {p.poll_id: sorted(ledger.state.polls[p.poll_id].candidates) for p in POLLS}
    return Setup(db, ledger, clock, cands)


async def audit_ledger(db: str) -> AuditReport:
    """The audit of a closed ledger: a file as an outsider audits it (``audit_file``), one in memory
    in this process, the only one that holds it."""
    path = locate(db).path
    return await (audit_in_process(db) if path is None else audit_file(path))


@pytest.fixture
async def setup(app_db: str) -> AsyncIterator[Setup]:
    s = await start(app_db)
    yield s
    await s.ledger.close()
    report = await audit_ledger(s.db)  # whatever a test did through the service, the log stays sound
    assert report.ok, report.failure


# --- single -------------------------------------------------------------------------------------


async def test_a_second_vote_by_the_same_user_in_a_single_vote_poll_is_rejected(setup: Setup) -> None:
    user = await setup.user()
    await setup.vote(user, "single", 0)
    head = setup.head

    with pytest.raises(AlreadyVotedError):
        await setup.vote(user, "single", 1)
    with pytest.raises(AlreadyVotedError):
        await setup.vote(user, "single", 0)

    assert setup.head == head
    assert setup.votes("single") == [1, 0, 0]


async def test_twenty_concurrent_single_votes_by_one_user_count_exactly_once(setup: Setup) -> None:
    user = await setup.user()
    results = await execute_all(
        setup.ledger, [CastVote(user, "single", setup.cands["single"][i % 3]) for i in range(20)]
    )

    assert sum(isinstance(r, VoteRecord) for r in results) == 1
    assert sum(isinstance(r, AlreadyVotedError) for r in results) == 19
    assert setup.total("single") == sum(setup.votes("single")) == 1


# --- changeable ---------------------------------------------------------------------------------


async def test_a_changed_vote_moves_the_tally_and_the_user_still_counts_once(setup: Setup) -> None:
    alice, bob = await setup.user(), await setup.user()
    await setup.vote(alice, "changeable", 0)
    await setup.vote(bob, "changeable", 0)
    assert setup.votes("changeable") == [2, 0, 0]

    await setup.vote(alice, "changeable", 2)
    assert setup.votes("changeable") == [1, 0, 1]
    await setup.vote(alice, "changeable", 2)  # the same choice again changes nothing
    assert setup.votes("changeable") == [1, 0, 1]
    assert setup.total("changeable") == 2
    assert setup.ledger.state.ballots[("changeable", alice)].count == 3


async def test_twenty_concurrent_changeable_votes_by_one_user_count_exactly_one_vote(setup: Setup) -> None:
    user, other = await setup.user(), await setup.user()
    await setup.vote(other, "changeable", 1)
    commands = [CastVote(user, "changeable", setup.cands["changeable"][(i * 7) % 3]) for i in range(20)]

    results = await asyncio.gather(*(setup.ledger.execute(c) for c in commands))

    assert all(isinstance(r, VoteRecord) for r in results)
    last = max((r for r in results if isinstance(r, VoteRecord)), key=lambda r: r.seq)
    expected = [0, 1, 0]
    expected[setup.cands["changeable"].index(last.candidate_id)] += 1
    assert setup.votes("changeable") == expected
    assert setup.total("changeable") == 2
    assert setup.ledger.state.ballots[("changeable", user)].count == 20


# --- unlimited ----------------------------------------------------------------------------------


async def test_every_vote_counts_in_an_unlimited_poll(setup: Setup) -> None:
    user = await setup.user()
    for index in (0, 1, 1, 0, 1):
        await setup.vote(user, "unlimited", index)
    await execute_all(setup.ledger, [CastVote(user, "unlimited", setup.cands["unlimited"][0])] * 10)

    assert setup.votes("unlimited") == [12, 3]
    assert setup.total("unlimited") == 15


# --- eligibility --------------------------------------------------------------------------------


async def test_only_voters_of_the_same_part_may_vote(setup: Setup) -> None:
    frontend, backend, nobody = await setup.user("FE"), await setup.user("BE"), await setup.user()

    with pytest.raises(NotEligibleError):
        await setup.vote(backend, "fe-only", 0)
    with pytest.raises(NotEligibleError):
        await setup.vote(nobody, "fe-only", 0)
    await setup.vote(frontend, "fe-only", 1)

    assert setup.votes("fe-only") == [0, 1]


async def test_nobody_may_vote_for_their_own_team(setup: Setup) -> None:
    member, outsider = await setup.user(team="Aetheria"), await setup.user()

    with pytest.raises(NotEligibleError):
        await setup.vote(member, "teams", 0)
    await setup.vote(member, "teams", 1)
    with pytest.raises(NotEligibleError):  # not even by changing a vote
        await setup.vote(member, "teams", 0)
    await setup.vote(outsider, "teams", 0)

    assert setup.votes("teams") == [1, 1]


async def test_votes_for_unknown_polls_and_candidates_are_rejected(setup: Setup) -> None:
    user = await setup.user()
    with pytest.raises(UnknownPollError):
        await setup.ledger.execute(CastVote(user, "nope", 1))
    with pytest.raises(UnknownCandidateError):  # a candidate of another poll
        await setup.ledger.execute(CastVote(user, "single", setup.cands["unlimited"][0]))


# --- poll status and time window ----------------------------------------------------------------


async def test_a_closed_poll_rejects_votes_until_it_is_reopened(setup: Setup) -> None:
    user = await setup.user()
    await setup.ledger.execute(SetPollStatus("unlimited", open=False))

    with pytest.raises(PollClosedError):
        await setup.vote(user, "unlimited", 0)
    await setup.ledger.execute(SetPollStatus("unlimited", open=True))
    await setup.vote(user, "unlimited", 0)
    assert setup.votes("unlimited") == [1, 0]


async def test_a_poll_the_file_left_closed_is_not_open_until_opened(setup: Setup) -> None:
    user = await setup.user()
    with pytest.raises(PollNotOpenError):
        await setup.vote(user, "pending", 0)
    await setup.ledger.execute(SetPollStatus("pending", open=True))
    await setup.vote(user, "pending", 0)


async def test_opens_at_and_closes_at_are_enforced_against_the_injected_clock(setup: Setup) -> None:
    early, first, last, late = [await setup.user() for _ in range(4)]
    setup.clock.now = T0 + HOUR - 1
    with pytest.raises(PollNotOpenError):
        await setup.vote(early, "timed", 0)
    setup.clock.now = T0 + HOUR
    await setup.vote(first, "timed", 0)
    setup.clock.now = T0 + 2 * HOUR - 1
    await setup.vote(last, "timed", 1)
    setup.clock.now = T0 + 2 * HOUR
    with pytest.raises(PollClosedError):
        await setup.vote(late, "timed", 0)

    assert setup.votes("timed") == [1, 1]
    assert setup.ledger.state.polls["timed"].public_status(setup.clock.now) == "closed"


# --- idempotency keys ---------------------------------------------------------------------------


async def test_the_same_key_and_vote_return_the_original_record_and_append_nothing(setup: Setup) -> None:
    user = await setup.user()
    original = await setup.vote(user, "unlimited", 0, key="k-1")
    head = setup.head

    assert await setup.vote(user, "unlimited", 0, key="k-1") == original
    retry = CastVote(user, "unlimited", setup.cands["unlimited"][0], "k-1")
    results = await execute_all(setup.ledger, [retry] * 5)
    assert results == [original] * 5
    assert setup.head == head
    assert setup.votes("unlimited") == [1, 0]


async def test_concurrent_retries_with_one_key_append_one_vote(setup: Setup) -> None:
    user = await setup.user()
    vote = CastVote(user, "unlimited", setup.cands["unlimited"][1], "retry")

    results = await execute_all(setup.ledger, [vote] * 8)

    assert all(isinstance(r, VoteRecord) for r in results)
    assert len({r.seq for r in results if isinstance(r, VoteRecord)}) == 1
    assert setup.votes("unlimited") == [0, 1]


async def test_the_same_key_for_a_different_vote_is_a_conflict(setup: Setup) -> None:
    user = await setup.user()
    await setup.vote(user, "changeable", 0, key="k-2")
    head = setup.head

    with pytest.raises(IdempotencyConflictError):
        await setup.vote(user, "changeable", 1, key="k-2")
    with pytest.raises(IdempotencyConflictError):
        await setup.vote(user, "unlimited", 0, key="k-2")
    assert setup.head == head


@pytest.mark.ledger_file
async def test_idempotency_keys_hold_across_a_restart(setup: Setup) -> None:
    user, other = await setup.user(), await setup.user()
    original = await setup.vote(user, "single", 2, key="k-3")
    await setup.vote(other, "single", 2, key="k-3")  # keys belong to their user
    head = setup.head

    await setup.reopen()

    assert await setup.vote(user, "single", 2, key="k-3") == original
    with pytest.raises(IdempotencyConflictError):
        await setup.vote(user, "single", 1, key="k-3")
    with pytest.raises(AlreadyVotedError):
        await setup.vote(user, "single", 2, key="k-4")
    assert setup.head == head
    assert setup.votes("single") == [0, 0, 2]


# --- the audit catches what the service would have refused ----------------------------------------


@pytest.fixture
async def forger(tmp_path: Path) -> AsyncIterator[Setup]:
    """Like ``setup``, but the test closes the ledger and forges rows; no audit at teardown."""
    s = await start(str(tmp_path / "forged.db"))
    yield s
    if not s.closed:
        await s.ledger.close()


async def test_the_audit_flags_a_forged_vote_by_an_ineligible_user(forger: Setup) -> None:
    backend = await forger.user("BE")
    await forger.close()
    seq = forge(forger.file, forged_vote("fe-only", forger.cands["fe-only"][0], backend))

    failure = (await audit_file(forger.file)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")
    assert "not_eligible" in failure.message


async def test_the_audit_flags_a_forged_vote_for_the_voters_own_team(forger: Setup) -> None:
    member = await forger.user(team="Hooking")
    await forger.close()
    seq = forge(forger.file, forged_vote("teams", forger.cands["teams"][1], member))

    failure = (await audit_file(forger.file)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")


async def test_the_audit_flags_a_forged_vote_after_the_poll_was_closed(forger: Setup) -> None:
    user = await forger.user()
    await forger.ledger.execute(SetPollStatus("unlimited", open=False))
    await forger.close()
    seq = forge(forger.file, forged_vote("unlimited", forger.cands["unlimited"][0], user))

    failure = (await audit_file(forger.file)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")
    assert "poll_closed" in failure.message


@pytest.mark.parametrize(("at", "code"), [(T0 + 2 * HOUR, "poll_closed"), (T0, "poll_not_open")])
async def test_the_audit_flags_a_forged_vote_outside_the_polls_time_window(
    forger: Setup, at: int, code: str
) -> None:
    user = await forger.user()
    await forger.close()
    seq = forge(forger.file, forged_vote("timed", forger.cands["timed"][0], user, at=at))

    failure = (await audit_file(forger.file)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")
    assert code in failure.message


async def test_the_same_forged_vote_inside_the_window_passes_the_rules(forger: Setup) -> None:
    user = await forger.user()
    await forger.close()
    forge(forger.file, forged_vote("timed", forger.cands["timed"][0], user, at=T0 + HOUR))

    failure = (await audit_file(forger.file)).failure
    assert failure is not None
    assert failure.check == "projections"  # only the projections never saw it
