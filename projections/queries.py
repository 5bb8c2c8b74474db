"""Read-side questions answered from the fold: tallies (now or as of a position), visibility, ballots."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.events import ballot_stream, decode, poll_stream
from ledger.store import EventStore
from projections.errors import ResultsNotOpenError, UnknownPollError
from projections.model import Poll
from projections.state import LedgerState


@dataclass(frozen=True, slots=True)
class Tally:
    """One candidate's votes in a result."""

    candidate_id: int
    name: str
    votes: int
    share: float


@dataclass(frozen=True, slots=True)
class Results:
    """A poll's totals as of a ledger position."""

    poll_id: str
    as_of: int
    total_votes: int
    candidates: list[Tally]


def get_poll(state: LedgerState, poll_id: str) -> Poll:
    poll = state.polls.get(poll_id)
    if poll is None:
        raise UnknownPollError(f"no poll {poll_id!r}")
    return poll


def results_visible(state: LedgerState, poll: Poll, user_id: str | None, now_ms: int) -> bool:
    """Whether ``user_id`` (None: anonymous) may see the poll's results now."""
    if poll.results == "always":
        return True
    closed = poll.public_status(now_ms) == "closed" and poll.status != "pending"
    if poll.results == "after_close":
        return closed
    return closed or (user_id is not None and (poll.poll_id, user_id) in state.ballots)


def tally(poll: Poll, as_of: int) -> Results:
    """The poll's totals as this fold has them."""
    total = poll.total_votes
    return Results(
        poll.poll_id,
        as_of,
        total,
        [
            Tally(c.candidate_id, c.name, c.votes, round(c.votes / total, 4) if total else 0.0)
            for c in sorted(poll.candidates.values(), key=lambda c: c.candidate_id)
        ],
    )


def check_results_visible(state: LedgerState, poll: Poll, user_id: str | None, now_ms: int) -> None:
    if not results_visible(state, poll, user_id, now_ms):
        rule = "after you vote" if poll.results == "after_vote" else "after the poll closes"
        raise ResultsNotOpenError(f"the results of this poll open {rule}")


async def tally_at(store: EventStore, poll_id: str, seq: int) -> Results:
    """The poll's totals as they stood at ledger position ``seq``: a fold of the log up to it.

    Only the poll's own stream and its ballots are read; votes need nothing else to be counted.
    """
    state = LedgerState()
    events = []
    stream = poll_stream(poll_id)
    async for chunk in store.read_streams(stream, upto=seq):
        events += [e for e in chunk if e.stream == stream]  # not another poll whose id starts alike
    async for chunk in store.read_streams(ballot_stream(poll_id, ""), upto=seq):
        events += chunk
    events.sort(key=lambda e: e.seq)
    for event in events:  # a poll's and its ballots' streams: no registrations, no private data
        state.fold(event.seq, event.hash, decode(event.body).event)
    poll = state.polls.get(poll_id)
    if poll is None:
        raise UnknownPollError(f"poll {poll_id!r} did not exist at seq {seq}")
    return tally(poll, seq)
