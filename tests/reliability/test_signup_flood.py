"""Signups cannot starve the rest: password checks (logins) go ahead of password hashes (signups),
each waits in a bounded queue, and each client may sign up only so often, the attempts answered
409 included (which is what keeps the 409 of a taken email from listing the registered ones).
Real argon2id costs, real sockets, several loopback source addresses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient
from tests.reliability.helpers import assert_error_shape

REAL_COST = {"argon2_time_cost": 2, "argon2_memory_cost": 19 * 1024, "argon2_parallelism": 1}  # the defaults
PASSWORD = "password-123"


async def _post(
    client: TestClient[Any, Any], local: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own from the loopback address ``local``."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local, 0))) as session,
        session.post(str(client.make_url(path)), json=body) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def _signup(n: int, email: str | None = None) -> dict[str, Any]:
    return {"email": email or f"flood{n}@example.org", "name": f"Flood {n}", "password": PASSWORD}


async def test_a_login_does_not_wait_behind_a_signup_flood(make_client: MakeClient) -> None:
    client = await make_client(**REAL_COST)
    assert (await _post(client, "127.0.0.1", "/api/v1/users", _signup(0, "alice@example.org")))[0] == 201
    start = time.perf_counter()

    async def one_signup(n: int) -> float:
        # from four addresses, under each client's own limit: a flood from many clients
        status, _, body = await _post(client, f"127.0.0.{10 + n % 4}", "/api/v1/users", _signup(n))
        assert status == 201, body
        return time.perf_counter() - start

    flood = asyncio.gather(*(one_signup(n) for n in range(1, 81)))
    await asyncio.sleep(0.3)  # the signups are queued for their hashes by now
    asked = time.perf_counter()
    status, _, body = await _post(client, "127.0.0.1", "/api/v1/auth/login",
                                  {"email": "alice@example.org", "password": PASSWORD})
    login = time.perf_counter() - asked
    assert status == 200, body
    finished = await flood
    drained = max(finished) - 0.3
    # behind the queue (first come, first served) the login would wait for most of the flood
    assert login < drained / 4, f"login {login:.3f}s while the flood took {drained:.3f}s more to drain"


async def test_past_its_bound_the_signup_queue_answers_503_at_once(make_client: MakeClient) -> None:
    client = await make_client(**REAL_COST, signup_queue=4)
    answers = await asyncio.gather(
        *(_post(client, f"127.0.0.{10 + n % 5}", "/auth/signup", _signup(n)) for n in range(30))
    )
    statuses = sorted(a[0] for a in answers)
    assert statuses.count(201) >= 5 and statuses.count(503) >= 10, statuses
    assert set(statuses) == {201, 503}, statuses
    for status, headers, body in answers:
        if status == 503:
            assert assert_error_shape(status, body, allow_5xx=True)["code"] == "busy"
            assert int(headers["Retry-After"]) >= 1
    # the ones refused can come back: nothing of theirs was kept
    refused = [n for n, a in enumerate(answers) if a[0] == 503]
    assert (await _post(client, "127.0.0.9", "/auth/signup", _signup(refused[0])))[0] == 201


async def test_each_client_may_sign_up_only_so_often_and_taken_emails_count(make_client: MakeClient) -> None:
    client = await make_client(signups_per_client=5, signup_window=60)
    for n in range(5):
        assert (await _post(client, "127.0.0.2", "/api/v1/users", _signup(n)))[0] == 201
    status, headers, body = await _post(client, "127.0.0.2", "/auth/signup", _signup(99))
    assert status == 429 and assert_error_shape(status, body)["code"] == "too_many_signups"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # another client is not held back by it
    assert (await _post(client, "127.0.0.1", "/api/v1/users", _signup(100)))[0] == 201
    # asking whether emails are taken costs the same: five answers, then a wait
    answers = [(await _post(client, "127.0.0.3", "/api/v1/users", _signup(n)))[0] for n in range(8)]
    assert answers == [409] * 5 + [429] * 3, answers
