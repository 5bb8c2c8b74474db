"""The in-memory read model: plain records the fold keeps in step with the log."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

POLICIES = ("single", "changeable", "unlimited")
VISIBILITIES = ("always", "after_vote", "after_close")


class User(msgspec.Struct, gc=False):
    """A registered user. ``email`` and ``name`` are None once their private data is erased.

    The password hash is not kept here: it stays in the private data beside the log and is read
    only to check a login. Untracked by the collector, as ``Ballot`` is.
    """

    user_id: str
    email: str | None
    name: str | None
    part: str | None
    team: str | None
    seq: int
    erased: bool = False
    version: int = 1  # events in the user's stream so far
    generation: int = 0  # logouts from everywhere so far: a token of an earlier one is void


@dataclass(slots=True)
class Candidate:
    """A candidate of one poll and its current tally."""

    candidate_id: int
    poll_id: str
    name: str
    part: str | None
    team: str | None
    seq: int
    votes: int = 0


@dataclass(slots=True)
class Poll:
    """A poll, its rules, lifecycle status and candidates in id order."""

    poll_id: str
    title: str
    policy: str
    results: str
    legacy: bool
    same_part: str | None
    not_own_team: bool
    opens_at: int | None
    closes_at: int | None
    seq: int
    status: str = "pending"  # pending | open | closed
    candidates: dict[int, Candidate] = field(default_factory=dict)
    total_votes: int = 0
    stream_version: int = 1  # events in the poll's stream so far

    def accepts_votes_at(self, at_ms: int) -> bool:
        """Whether a vote appended at ``at_ms`` falls inside the poll's time window."""
        if self.opens_at is not None and at_ms < self.opens_at:
            return False
        return self.closes_at is None or at_ms < self.closes_at

    def public_status(self, now_ms: int) -> str:
        """``open`` or ``closed`` as clients see it (a pending poll is not open)."""
        return "open" if self.status == "open" and self.accepts_votes_at(now_ms) else "closed"


class Ballot(msgspec.Struct, gc=False):
    """One user's standing in one poll: their current choice and how many votes they cast.

    The collector does not track ballots, nor users (they hold only integers and strings, so they
    make no cycles): a service gains one per voter, and every full collection would walk them all.
    """

    candidate_id: int
    count: int
    seq: int
