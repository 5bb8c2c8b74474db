"""Login throttling: after the configured failures an email (or a client address) gets 429 with
Retry-After, even for the right password, on both login routes; once the window passes it works again."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import assert_error_shape, full_width

WINDOW = 2  # seconds
PASSWORD = "password-123"


async def _v1_login(
    client: TestClient[Any, Any], email: str, password: str
) -> tuple[int, dict[str, str], bytes]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return response.status, dict(response.headers), await response.read()


async def _legacy_login(
    client: TestClient[Any, Any], email: str, password: str
) -> tuple[int, dict[str, str], bytes]:
    response = await client.post("/auth/login", data={"email": email, "password": password})
    return response.status, dict(response.headers), await response.read()


def _assert_throttled(answer: tuple[int, dict[str, str], bytes], window: int = WINDOW) -> int:
    status, headers, body = answer
    assert status == 429, (status, body)
    assert assert_error_shape(status, body)["code"] == "too_many_attempts"
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= window + 1
    return retry_after


async def test_an_email_is_throttled_after_its_failures_then_opens_again(make_client: MakeClient) -> None:
    client = await make_client(login_failures=3, login_window=WINDOW)
    await signup_and_login(client, "tom@example.org", PASSWORD)
    for _ in range(3):
        status, _, body = await _v1_login(client, "tom@example.org", "wrong-password")
        assert status == 401 and assert_error_shape(status, body)["code"] == "invalid_credentials"
    _assert_throttled(await _v1_login(client, "tom@example.org", "wrong-password"))
    # the right password is refused too while throttled, on both surfaces and under any spelling
    _assert_throttled(await _v1_login(client, "tom@example.org", PASSWORD))
    _assert_throttled(await _legacy_login(client, "tom@example.org", PASSWORD))
    _assert_throttled(await _v1_login(client, " TOM@example.org ", PASSWORD))
    _assert_throttled(await _v1_login(client, full_width("tom") + "@example.org", PASSWORD))
    # another account from the same address is not affected
    await signup_and_login(client, "uma@example.org", PASSWORD)
    # not locked for good: once the window has passed, the right password works
    await asyncio.sleep(WINDOW + 0.2)
    status, _, body = await _v1_login(client, "tom@example.org", PASSWORD)
    assert status == 200, body
    status, _, token = await _legacy_login(client, "tom@example.org", PASSWORD)
    assert status == 200 and token.count(b".") == 2


async def test_a_success_clears_the_failures_of_that_email(make_client: MakeClient) -> None:
    client = await make_client(login_failures=3, login_window=60)
    await signup_and_login(client, "sam@example.org", PASSWORD)
    for _ in range(5):  # two failures then a success, five times over: never three failures in a row
        for _ in range(2):
            assert (await _v1_login(client, "sam@example.org", "nope-nope"))[0] == 401
        assert (await _v1_login(client, "sam@example.org", PASSWORD))[0] == 200


async def test_unknown_emails_count_as_failures_too(make_client: MakeClient) -> None:
    client = await make_client(login_failures=3, login_window=60)
    for _ in range(3):
        assert (await _legacy_login(client, "ghost@example.org", "whatever"))[0] == 401
    _assert_throttled(await _legacy_login(client, "ghost@example.org", "whatever"), window=60)


async def test_one_client_address_is_throttled_across_emails_then_opens_again(
    make_client: MakeClient,
) -> None:
    client = await make_client(login_failures=100, login_failures_per_client=4, login_window=WINDOW)
    await signup_and_login(client, "vic@example.org", PASSWORD)
    for n in range(4):  # a different email each time: only the per-address limit can trip
        assert (await _v1_login(client, f"guess{n}@example.org", "guess"))[0] == 401
    _assert_throttled(await _v1_login(client, "guess9@example.org", "guess"))
    _assert_throttled(await _v1_login(client, "vic@example.org", PASSWORD))
    _assert_throttled(await _legacy_login(client, "vic@example.org", PASSWORD))
    await asyncio.sleep(WINDOW + 0.2)
    status, _, body = await _v1_login(client, "vic@example.org", PASSWORD)
    assert status == 200, body


async def test_throttled_logins_are_answered_without_checking_any_password(make_client: MakeClient) -> None:
    """A flood against a throttled email is cheap to refuse: all 429, fast, and the service stays up."""
    client = await make_client(login_failures=3, login_window=60)
    for _ in range(3):
        await _v1_login(client, "flood@example.org", "x")
    answers = await asyncio.gather(*(_v1_login(client, "flood@example.org", "x") for _ in range(200)))
    assert {a[0] for a in answers} == {429}
    assert (await client.get("/healthz")).status == 200
