"""Login throttling: after the configured failures an account and client pair (or a client address)
gets 429 with Retry-After, even for the right password, on both login routes; once the window
passes it works again. A client at one address never holds back the account's owner at another, and
guesses at one account from many addresses stop at the account's hourly limit, except for the
clients the account already knows."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from api.settings import Settings, SettingsError
from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import assert_error_shape, full_width

WINDOW = 2  # seconds
HOURLY = 10_000  # the account's hourly limit where a short window lets one client fail more than 100 times
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
    client = await make_client(login_failures=3, login_window=WINDOW, login_failures_per_account=HOURLY)
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
    client = await make_client(login_failures=3, login_window=60, login_failures_per_account=HOURLY)
    await signup_and_login(client, "sam@example.org", PASSWORD)
    for _ in range(5):  # two failures then a success, five times over: never three failures in a row
        for _ in range(2):
            assert (await _v1_login(client, "sam@example.org", "nope-nope"))[0] == 401
        assert (await _v1_login(client, "sam@example.org", PASSWORD))[0] == 200


async def test_unknown_emails_count_as_failures_too(make_client: MakeClient) -> None:
    client = await make_client(login_failures=3, login_window=60, login_failures_per_account=HOURLY)
    for _ in range(3):
        assert (await _legacy_login(client, "ghost@example.org", "whatever"))[0] == 401
    _assert_throttled(await _legacy_login(client, "ghost@example.org", "whatever"), window=60)


async def test_one_client_address_is_throttled_across_emails_then_opens_again(
    make_client: MakeClient,
) -> None:
    client = await make_client(login_failures=100, login_failures_per_client=4, login_window=WINDOW,
                               login_failures_per_account=10**6)
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
    client = await make_client(login_failures=3, login_window=60, login_failures_per_account=HOURLY)
    for _ in range(3):
        await _v1_login(client, "flood@example.org", "x")
    answers = await asyncio.gather(*(_v1_login(client, "flood@example.org", "x") for _ in range(200)))
    assert {a[0] for a in answers} == {429}
    assert (await client.get("/healthz")).status == 200


# Two loopback addresses (and more, for many attackers): the victim logs in from 127.0.0.1.

VICTIM = "victim@example.org"
HOME = "127.0.0.1"
ATTACKER = "127.0.0.2"


async def _login_from(
    client: TestClient[Any, Any], local: str, email: str, password: str, *, legacy: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """A login through a connection of its own from ``local``, as ``curl --interface`` sends it."""
    url = str(client.make_url("/auth/login" if legacy else "/api/v1/auth/login"))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local, 0))) as session,
        session.post(url, data={"email": email, "password": password}) if legacy
        else session.post(url, json={"email": email, "password": password}) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def _register(client: TestClient[Any, Any], email: str) -> None:
    response = await client.post("/api/v1/users", json={"email": email, "name": "V", "password": PASSWORD})
    assert response.status == 201, await response.text()


async def test_an_attacker_at_one_address_never_locks_out_the_user_at_another(
    make_client: MakeClient,
) -> None:
    client = await make_client()  # the default limits
    await _register(client, VICTIM)
    attacker: list[int] = []
    for round_ in range(3):
        for n in range(20):  # as `curl --interface 127.0.0.2`, over and over, on both routes
            guess = f"guess-{round_}-{n}"
            status, headers, body = await _login_from(client, ATTACKER, VICTIM, guess, legacy=n % 2 == 0)
            attacker.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) > 0 and assert_error_shape(status, body)
        # and then the victim, from her own address, with her password: she gets in, every time
        status, _, body = await _login_from(client, HOME, VICTIM, PASSWORD, legacy=round_ != 1)
        assert status == 200, (round_, body)
    assert attacker[:5] == [401] * 5 and set(attacker[5:]) == {429}, attacker
    # the attacker's own right guess would be refused too: it is held back, not the account
    assert (await _login_from(client, ATTACKER, VICTIM, PASSWORD))[0] == 429


async def test_guesses_from_many_addresses_stop_at_the_accounts_limit_but_known_clients_get_in(
    make_client: MakeClient,
) -> None:
    # two failures a client an hour, five an account: every further address adds nothing
    client = await make_client(login_failures=2, login_window=3600, login_failures_per_account=5)
    await _register(client, VICTIM)
    assert (await _login_from(client, HOME, VICTIM, PASSWORD))[0] == 200  # her own device, known now
    attackers = [f"127.0.0.{n}" for n in range(2, 8)]
    statuses = [(await _login_from(client, a, VICTIM, f"guess-{k}"))[0] for a in attackers for k in range(2)]
    assert statuses.count(401) == 5 and statuses.count(429) == len(statuses) - 5, statuses
    # a new address, even with the right password, waits for the hour to turn ...
    status, headers, _ = await _login_from(client, "127.0.0.9", VICTIM, PASSWORD)
    assert status == 429 and 0 < int(headers["Retry-After"]) <= 3600
    # ... while the client the account knows gets in, on both routes
    assert (await _login_from(client, HOME, VICTIM, PASSWORD))[0] == 200
    assert (await _login_from(client, HOME, VICTIM, PASSWORD, legacy=False))[0] == 200
    # and other accounts are not touched
    await _register(client, "other@example.org")
    assert (await _login_from(client, "127.0.0.9", "other@example.org", PASSWORD))[0] == 200


async def test_concurrent_guesses_cannot_slip_past_the_limit_together(make_client: MakeClient) -> None:
    client = await make_client()
    await _register(client, VICTIM)
    answers = await asyncio.gather(*(_login_from(client, ATTACKER, VICTIM, f"guess-{n}") for n in range(40)))
    assert sorted(a[0] for a in answers) == [401] * 5 + [429] * 35


async def test_many_people_logging_in_at_once_from_one_address_are_not_held_back(
    make_client: MakeClient,
) -> None:
    """A room behind one NAT, at the start of a vote: more logins in flight than failures allowed."""
    client = await make_client(signups_per_client=100)  # they signed up from there too
    emails = [f"member{n}@example.org" for n in range(80)]
    for email in emails:
        await _register(client, email)
    answers = await asyncio.gather(*(_login_from(client, HOME, e, PASSWORD) for e in emails))
    assert [a[0] for a in answers] == [200] * len(emails)


def test_settings_that_let_one_client_reach_the_accounts_limit_are_refused() -> None:
    with pytest.raises(SettingsError, match="login_failures_per_account"):
        Settings.load({"login_failures": 10, "login_window": 60}, environ={})  # 600 an hour from one
    Settings.load({"login_failures": 10, "login_window": 600}, environ={})  # 60 an hour: fine
