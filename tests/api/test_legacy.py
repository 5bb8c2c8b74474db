"""The 2020 routes, replayed the way the 2020 CEOS frontends call them (CONTRACT.md, legacy table)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import jwt
import pytest
from aiohttp import FormData

from tests.api.helpers import (
    AXIOS_ACCEPT,
    DEMO_NAMES,
    PREFLIGHT,
    Client,
    claims_of,
    error_of,
    legacy_login,
    legacy_signup,
    legacy_user,
)
from tests.conftest import TEST_SECRET, MakeClient

SIGNUP = {"email": "alice@example.com", "password": "pw", "name": "Alice"}


# --- POST /auth/signup ------------------------------------------------------------------------------


async def test_signup_with_a_form_body_answers_exactly_201(client: Client) -> None:
    response = await client.post("/auth/signup", data=SIGNUP)
    assert response.status == 201, await response.text()
    user = await response.json()
    assert user["email"] == "alice@example.com"
    assert user["name"] == "Alice"
    assert "password" not in user


async def test_signup_with_a_json_body_and_no_content_type_answers_201(client: Client) -> None:
    response = await client.post(
        "/auth/signup", data=json.dumps(SIGNUP).encode(), skip_auto_headers={"Content-Type"}
    )
    assert "Content-Type" not in response.request_info.headers
    assert response.status == 201, await response.text()


async def test_signup_with_a_json_body_labelled_text_plain_answers_201(client: Client) -> None:
    response = await client.post(
        "/auth/signup", data=json.dumps(SIGNUP), headers={"Content-Type": "text/plain"}
    )
    assert response.status == 201, await response.text()


async def test_signup_with_a_json_body_labelled_json_answers_201(client: Client) -> None:
    response = await client.post("/auth/signup", json=SIGNUP)
    assert response.status == 201, await response.text()


@pytest.mark.parametrize("missing", ["email", "password", "name"])
async def test_signup_missing_a_field_is_a_400_naming_it(client: Client, missing: str) -> None:
    fields = {k: v for k, v in SIGNUP.items() if k != missing}
    error = await error_of(await client.post("/auth/signup", data=fields), 400)
    assert missing in error["fields"]
    error = await error_of(await client.post("/auth/signup", json=fields), 400)
    assert missing in error["fields"]


async def test_signup_with_an_invalid_email_is_a_400_naming_it(client: Client) -> None:
    error = await error_of(await client.post("/auth/signup", data={**SIGNUP, "email": "not-an-email"}), 400)
    assert "email" in error["fields"]


@pytest.mark.parametrize("again", ["alice@example.com", "ALICE@Example.COM", "  alice@example.com  "])
async def test_signup_with_a_taken_email_is_a_409(client: Client, again: str) -> None:
    assert (await client.post("/auth/signup", data=SIGNUP)).status == 201
    response = await client.post("/auth/signup", data={**SIGNUP, "email": again})
    error = await error_of(response, 409, "email_taken")
    assert "email" in error["fields"]


async def test_signup_with_a_multipart_body_is_a_400_not_a_500(client: Client) -> None:
    form = FormData(SIGNUP, default_to_multipart=True)
    response = await client.post("/auth/signup", data=form)
    assert response.request_info.headers["Content-Type"].startswith("multipart/form-data")
    await error_of(response, 400)


@pytest.mark.parametrize("body", [
    b"\xff\xfe\x00\x01 not utf-8",
    b"{not json at all",
    b"just some words",
    b"[1, 2, 3]",
    b'{"email": ["a"], "password": {}, "name": 3}',
    b"email=%ZZ&&&===",
])
async def test_signup_with_a_garbage_body_is_a_400_not_a_500(client: Client, body: bytes) -> None:
    await error_of(await client.post("/auth/signup", data=body), 400)


async def test_signup_with_an_empty_body_is_a_400_naming_every_field(client: Client) -> None:
    error = await error_of(await client.post("/auth/signup", data=b""), 400)
    assert {"email", "password", "name"} <= set(error["fields"])


# --- POST /auth/login -------------------------------------------------------------------------------


def assert_bare_jwt(token: str, email: str) -> None:
    assert token == token.strip() and '"' not in token
    assert token.count(".") == 2 and all(token.split("."))
    claims = claims_of(token)
    assert {"email", "sub", "iat", "exp"} <= set(claims)
    assert claims["email"] == email
    assert claims["exp"] > claims["iat"]


async def test_login_with_a_form_answers_the_bare_jwt_as_text(client: Client) -> None:
    await legacy_signup(client, "alice@example.com")
    response = await client.post("/auth/login", data={"email": "alice@example.com", "password": "pw"})
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert_bare_jwt(await response.text(), "alice@example.com")


async def test_login_with_json_answers_the_bare_jwt_as_text(client: Client) -> None:
    await legacy_signup(client, "alice@example.com")
    for kwargs in (
        {"json": {"email": "alice@example.com", "password": "pw"}},
        {"data": json.dumps({"email": "alice@example.com", "password": "pw"}).encode(),
         "skip_auto_headers": {"Content-Type"}},
    ):
        response = await client.post("/auth/login", **kwargs)
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        assert_bare_jwt(await response.text(), "alice@example.com")


async def test_login_stays_text_when_axios_accepts_json_first(client: Client) -> None:
    await legacy_signup(client, "alice@example.com")
    response = await client.post(
        "/auth/login", data={"email": "alice@example.com", "password": "pw"}, headers={"Accept": AXIOS_ACCEPT}
    )
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert_bare_jwt(await response.text(), "alice@example.com")


async def test_login_token_carries_the_user_id_as_sub(client: Client) -> None:
    user = await (await legacy_signup(client, "alice@example.com")).json()
    token = await legacy_login(client, "alice@example.com")
    assert claims_of(token)["sub"] == user["id"]


async def test_login_with_a_wrong_password_is_a_401(client: Client) -> None:
    await legacy_signup(client, "alice@example.com")
    response = await client.post("/auth/login", data={"email": "alice@example.com", "password": "nope"})
    await error_of(response, 401, "invalid_credentials")


async def test_login_with_an_unknown_email_is_a_401(client: Client) -> None:
    response = await client.post("/auth/login", data={"email": "nobody@example.com", "password": "pw"})
    await error_of(response, 401, "invalid_credentials")


async def test_login_with_a_real_email_and_another_users_password_is_a_401(client: Client) -> None:
    await legacy_signup(client, "alice@example.com", password="alice-pw")
    await legacy_signup(client, "bob@example.com", password="bob-pw")
    response = await client.post("/auth/login", data={"email": "alice@example.com", "password": "bob-pw"})
    await error_of(response, 401, "invalid_credentials")


@pytest.mark.parametrize("missing", ["email", "password"])
async def test_login_missing_a_field_is_a_400_naming_it(client: Client, missing: str) -> None:
    fields = {k: v for k, v in {"email": "alice@example.com", "password": "pw"}.items() if k != missing}
    error = await error_of(await client.post("/auth/login", data=fields), 400)
    assert missing in error["fields"]


async def test_login_with_a_garbage_body_is_a_400(client: Client) -> None:
    await error_of(await client.post("/auth/login", data=b"\xff\xfe garbage"), 400)


# --- GET /auth/token --------------------------------------------------------------------------------


async def test_token_check_accepts_the_token_in_the_query(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    response = await client.get("/auth/token", params={"token": token})
    assert response.status == 200, await response.text()


async def test_token_check_accepts_the_token_in_authorization(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    response = await client.get("/auth/token", headers={"Authorization": token})
    assert response.status == 200, await response.text()


async def test_token_check_without_a_token_is_a_400(client: Client) -> None:
    await error_of(await client.get("/auth/token"), 400)


async def test_token_check_with_a_garbage_token_is_a_401(client: Client) -> None:
    await error_of(await client.get("/auth/token", params={"token": "garbage"}), 401)
    await error_of(await client.get("/auth/token", headers={"Authorization": "a.b.c"}), 401)


async def test_token_check_with_an_expired_token_is_a_401(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    claims = {**claims_of(token), "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}
    expired = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    await error_of(await client.get("/auth/token", params={"token": expired}), 401, "token_expired")


# --- GET /candidates --------------------------------------------------------------------------------


async def test_candidates_are_the_ten_demo_candidates_ordered_by_id(client: Client) -> None:
    response = await client.get("/candidates")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert isinstance(body, list)
    assert all(set(c) == {"id", "name", "voteCount"} for c in body)
    assert [c["name"] for c in body] == DEMO_NAMES
    ids = [c["id"] for c in body]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert all(c["voteCount"] == 0 for c in body)


@pytest.mark.parametrize("header", ["valid", "garbage", "expired"])
async def test_candidates_answer_when_clients_send_authorization_anyway(client: Client, header: str) -> None:
    token = await legacy_user(client, "alice@example.com")
    value = {
        "valid": token,
        "garbage": "undefined",
        "expired": jwt.encode({**claims_of(token), "exp": int(time.time()) - 60}, TEST_SECRET),
    }[header]
    response = await client.get("/candidates", headers={"Authorization": value})
    assert response.status == 200, await response.text()
    assert [c["name"] for c in await response.json()] == DEMO_NAMES


# --- GET /vote --------------------------------------------------------------------------------------


async def test_vote_accepts_the_token_bare_bearer_and_json_quoted(client: Client) -> None:
    shapes: dict[str, Callable[[str], str]] = {
        "bare": lambda t: t,
        "bearer": lambda t: f"Bearer {t}",
        "json-quoted": lambda t: json.dumps(t),  # JSON.stringify(response.data) kept in localStorage
    }
    for number, (shape, wrap) in enumerate(shapes.items()):
        token = await legacy_user(client, f"voter{number}@example.com")
        response = await client.get("/vote?id=1", headers={"Authorization": wrap(token)})
        assert response.status == 200, (shape, await response.text())
    counts = {c["id"]: c["voteCount"] for c in await (await client.get("/candidates")).json()}
    assert counts[1] == 3


async def test_vote_without_a_token_is_a_401(client: Client) -> None:
    await error_of(await client.get("/vote?id=1"), 401)
    candidates = await (await client.get("/candidates")).json()
    assert sum(c["voteCount"] for c in candidates) == 0


@pytest.mark.parametrize("query", [
    "id=abc", "", "id=", "id=99999999999999999999", "id=1.5", "id=-1", "id=0", "id=1&id=2",
    "id=1e3", "id=%EF%BC%91", "id=0x1", "other=1",
])
async def test_vote_with_a_bad_id_is_a_400_not_a_500(client: Client, query: str) -> None:
    token = await legacy_user(client, "alice@example.com")
    response = await client.get(f"/vote?{query}" if query else "/vote", headers={"Authorization": token})
    error = await error_of(response, 400)
    assert "id" in error["fields"]


async def test_vote_for_an_unknown_candidate_is_a_404(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    response = await client.get("/vote?id=999", headers={"Authorization": token})
    await error_of(response, 404, "unknown_candidate")


async def test_second_vote_by_the_same_user_is_a_409(client: Client) -> None:
    token = await legacy_user(client, "alice@example.com")
    assert (await client.get("/vote?id=2", headers={"Authorization": token})).status == 200
    await error_of(await client.get("/vote?id=3", headers={"Authorization": token}), 409, "already_voted")
    counts = {c["id"]: c["voteCount"] for c in await (await client.get("/candidates")).json()}
    assert (counts[2], counts[3]) == (1, 0)


# --- CORS -------------------------------------------------------------------------------------------


def served_paths(client: Client) -> list[str]:
    """Every path the app routes (legacy, /api/v1 and the rest), with a real poll id filled in."""
    paths = {route.resource.canonical for route in client.app.router.routes() if route.resource}
    return sorted(p.replace("{pollId}", "frontend-leader") for p in paths)


async def test_vote_preflight_succeeds_without_a_token(client: Client) -> None:
    response = await client.options("/vote?id=1", headers=PREFLIGHT)
    assert response.status == 204, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = [h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")]
    assert "authorization" in allowed
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


async def test_preflight_succeeds_on_every_route(client: Client) -> None:
    paths = served_paths(client)
    assert {"/auth/signup", "/auth/login", "/auth/token", "/candidates", "/vote"} <= set(paths)
    assert any(p.startswith("/api/v1/") for p in paths)
    for path in [*paths, "/api/v1/polls/frontend-leader/votes"]:
        for method in ("GET", "POST"):
            headers = {**PREFLIGHT, "Access-Control-Request-Method": method,
                       "Access-Control-Request-Headers": "authorization, content-type"}
            response = await client.options(path, headers=headers)
            assert response.status == 204, (path, method, response.status)
            assert response.headers.get("Access-Control-Allow-Origin") == "*", path
            allowed = response.headers["Access-Control-Allow-Headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed, path
            assert method in response.headers["Access-Control-Allow-Methods"], path


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/candidates", 200),
    ("GET", "/vote?id=1", 401),
    ("GET", "/auth/token", 400),
    ("POST", "/auth/login", 400),
    ("GET", "/api/v1/me", 401),
    ("GET", "/no/such/route", 404),
    ("DELETE", "/candidates", 405),
])
async def test_actual_responses_carry_the_allow_origin_header(
    client: Client, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, headers={"Origin": "http://localhost:3000"})
    assert response.status == status, await response.text()
    assert response.headers.get("Access-Control-Allow-Origin") == "*"


async def test_configured_origins_are_echoed_and_others_get_no_allow_header(make_client: MakeClient) -> None:
    client = await make_client(cors_origins=("http://a.example",))
    response = await client.get("/candidates", headers={"Origin": "http://a.example"})
    assert response.headers.get("Access-Control-Allow-Origin") == "http://a.example"
    assert "Origin" in response.headers.get("Vary", "")
    response = await client.options("/vote?id=1", headers={**PREFLIGHT, "Origin": "http://a.example"})
    assert response.status == 204
    assert response.headers.get("Access-Control-Allow-Origin") == "http://a.example"
    assert "Origin" in response.headers.get("Vary", "")

    response = await client.get("/candidates", headers={"Origin": "http://b.example"})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers.get("Vary", "")
    response = await client.options("/vote?id=1", headers={**PREFLIGHT, "Origin": "http://b.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


# --- limits and restarts ----------------------------------------------------------------------------


async def test_a_legacy_body_over_the_limit_is_a_413_in_the_error_shape(client: Client) -> None:
    body = io.BytesIO(("email=a%40b.co&password=pw&name=" + "x" * (2 * 1024 * 1024)).encode())
    response = await client.post(
        "/auth/signup", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    await error_of(response, 413)


@pytest.mark.ledger_file
async def test_restarting_keeps_the_candidates_and_the_votes(make_client: MakeClient) -> None:
    first = await make_client()
    token = await legacy_user(first, "alice@example.com")
    assert (await first.get("/vote?id=2", headers={"Authorization": token})).status == 200
    before = await (await first.get("/candidates")).json()
    await first.close()
    second = await make_client()
    assert await (await second.get("/candidates")).json() == before
    assert (await second.get("/auth/token", params={"token": token})).status == 200
    await error_of(await second.get("/vote?id=3", headers={"Authorization": token}), 409, "already_voted")
