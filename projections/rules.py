"""The rules every event must obey against the state before it.

The writer checks them inside the write transaction before appending; the audit checks them again
while replaying the log. One function serves both, so they can never disagree.
"""

from __future__ import annotations

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
)
from projections.errors import (
    AlreadyVotedError,
    DomainError,
    EmailTakenError,
    NotEligibleError,
    PollClosedError,
    PollConfigError,
    PollNotOpenError,
    UnknownCandidateError,
    UnknownPollError,
    UnknownUserError,
)
from projections.model import POLICIES, VISIBILITIES
from projections.state import LedgerState, PrivateFields


def expected_version(state: LedgerState, event: Event) -> int:
    """The stream version ``event`` must take when appended after ``state``."""
    if isinstance(event, VoteCast):
        ballot = state.ballots.get((event.poll_id, event.user_id))
        return ballot.count + 1 if ballot else 1
    if isinstance(event, (CandidateAdded, PollOpened, PollClosed)):
        poll = state.polls.get(event.poll_id)
        return poll.stream_version + 1 if poll else 1
    if isinstance(event, (UserErased, LoggedOut)):
        user = state.users.get(event.user_id)
        return user.version + 1 if user else 1
    return 1


def violation(
    state: LedgerState, event: Event, private: PrivateFields | None = None
) -> DomainError | None:
    """The rule ``event`` breaks if appended after ``state``, or None when it may be appended."""
    if isinstance(event, VoteCast):
        return vote_violation(state, event)
    if isinstance(event, UserRegistered):
        if event.user_id in state.users:
            return PollConfigError(f"user id {event.user_id} is already taken")
        if private is not None and private.email in state.users_by_email:
            return EmailTakenError("this email is already registered", {"email": "already taken"})
        return None
    if isinstance(event, (UserErased, LoggedOut)):
        user = state.users.get(event.user_id)
        if user is None or user.erased:
            return UnknownUserError("no such user, or already erased")
        return None
    if isinstance(event, PollCreated):
        if event.poll_id in state.polls:
            return PollConfigError(f"poll {event.poll_id!r} already exists")
        if event.policy not in POLICIES or event.results not in VISIBILITIES:
            return PollConfigError(f"poll {event.poll_id!r} has an unknown policy or results rule")
        if event.legacy and state.legacy_poll_id is not None:
            return PollConfigError(f"poll {state.legacy_poll_id!r} is already the legacy poll")
        return None
    if isinstance(event, (CandidateAdded, PollOpened, PollClosed)):
        if event.poll_id not in state.polls:
            return UnknownPollError(f"no poll {event.poll_id!r}")
        if isinstance(event, CandidateAdded):
            if event.candidate_id < 1 or event.candidate_id in state.candidates:
                return PollConfigError(f"candidate id {event.candidate_id} is taken or invalid")
            if any(c.name == event.name for c in state.polls[event.poll_id].candidates.values()):
                return PollConfigError(f"poll {event.poll_id!r} already has a candidate {event.name!r}")
        return None
    return DomainError(f"no rule covers {event.TYPE}")


def vote_violation(state: LedgerState, vote: VoteCast) -> DomainError | None:
    """Why ``vote`` may not be cast, or None when it may."""
    poll = state.polls.get(vote.poll_id)
    if poll is None:
        return UnknownPollError(f"no poll {vote.poll_id!r}")
    candidate = poll.candidates.get(vote.candidate_id)
    if candidate is None:
        return UnknownCandidateError(
            f"no candidate {vote.candidate_id} in poll {vote.poll_id!r}",
            {"candidateId": "unknown candidate"},
        )
    user = state.users.get(vote.user_id)
    if user is None or user.erased:
        return UnknownUserError("the ledger does not know this user")
    if poll.status == "pending" or (poll.opens_at is not None and vote.at < poll.opens_at):
        return PollNotOpenError(f"poll {poll.poll_id!r} is not open yet")
    if poll.status == "closed" or (poll.closes_at is not None and vote.at >= poll.closes_at):
        return PollClosedError(f"poll {poll.poll_id!r} is closed")
    if poll.same_part is not None and user.part != poll.same_part:
        return NotEligibleError(f"only voters of part {poll.same_part} vote in this poll")
    if poll.not_own_team and user.team is not None and user.team == candidate.team:
        return NotEligibleError("you cannot vote for your own team")
    if poll.policy == "single" and (vote.poll_id, vote.user_id) in state.ballots:
        return AlreadyVotedError(f"you have already voted in poll {poll.poll_id!r}")
    return None
