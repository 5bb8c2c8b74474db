"""The JSON API under /api/v1: shapes, statuses, time travel, idempotency, and one ledger behind both
surfaces."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from tests.api.helpers import (
    DEMO_NAMES,
    Client,
    bearer,
    claims_of,
    error_of,
    head_seq,
    legacy_user,
)
from tests.conftest import signup_and_login

POLL = "frontend-leader"
NEW_USER = {"email": "alice@example.com", "name": "Alice", "password": "password-123"}


async def vote(
    client: Client, token: str, candidate_id: int, poll: str = POLL, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/polls/{poll}/votes", json={"candidateId": candidate_id},
        headers={**bearer(token), **headers},
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def results(client: Client, query: str = "") -> dict[str, object]:
    response = await client.get(f"/api/v1/polls/{POLL}/results{query}")
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


def votes_by_id(body: dict[str, object]) -> dict[int, int]:
    candidates = body["candidates"]
    assert isinstance(candidates, list)
    return {c["id"]: c["votes"] for c in candidates}


async def legacy_counts(client: Client) -> dict[int, int]:
    return {c["id"]: c["voteCount"] for c in await (await client.get("/candidates")).json()}


# --- users and login --------------------------------------------------------------------------------


async def test_creating_a_user_answers_201_with_part_and_team_stored(client: Client) -> None:
    response = await client.post("/api/v1/users", json={**NEW_USER, "part": "FE", "team": "Hooking"})
    assert response.status == 201, await response.text()
    user = await response.json()
    assert {"id", "email", "name"} <= set(user)
    assert (user["email"], user["name"], user["part"], user["team"]) == (
        "alice@example.com", "Alice", "FE", "Hooking"
    )
    assert "password" not in user and "passwordHash" not in user
    response = await client.post("/api/v1/auth/login", json={"email": "alice@example.com",
                                                             "password": "password-123"})
    login = await response.json()
    assert (login["user"]["part"], login["user"]["team"]) == ("FE", "Hooking")
    me = await (await client.get("/api/v1/me", headers=bearer(login["accessToken"]))).json()
    assert (me["user"]["part"], me["user"]["team"]) == ("FE", "Hooking")


@pytest.mark.parametrize(("body", "invalid"), [
    ({**NEW_USER, "email": "not-an-email"}, {"email"}),
    ({**NEW_USER, "password": "short"}, {"password"}),
    ({**NEW_USER, "name": ""}, {"name"}),
    ({"password": "password-123"}, {"email", "name"}),
    ({**NEW_USER, "role": "admin"}, {"role"}),
    ({**NEW_USER, "name": "a\x00b"}, {"name"}),
    ({**NEW_USER, "email": 42, "part": ""}, {"email", "part"}),
])
async def test_creating_a_user_with_invalid_fields_is_a_400_naming_each(
    client: Client, body: dict[str, object], invalid: set[str]
) -> None:
    error = await error_of(await client.post("/api/v1/users", json=body), 400)
    assert set(error["fields"]) == invalid


@pytest.mark.parametrize("body", [b"[]", b"null", b"{", b'"alice"', b"\xff"])
async def test_creating_a_user_from_a_body_that_is_no_json_object_is_a_400(
    client: Client, body: bytes
) -> None:
    response = await client.post("/api/v1/users", data=body, headers={"Content-Type": "application/json"})
    await error_of(response, 400)


@pytest.mark.parametrize("route", ["/api/v1/users", "/auth/signup"])
async def test_a_name_of_only_spaces_is_a_400(client: Client, route: str) -> None:
    error = await error_of(await client.post(route, json={**NEW_USER, "name": "   "}), 400)
    assert "name" in error["fields"]


async def test_creating_a_user_with_a_taken_email_is_a_409(client: Client) -> None:
    assert (await client.post("/api/v1/users", json=NEW_USER)).status == 201
    response = await client.post("/api/v1/users", json={**NEW_USER, "email": " Alice@EXAMPLE.com"})
    error = await error_of(response, 409, "email_taken")
    assert "email" in error["fields"]


@pytest.mark.parametrize("kwargs", [
    {"data": NEW_USER},
    {"data": json.dumps(NEW_USER), "headers": {"Content-Type": "text/plain"}},
    {"data": json.dumps(NEW_USER).encode(), "skip_auto_headers": {"Content-Type"}},
])
async def test_the_json_api_refuses_a_non_json_body_with_415(
    client: Client, kwargs: dict[str, object]
) -> None:
    await error_of(await client.post("/api/v1/users", **kwargs), 415)  # type: ignore[arg-type]


@pytest.mark.parametrize("media_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json",
])
async def test_the_json_api_takes_json_under_any_spelling_of_its_media_type(
    client: Client, media_type: str
) -> None:
    body, headers = json.dumps(NEW_USER), {"Content-Type": media_type}
    response = await client.post("/api/v1/users", data=body, headers=headers)
    assert response.status == 201, await response.text()


@pytest.mark.parametrize("media_type", ["application/jsonx", "text/json", "application/json-seq"])
async def test_the_json_api_refuses_look_alike_media_types(client: Client, media_type: str) -> None:
    body, headers = json.dumps(NEW_USER), {"Content-Type": media_type}
    await error_of(await client.post("/api/v1/users", data=body, headers=headers), 415)


async def test_a_two_megabyte_body_is_a_413(client: Client) -> None:
    body = io.BytesIO(json.dumps({**NEW_USER, "name": "x" * (2 * 1024 * 1024)}).encode())
    response = await client.post("/api/v1/users", data=body, headers={"Content-Type": "application/json"})
    await error_of(response, 413)
    assert (await client.post("/api/v1/users", json=NEW_USER)).status == 201  # still serving


async def test_login_answers_token_type_lifetime_and_user(client: Client) -> None:
    created = await (await client.post("/api/v1/users", json=NEW_USER)).json()
    response = await client.post("/api/v1/auth/login", json={"email": "ALICE@example.com",
                                                             "password": "password-123"})
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["tokenType"] == "Bearer"
    assert isinstance(body["expiresIn"], int) and body["expiresIn"] > 0
    assert {"id", "email", "name"} <= set(body["user"])
    assert body["user"]["id"] == created["id"]
    assert body["user"]["email"] == "alice@example.com"
    claims = claims_of(body["accessToken"])
    assert claims["sub"] == created["id"]
    assert claims["exp"] - claims["iat"] == body["expiresIn"]


async def test_login_with_a_wrong_password_is_a_401_on_the_json_api(client: Client) -> None:
    await client.post("/api/v1/users", json=NEW_USER)
    response = await client.post("/api/v1/auth/login", json={"email": NEW_USER["email"], "password": "nope"})
    await error_of(response, 401, "invalid_credentials")


# --- me, polls, votes -------------------------------------------------------------------------------


async def test_me_tells_per_poll_whether_and_for_whom_the_caller_voted(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    me = await (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["user"]["email"] == "alice@example.com"
    assert [(b["pollId"], b["voted"], b["candidateId"]) for b in me["polls"]] == [(POLL, False, None)]
    await vote(client, token, 4)
    me = await (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert [(b["pollId"], b["voted"], b["candidateId"]) for b in me["polls"]] == [(POLL, True, 4)]


async def test_me_without_a_token_is_a_401(client: Client) -> None:
    await error_of(await client.get("/api/v1/me"), 401)


async def test_polls_are_listed_under_polls_with_their_shape(client: Client) -> None:
    response = await client.get("/api/v1/polls")
    assert response.status == 200
    polls = (await response.json())["polls"]
    assert [p["id"] for p in polls] == [POLL]
    poll = polls[0]
    assert {"id", "title", "status", "policy", "results", "candidates"} <= set(poll)
    assert (poll["status"], poll["policy"], poll["results"]) == ("open", "single", "always")
    assert [c["name"] for c in poll["candidates"]] == DEMO_NAMES
    assert all({"id", "name"} <= set(c) for c in poll["candidates"])


async def test_one_poll_is_served_by_id_and_an_unknown_one_is_a_404(client: Client) -> None:
    response = await client.get(f"/api/v1/polls/{POLL}")
    assert response.status == 200
    assert (await response.json())["id"] == POLL
    await error_of(await client.get("/api/v1/polls/no-such-poll"), 404, "unknown_poll")
    await error_of(await client.get("/api/v1/polls/no-such-poll/results"), 404, "unknown_poll")


async def test_a_vote_answers_201_with_its_ledger_position(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    before = await head_seq(client)
    body = await vote(client, token, 3)
    receipt = body.pop("receipt")  # tests/api/test_receipts.py checks it
    assert body == {"seq": before + 1, "pollId": POLL, "candidateId": 3}
    assert receipt["seq"] == before + 1
    assert await head_seq(client) == before + 1


@pytest.mark.parametrize(("body", "status"), [
    ({"candidateId": 999}, 404),
    ({"candidateId": "1"}, 400),
    ({"candidateId": 1.5}, 400),
    ({"candidateId": True}, 400),
    ({"candidateId": 0}, 400),
    ({}, 400),
    ({"candidateId": 1, "extra": 1}, 400),
])
async def test_a_bad_vote_body_is_refused(client: Client, body: dict[str, object], status: int) -> None:
    token = await signup_and_login(client, "alice@example.com")
    response = await client.post(f"/api/v1/polls/{POLL}/votes", json=body, headers=bearer(token))
    await error_of(response, status)
    assert (await results(client))["totalVotes"] == 0


async def test_a_second_vote_in_a_single_vote_poll_is_a_409(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    await vote(client, token, 1)
    response = await client.post(
        f"/api/v1/polls/{POLL}/votes", json={"candidateId": 2}, headers=bearer(token)
    )
    await error_of(response, 409, "already_voted")


async def test_voting_in_an_unknown_poll_is_a_404(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    response = await client.post("/api/v1/polls/nope/votes", json={"candidateId": 1}, headers=bearer(token))
    await error_of(response, 404, "unknown_poll")


# --- results and time travel ------------------------------------------------------------------------


async def test_results_have_totals_and_shares(client: Client) -> None:
    for n, candidate in enumerate([1, 1, 2]):
        await vote(client, await signup_and_login(client, f"v{n}@example.com"), candidate)
    body = await results(client)
    assert set(body) >= {"pollId", "asOf", "totalVotes", "candidates"}
    assert body["pollId"] == POLL
    assert body["asOf"] == await head_seq(client)
    assert body["totalVotes"] == 3
    candidates = body["candidates"]
    assert isinstance(candidates, list)
    assert all({"id", "name", "votes", "share"} <= set(c) for c in candidates)
    assert [c["name"] for c in candidates] == DEMO_NAMES
    shares = {c["id"]: c["share"] for c in candidates}
    assert shares[1] == pytest.approx(2 / 3, abs=1e-3)
    assert shares[2] == pytest.approx(1 / 3, abs=1e-3)
    assert shares[3] == 0


async def test_results_at_an_earlier_position_show_fewer_votes(client: Client) -> None:
    first = await vote(client, await signup_and_login(client, "a@example.com"), 1)
    await vote(client, await signup_and_login(client, "b@example.com"), 2)
    now = await results(client)
    then = await results(client, f"?at={first['seq']}")
    assert (now["totalVotes"], then["totalVotes"]) == (2, 1)
    assert then["asOf"] == first["seq"]
    assert votes_by_id(then)[1] == 1 and votes_by_id(then)[2] == 0
    head = await head_seq(client)
    assert (await results(client, f"?at={head}"))["totalVotes"] == 2


@pytest.mark.parametrize("query", ["?at=abc", "?at=1&at=2", "?at=-1", "?at=1.5", "?at=", "?when=1"])
async def test_a_bad_results_query_is_a_400(client: Client, query: str) -> None:
    error = await error_of(await client.get(f"/api/v1/polls/{POLL}/results{query}"), 400)
    assert error["fields"]


async def test_results_beyond_the_head_of_the_ledger_are_a_400(client: Client) -> None:
    head = await head_seq(client)
    error = await error_of(await client.get(f"/api/v1/polls/{POLL}/results?at={head + 1}"), 400)
    assert "at" in error["fields"]


# --- routes, methods, health ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/nope"), ("POST", "/api/v1/nope"), ("GET", "/nope"), ("GET", "/api/v2/polls"),
])
async def test_unknown_routes_are_a_404_in_the_error_shape(client: Client, method: str, path: str) -> None:
    await error_of(await client.request(method, path), 404)


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/v1/polls"), ("PUT", "/api/v1/users"), ("GET", "/api/v1/users"),
    ("POST", "/candidates"), ("GET", "/auth/login"),
])
async def test_a_wrong_method_is_a_405_in_the_error_shape(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    await error_of(response, 405)
    assert response.headers.get("Allow")


async def test_healthz_answers_200_with_the_ledger_position(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert isinstance(body["seq"], int) and body["seq"] > 0


# --- idempotency ------------------------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_returns_the_same_vote_and_appends_nothing(
    client: Client,
) -> None:
    token = await signup_and_login(client, "alice@example.com")
    first = await vote(client, token, 5, **{"Idempotency-Key": "retry-1"})
    head = await head_seq(client)
    again = await vote(client, token, 5, **{"Idempotency-Key": "retry-1"})
    assert again == first
    assert await head_seq(client) == head
    assert (await results(client))["asOf"] == head
    assert (await results(client))["totalVotes"] == 1


async def test_an_idempotency_key_reused_for_another_vote_is_a_409(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    await vote(client, token, 5, **{"Idempotency-Key": "k"})
    response = await client.post(f"/api/v1/polls/{POLL}/votes", json={"candidateId": 6},
                                 headers={**bearer(token), "Idempotency-Key": "k"})
    await error_of(response, 409, "idempotency_key_reused")


async def test_a_malformed_idempotency_key_is_a_400(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    response = await client.post(f"/api/v1/polls/{POLL}/votes", json={"candidateId": 1},
                                 headers={**bearer(token), "Idempotency-Key": "x" * 129})
    await error_of(response, 400)


# --- one ledger, two surfaces -----------------------------------------------------------------------


async def test_a_legacy_vote_shows_at_once_in_candidates_and_in_results(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    response = await client.get("/vote?id=7", headers={"Authorization": token})
    assert response.status == 200, await response.text()
    assert (await legacy_counts(client))[7] == 1
    body = await results(client)
    assert body["totalVotes"] == 1 and votes_by_id(body)[7] == 1


async def test_a_json_api_vote_shows_at_once_in_candidates(client: Client) -> None:
    await vote(client, await signup_and_login(client, "alice@example.com"), 8)
    assert (await legacy_counts(client))[8] == 1
    assert sum((await legacy_counts(client)).values()) == 1


async def test_answers_read_before_a_vote_are_not_served_after_it(client: Client) -> None:
    # /candidates and results keep their encoded answer until the ledger moves: read, vote, read
    assert (await legacy_counts(client))[7] == 0 and (await results(client))["totalVotes"] == 0
    assert (await legacy_counts(client))[7] == 0  # the same answer, read twice
    await vote(client, await signup_and_login(client, "alice@example.com"), 7)
    assert (await legacy_counts(client))[7] == 1
    body = await results(client)
    assert body["totalVotes"] == 1 and votes_by_id(body)[7] == 1
    bob = await legacy_user(client, "bob@example.com")
    response = await client.get("/vote?id=7", headers={"Authorization": bob})
    assert response.status == 200, await response.text()
    assert (await legacy_counts(client))[7] == 2 and (await results(client))["totalVotes"] == 2


async def test_a_user_of_one_surface_cannot_vote_again_on_the_other(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    await vote(client, token, 1)
    await error_of(await client.get("/vote?id=2", headers={"Authorization": token}), 409, "already_voted")


# --- races ------------------------------------------------------------------------------------------


async def test_concurrent_signups_with_one_email_register_it_once(client: Client) -> None:
    responses = await asyncio.gather(*(client.post("/api/v1/users", json=NEW_USER) for _ in range(5)))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]
    for response in responses:
        if response.status == 409:
            await error_of(response, 409, "email_taken")


async def test_concurrent_votes_by_one_user_count_once_in_a_single_vote_poll(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    responses = await asyncio.gather(*(
        client.post(f"/api/v1/polls/{POLL}/votes", json={"candidateId": n}, headers=bearer(token))
        for n in range(1, 6)
    ))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]
    assert (await results(client))["totalVotes"] == 1
    assert sum((await legacy_counts(client)).values()) == 1


async def test_concurrent_retries_with_one_idempotency_key_all_answer_the_one_vote(client: Client) -> None:
    token = await signup_and_login(client, "alice@example.com")
    head = await head_seq(client)
    responses = await asyncio.gather(*(
        client.post(f"/api/v1/polls/{POLL}/votes", json={"candidateId": 4},
                    headers={**bearer(token), "Idempotency-Key": "once"})
        for _ in range(5)
    ))
    assert [r.status for r in responses] == [201] * 5
    bodies = [await r.json() for r in responses]
    receipts = [body.pop("receipt") for body in bodies]
    assert bodies == [{"seq": head + 1, "pollId": POLL, "candidateId": 4}] * 5
    assert receipts == [receipts[0]] * 5 and receipts[0]["seq"] == head + 1
    assert await head_seq(client) == head + 1
