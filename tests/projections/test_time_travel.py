"""Time travel: ``tally_at(seq)`` equals the tally of a full fold of the log up to ``seq``, everywhere."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ledger.open import open_store
from ledger.store import EventStore
from projections.commands import CastVote, Command, PollSpec, SetPollStatus, SyncPolls
from projections.errors import UnknownPollError
from projections.queries import Results, tally, tally_at
from projections.service import replay
from projections.state import VoteRecord
from tests.projections.helpers import candidates, execute_all, open_ledger, register

ALPHA = PollSpec("alpha", "Alpha", "single", candidates=candidates("A1", "A2", "A3"))
BETA = PollSpec("beta", "Beta", "changeable", candidates=candidates("B1", "B2", "B3"))
GAMMA = PollSpec("gamma", "Gamma", "unlimited", candidates=candidates("G1", "G2"))
POLL_IDS = ("alpha", "beta", "gamma")
BETA_GROWN = PollSpec("beta", "Beta", "changeable", candidates=candidates("B1", "B2", "B3", "B4"))


async def build_history(path: Path, seed: int, target: int = 400) -> int:
    """A randomized history across three polls (one created and one grown midway); its head seq."""
    rng = random.Random(seed)
    ledger = await open_ledger(path)
    try:
        await ledger.execute(SyncPolls((ALPHA, BETA)))
        users = await register(ledger, 30)
        while ledger.state.head_seq < target:
            if ledger.state.head_seq > target // 3 and "gamma" not in ledger.state.polls:
                await ledger.execute(SyncPolls((ALPHA, BETA_GROWN, GAMMA)))
            polls = sorted(ledger.state.polls)
            commands: list[Command] = []
            for _ in range(rng.randint(1, 25)):
                poll = rng.choice(polls)
                if rng.random() < 0.04:
                    commands.append(SetPollStatus(poll, open=rng.random() < 0.6))
                else:
                    candidate = rng.choice(sorted(ledger.state.polls[poll].candidates))
                    commands.append(CastVote(rng.choice(users), poll, candidate))
            await execute_all(ledger, commands)
        for poll in ("alpha", "beta", "gamma"):
            await ledger.execute(SetPollStatus(poll, open=True))
        head = ledger.state.head_seq
    finally:
        await ledger.close()
    return head


async def folded_tallies(store: EventStore, seq: int) -> dict[str, Results | None]:
    """What a full fold of the log up to ``seq`` says of each poll (None: it did not exist yet)."""
    state = await replay(store, upto=seq)
    return {
        poll_id: tally(state.polls[poll_id], seq) if poll_id in state.polls else None
        for poll_id in POLL_IDS
    }


async def tally_at_or_none(store: EventStore, poll_id: str, seq: int) -> Results | None:
    try:
        return await tally_at(store, poll_id, seq)
    except UnknownPollError:
        return None


@pytest.mark.parametrize("seed", [7, 2020])
async def test_tally_at_every_position_equals_a_full_fold_up_to_it(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "ledger.db"
    head = await build_history(path, seed)
    store = await open_store(path, readonly=True)
    try:
        seen: dict[str, set[tuple[int, ...]]] = {"alpha": set(), "beta": set(), "gamma": set()}
        for seq in range(head + 1):
            folded = await folded_tallies(store, seq)
            for poll_id, expected in folded.items():
                assert await tally_at_or_none(store, poll_id, seq) == expected, (poll_id, seq)
                if expected is not None:
                    seen[poll_id].add(tuple(t.votes for t in expected.candidates))
        final = await replay(store)
    finally:
        await store.close()
    assert final.events_by_type.get("PollClosed", 0) > 0
    assert final.polls["beta"].total_votes == len({u for (p, u) in final.ballots if p == "beta"})
    assert len(final.polls["beta"].candidates) == 4
    for poll_id, tallies in seen.items():  # the tallies really moved over time
        assert len(tallies) > 10, poll_id


async def test_tally_at_follows_a_changed_vote_and_knows_no_poll_before_its_creation(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = await open_ledger(path)
    try:
        await ledger.execute(SyncPolls((BETA,)))
        created = ledger.state.polls["beta"].seq
        (user,) = await register(ledger, 1)
        b1, b2, _ = sorted(ledger.state.polls["beta"].candidates)
        first = await ledger.execute(CastVote(user, "beta", b1))
        second = await ledger.execute(CastVote(user, "beta", b2))
        assert isinstance(first, VoteRecord) and isinstance(second, VoteRecord)
    finally:
        await ledger.close()
    store = await open_store(path, readonly=True)
    try:
        with pytest.raises(UnknownPollError):
            await tally_at(store, "beta", created - 1)
        votes = {
            seq: [t.votes for t in (await tally_at(store, "beta", seq)).candidates]
            for seq in (created, first.seq - 1, first.seq, second.seq)
        }
    finally:
        await store.close()
    assert list(votes.values()) == [[], [0, 0, 0], [1, 0, 0], [0, 1, 0]]
