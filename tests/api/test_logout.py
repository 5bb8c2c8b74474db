"""Logging out: one token, or every token of the user; an event in the ledger, so every node and
every restart honours it. Token answers are never cached."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from tests.conftest import TEST_SECRET, MakeClient, signup_and_login

EMAIL, PASSWORD = "lin.logout@example.org", "lin-password-1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: TestClient[Any, Any]) -> str:
    response = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status == 200
    token: str = (await response.json())["accessToken"]
    return token


async def status_of(client: TestClient[Any, Any], token: str) -> int:
    return (await client.get("/api/v1/me", headers=bearer(token))).status


async def test_logging_out_voids_that_token_alone(make_client: MakeClient) -> None:
    client = await make_client()
    first = await signup_and_login(client, EMAIL, PASSWORD)
    second = await login(client)

    response = await client.post("/api/v1/auth/logout", headers=bearer(first))

    assert response.status == 204
    me = await client.get("/api/v1/me", headers=bearer(first))
    assert me.status == 401 and (await me.json())["error"]["code"] == "token_revoked"
    assert (await client.get("/vote?id=1", headers={"Authorization": first})).status == 401
    assert (await client.post("/api/v1/auth/logout", headers=bearer(first))).status == 401
    assert await status_of(client, second) == 200


async def test_logging_out_everywhere_voids_every_earlier_token_but_not_a_later_login(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    tokens = [await signup_and_login(client, EMAIL, PASSWORD), await login(client), await login(client)]

    response = await client.post("/api/v1/auth/logout?everywhere=true", headers=bearer(tokens[1]))

    assert response.status == 204
    assert [await status_of(client, t) for t in tokens] == [401, 401, 401]
    assert await status_of(client, await login(client)) == 200
    bad = await client.post("/api/v1/auth/logout?everywhere=perhaps", headers=bearer(await login(client)))
    assert bad.status == 400 and "everywhere" in (await bad.json())["error"]["fields"]


async def test_a_token_without_an_id_of_its_own_logs_out_every_token(make_client: MakeClient) -> None:
    client = await make_client()
    current = await signup_and_login(client, EMAIL, PASSWORD)
    claims = jwt.decode(current, TEST_SECRET, algorithms=["HS256"])
    now = int(time.time())
    older = jwt.encode(  # as tokens were issued before they had a jti
        {"sub": claims["sub"], "email": EMAIL, "iat": now, "exp": now + 600}, TEST_SECRET, algorithm="HS256"
    )
    assert await status_of(client, older) == 200

    assert (await client.post("/api/v1/auth/logout", headers=bearer(older))).status == 204

    assert [await status_of(client, t) for t in (older, current)] == [401, 401]


async def test_every_node_and_every_restart_honours_a_logout(make_client: MakeClient, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    node_a, node_b = await make_client(db=db), await make_client(db=db)
    token = await signup_and_login(node_a, EMAIL, PASSWORD)
    assert await status_of(node_b, token) == 200

    assert (await node_a.post("/api/v1/auth/logout", headers=bearer(token))).status == 204

    assert await status_of(node_b, token) == 401
    await node_a.close()
    await node_b.close()
    restarted = await make_client(db=db)
    assert await status_of(restarted, token) == 401
    assert await status_of(restarted, await login(restarted)) == 200


async def test_answers_that_carry_a_token_are_never_cached(make_client: MakeClient) -> None:
    client = await make_client()
    await signup_and_login(client, EMAIL, PASSWORD)

    json_login = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    legacy_login = await client.post("/auth/login", data={"email": EMAIL, "password": PASSWORD})

    assert json_login.headers["Cache-Control"] == "no-store"
    assert legacy_login.headers["Cache-Control"] == "no-store"
    assert legacy_login.content_type == "text/plain"  # still the bare token 2020 clients read
