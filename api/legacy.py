"""The 2020 routes, unchanged for the frontends written against them (see CONTRACT.md)."""

from __future__ import annotations

from aiohttp import web

from api.actions import authenticate, caller_id, cast_vote, log_in, sign_up
from api.bodies import legacy_fields
from api.errors import ApiError
from api.keys import LEDGER, RESPONSES
from api.responses import json_bytes_response, json_response
from api.schemas import LEGACY_LOGIN, LEGACY_SIGNUP, MAX_ID, load
from api.views import legacy_candidates, user_json
from projections.model import Poll
from projections.queries import results_visible

routes = web.RouteTableDef()


@routes.post("/auth/signup")
async def signup(request: web.Request) -> web.Response:
    """Form or JSON ``email, password, name`` (``part``, ``team`` optional) → 201."""
    data = load(LEGACY_SIGNUP, await legacy_fields(request))
    user = await sign_up(request, data)
    return json_response(user_json(user), status=201)


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    """Form or JSON ``email, password`` → the bare JWT as text/plain."""
    data = load(LEGACY_LOGIN, await legacy_fields(request))
    token, _ = await log_in(request, data["email"], data["password"])
    # the bare token, as 2020 clients read it; kept by its client, never by a cache
    return web.Response(text=token, content_type="text/plain", headers={"Cache-Control": "no-store"})


@routes.get("/auth/token")
async def check_token(request: web.Request) -> web.Response:
    """Whether a token (``?token=`` or ``Authorization``) is valid."""
    token = request.query.get("token") or request.headers.get("Authorization")
    if not token:
        raise ApiError(400, "missing_token", "send the token as ?token= or in Authorization",
                       {"token": "required"})
    identity = authenticate(request, token)
    return json_response({"valid": True, "user": user_json(identity.user)})


@routes.get("/candidates")
async def candidates(request: web.Request) -> web.Response:
    """The legacy poll's candidates: ``[{"id", "name", "voteCount"}]`` ordered by id."""
    ledger = request.app[LEDGER]
    poll = ledger.state.legacy_poll
    counts = _counts_visible(request, poll)
    return json_bytes_response(request.app[RESPONSES].encoded(
        ledger.state.head_seq, ("candidates", counts), lambda: legacy_candidates(poll, counts)
    ))


def _counts_visible(request: web.Request, poll: Poll | None, user_id: str | None = None) -> bool:
    """Whether vote counts may be shown: the poll's results rule, for this caller.

    Hidden counts read as 0, keeping the shape 2020 clients expect. A bad token here only hides
    the counts; these routes never asked for a login.
    """
    if poll is None or poll.results == "always":
        return True
    ledger = request.app[LEDGER]
    if user_id is None:
        try:
            user_id = caller_id(request)
        except ApiError:
            user_id = None
    return results_visible(ledger.state, poll, user_id, ledger.clock())


def candidate_id_param(request: web.Request) -> int:
    """``?id=N``: exactly one positive integer that fits a ledger id."""
    values = request.query.getall("id", [])
    if len(values) != 1:
        raise ApiError(400, "invalid_query", "give exactly one ?id=N", {"id": "required once"})
    raw = values[0].strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(400, "invalid_query", "id must be a positive integer", {"id": "not a valid id"})
    return int(raw)


@routes.get("/vote")
async def vote(request: web.Request) -> web.Response:
    """``?id=N`` with ``Authorization``: one vote in the legacy poll."""
    identity = authenticate(request)
    candidate_id = candidate_id_param(request)
    ledger = request.app[LEDGER]
    poll = ledger.state.legacy_poll
    if poll is None:
        raise ApiError(404, "unknown_poll", "no poll is served on /vote")
    record, receipt = await cast_vote(request, identity, poll.poll_id, candidate_id)
    candidate = ledger.state.candidates[candidate_id]
    votes = candidate.votes if _counts_visible(request, poll, identity.user.user_id) else 0
    return json_response({
        "id": candidate_id, "name": candidate.name, "voteCount": votes, "seq": record.seq,
        "receipt": receipt,
    })
