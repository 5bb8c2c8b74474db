"""Shaping the read model into the JSON the API answers (the schemas in ``api.schemas`` document it)."""

from __future__ import annotations

from typing import Any

from projections.model import Poll, User
from projections.queries import Results
from projections.state import LedgerState, VoteRecord


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.user_id, "email": user.email, "name": user.name, "part": user.part,
        "team": user.team, "seq": user.seq,
    }


def poll_json(poll: Poll, now_ms: int) -> dict[str, Any]:
    return {
        "id": poll.poll_id,
        "title": poll.title,
        "status": poll.public_status(now_ms),
        "policy": poll.policy,
        "results": poll.results,
        "legacy": poll.legacy,
        "eligibility": {"samePart": poll.same_part, "notOwnTeam": poll.not_own_team},
        "opensAt": poll.opens_at,
        "closesAt": poll.closes_at,
        "candidates": [
            {"id": c.candidate_id, "name": c.name, "part": c.part, "team": c.team}
            for c in poll.candidates.values()
        ],
    }


def results_json(results: Results) -> dict[str, Any]:
    return {
        "pollId": results.poll_id,
        "asOf": results.as_of,
        "totalVotes": results.total_votes,
        "candidates": [
            {"id": t.candidate_id, "name": t.name, "votes": t.votes, "share": t.share}
            for t in results.candidates
        ],
    }


def vote_json(record: VoteRecord) -> dict[str, Any]:
    return {"seq": record.seq, "pollId": record.poll_id, "candidateId": record.candidate_id}


def me_json(state: LedgerState, user: User) -> dict[str, Any]:
    ballots = []
    for poll_id in state.polls:
        ballot = state.ballots.get((poll_id, user.user_id))
        ballots.append({
            "pollId": poll_id,
            "voted": ballot is not None,
            "candidateId": ballot.candidate_id if ballot else None,
            "votes": ballot.count if ballot else 0,
        })
    return {"user": user_json(user), "polls": ballots}


def legacy_candidates(poll: Poll | None, counts: bool = True) -> list[dict[str, Any]]:
    """The 2020 shape: ``[{"id", "name", "voteCount"}]`` ordered by id (counts 0 when hidden)."""
    if poll is None:
        return []
    return [
        {"id": c.candidate_id, "name": c.name, "voteCount": c.votes if counts else 0}
        for c in sorted(poll.candidates.values(), key=lambda c: c.candidate_id)
    ]
