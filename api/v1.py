"""The JSON API under ``/api/v1``: JSON in, JSON out, documented at ``/openapi.json``."""

from __future__ import annotations

from aiohttp import web

from api.actions import authenticate, caller_id, cast_vote, log_in, sign_up
from api.bodies import json_body, query_values
from api.errors import ApiError
from api.keys import AUTH, LEDGER, RESPONSES
from api.responses import json_bytes_response, json_response
from api.schemas import (
    ERASE_ME,
    LOGIN,
    LOGOUT_QUERY,
    MAX_ID,
    RESULTS_QUERY,
    USER_CREATE,
    VOTE_REQUEST,
    load,
)
from api.views import me_json, poll_json, results_json, user_json, vote_json
from projections.commands import EraseUser, LogOut
from projections.queries import check_results_visible, get_poll, tally, tally_at

routes = web.RouteTableDef()
PREFIX = "/api/v1"


# The vote route is added first. For a path under /api/v1/polls, aiohttp tries every resource added
# there in the order they were added; the vote is the hot path, and found first its lookup takes
# one match instead of four.
@routes.post(f"{PREFIX}/polls/{{pollId}}/votes")
async def vote(request: web.Request) -> web.Response:
    identity = authenticate(request)
    body = await json_body(request)
    # the one well-formed body needs no schema; anything else gets the schema's field errors
    candidate = body.get("candidateId") if type(body) is dict and len(body) == 1 else None
    if type(candidate) is not int or not 1 <= candidate <= MAX_ID:
        candidate = load(VOTE_REQUEST, body)["candidateId"]
    poll_id = request.match_info["pollId"]
    get_poll(request.app[LEDGER].state, poll_id)
    record, receipt = await cast_vote(request, identity, poll_id, candidate)
    return json_response({**vote_json(record), "receipt": receipt}, status=201)


@routes.post(f"{PREFIX}/users")
async def create_user(request: web.Request) -> web.Response:
    data = load(USER_CREATE, await json_body(request))
    user = await sign_up(request, data)
    return json_response(user_json(user), status=201)


@routes.post(f"{PREFIX}/auth/login")
async def login(request: web.Request) -> web.Response:
    data = load(LOGIN, await json_body(request))
    token, user = await log_in(request, data["email"], data["password"])
    response = json_response({
        "accessToken": token, "tokenType": "Bearer", "expiresIn": request.app[AUTH].lifetime,
        "user": user_json(user),
    })
    response.headers["Cache-Control"] = "no-store"  # a token is kept by its client, not a cache
    return response


@routes.post(f"{PREFIX}/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Void the presented token, or (``?everywhere=true``) every token of the user issued so far:
    an event in the ledger, so every node and every restart honours it. A token without an id of
    its own (issued by an older version) can only go with all the others."""
    identity = authenticate(request)
    everywhere = load(LOGOUT_QUERY, dict(request.query))["everywhere"] or identity.token_id is None
    token_id = None if everywhere else identity.token_id
    await request.app[LEDGER].execute(LogOut(identity.user.user_id, token_id))
    return web.Response(status=204)


@routes.get(f"{PREFIX}/me")
async def me(request: web.Request) -> web.Response:
    identity = authenticate(request)
    return json_response(me_json(request.app[LEDGER].state, identity.user))


@routes.delete(f"{PREFIX}/me")
async def erase_me(request: web.Request) -> web.Response:
    """Erase the caller's personal data, on their password: their votes stay, they are gone."""
    identity = authenticate(request)
    password = load(ERASE_ME, await json_body(request))["password"]
    ledger = request.app[LEDGER]
    password_hash = await ledger.password_hash(identity.user)
    if not await request.app[AUTH].check_password(password_hash, password):
        raise ApiError(401, "invalid_credentials", "wrong password")
    await ledger.execute(EraseUser(identity.user.user_id))
    return web.Response(status=204)


@routes.get(f"{PREFIX}/polls")
async def list_polls(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    now = ledger.clock()
    return json_response({"polls": [poll_json(p, now) for p in ledger.state.polls.values()]})


@routes.get(f"{PREFIX}/polls/{{pollId}}")
async def show_poll(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    return json_response(poll_json(get_poll(ledger.state, request.match_info["pollId"]), ledger.clock()))


@routes.get(f"{PREFIX}/polls/{{pollId}}/results")
async def results(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    query = load(RESULTS_QUERY, query_values(request, ("at",)))
    poll = get_poll(ledger.state, request.match_info["pollId"])
    check_results_visible(ledger.state, poll, caller_id(request), ledger.clock())
    at = query.get("at")
    if at is None:
        head = ledger.state.head_seq
        return json_bytes_response(request.app[RESPONSES].encoded(
            head, ("results", poll.poll_id), lambda: results_json(tally(poll, head))
        ))
    if at > ledger.state.head_seq:
        raise ApiError(400, "invalid_query", f"the ledger ends at seq {ledger.state.head_seq}",
                       {"at": "beyond the head of the ledger"})
    return json_response(results_json(await tally_at(ledger.store, poll.poll_id, at)))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the ledger takes writes, 503 otherwise."""
    ledger = request.app[LEDGER]
    await ledger.check_writable()
    return json_response({"status": "ok", "seq": ledger.state.head_seq})
