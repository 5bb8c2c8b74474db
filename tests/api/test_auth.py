"""Tokens that must not pass, the generated JWT secret, and password hashing kept off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.auth import Claims, VerifiedTokens
from api.keys import SETTINGS
from tests.api.helpers import (
    Client,
    b64url,
    bearer,
    claims_of,
    error_of,
    median,
    timed_get,
    unsigned_token,
)
from tests.conftest import TEST_SECRET, MakeClient, signup_and_login
from tests.reliability.helpers import free_port, run_cli

PROTECTED = ["/vote?id=1", "/api/v1/me"]


def _garble(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


def _claims(token: str, **changes: Any) -> dict[str, Any]:
    claims = {**claims_of(token), **changes}
    return {k: v for k, v in claims.items() if v is not None}


def _signed(payload: bytes) -> str:
    """A token with exactly ``payload`` as its claims, signed with the service's key."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{b64(payload)}"
    signature = hmac.new(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered(token: str, **changes: Any) -> str:
    """The token with claims changed in its payload, its header and signature kept."""
    header, _, signature = token.split(".")
    payload = b64url(json.dumps(_claims(token, **changes)).encode())
    return f"{header}.{payload}.{signature}"


def _typed(token: str, **raw: str) -> str:
    """The token's claims with some replaced by raw JSON text (``null``, ``true``, ``"1"``)."""
    claims = {k: json.dumps(v) for k, v in claims_of(token).items()} | raw
    return _signed(("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in claims.items()) + "}").encode())


FORGERIES: dict[str, Callable[[str], str]] = {
    "alg none": lambda t: unsigned_token(claims_of(t)),
    "alg None": lambda t: unsigned_token(claims_of(t), alg="None"),
    "another key": lambda t: jwt.encode(claims_of(t), "another-secret-" + "y" * 32, algorithm="HS256"),
    "expired": lambda t: jwt.encode(
        _claims(t, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), TEST_SECRET, algorithm="HS256"
    ),
    "garbled signature": _garble,
    "unknown user": lambda t: jwt.encode(_claims(t, sub=uuid.uuid4().hex), TEST_SECRET, algorithm="HS256"),
    "no exp": lambda t: jwt.encode(_claims(t, exp=None), TEST_SECRET, algorithm="HS256"),
    "no sub": lambda t: jwt.encode(_claims(t, sub=None), TEST_SECRET, algorithm="HS256"),
    "exp true": lambda t: _typed(t, exp="true"),
    "exp a string": lambda t: _typed(t, exp='"9999999999"'),
    "exp a float": lambda t: _typed(t, exp="9999999999.5"),
    "nbf null": lambda t: _typed(t, nbf="null"),
    "nbf in the future": lambda t: _typed(t, nbf=str(int(time.time()) + 3600)),
    "iat in the future": lambda t: _typed(t, iat=str(int(time.time()) + 3600)),
    "sub a number": lambda t: _typed(t, sub="7"),
    "claims an array": lambda t: _signed(b"[1, 2]"),
    "payload swapped": lambda t: ".".join(
        [t.split(".")[0], jwt.encode(_claims(t, sub=uuid.uuid4().hex), TEST_SECRET).split(".")[1],
         t.split(".")[2]]
    ),
    "payload tampered": lambda t: _tampered(t, exp=int(time.time()) + 10**8),
    "signature padded": lambda t: t + "=",
    "crit extension": lambda t: jwt.encode(
        claims_of(t), TEST_SECRET, algorithm="HS256", headers={"crit": ["x-ext"], "x-ext": True}
    ),
    "header nested 5,000 deep": lambda t: ".".join([b64url(b"[" * 5000), *t.split(".")[1:]]),
}


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_tokens_are_refused_with_401(client: Client, forgery: str, path: str) -> None:
    token = await signup_and_login(client, "alice@example.com")
    assert (await client.get("/api/v1/me", headers=bearer(token))).status == 200  # the real one works
    forged = FORGERIES[forgery](token)
    assert forged != token
    await error_of(await client.get(path, headers={"Authorization": forged}), 401)
    await error_of(await client.get(path, headers=bearer(forged)), 401)
    if path.startswith("/vote"):
        counts = await (await client.get("/candidates")).json()
        assert sum(c["voteCount"] for c in counts) == 0


async def test_an_expired_token_is_refused_even_after_it_was_accepted(client: Client) -> None:
    """A token checked once is not trusted past its ``exp``."""
    sub = claims_of(await signup_and_login(client, "alice@example.com"))["sub"]
    now = int(time.time())
    short = jwt.encode({"sub": sub, "email": "alice@example.com", "iat": now, "exp": now + 2}, TEST_SECRET)
    assert (await client.get("/api/v1/me", headers=bearer(short))).status == 200
    await asyncio.sleep(now + 2.05 - time.time())
    await error_of(await client.get("/api/v1/me", headers=bearer(short)), 401, "token_expired")


def test_verified_tokens_forget_a_token_at_its_exp() -> None:
    verified = VerifiedTokens(size=4)
    claims = Claims(sub="user", exp=1000, iat=0)
    verified.put("t", claims)
    assert verified.get("t", now=999.5) == claims
    assert verified.get("t", now=1000) is None
    assert verified.get("t", now=10) is None  # gone, not merely hidden
    assert len(verified) == 0


def test_verified_tokens_keep_at_most_their_size_and_drop_the_oldest_first() -> None:
    verified = VerifiedTokens(size=3)
    for n in range(5):
        verified.put(f"t{n}", Claims(sub=f"user{n}", exp=10**9, iat=0))
    assert len(verified) == 3
    kept = [verified.get(f"t{n}", now=0) for n in range(5)]
    assert [c.sub if c else None for c in kept] == [None, None, "user2", "user3", "user4"]


@pytest.mark.parametrize("secret", [
    "ssh-rsa " + "A" * 40,
    "-----BEGIN PUBLIC KEY-----\n" + "A" * 40 + "\n-----END PUBLIC KEY-----",
])
def test_a_public_key_as_the_secret_stops_serve_in_one_line(tmp_path: Path, secret: str) -> None:
    """PyJWT refuses such a key as an HMAC secret: at start-up, not at every login (a 500)."""
    db = tmp_path / "ledger.db"
    result = run_cli("serve", "--db", str(db), "--port", str(free_port()),
                     env={"VOTE_LEDGER_JWT_SECRET": secret}, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the JWT secret cannot be used" in lines[0], result.stderr


# --- the generated secret ---------------------------------------------------------------------------


@pytest.mark.ledger_file
async def test_without_a_configured_secret_a_0600_key_file_is_made_and_kept(make_client: MakeClient) -> None:
    first = await make_client(jwt_secret=None)
    settings = first.app[SETTINGS]
    assert settings.jwt_secret is None
    secret_file = settings.secret_file
    assert secret_file is not None and secret_file.name == "ledger.db.jwt-secret"
    assert secret_file.parent.resolve() == Path(settings.db).parent.resolve()
    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    token = await signup_and_login(first, "alice@example.com")
    jwt.decode(token, secret, algorithms=["HS256"])  # signed with the file's key, not a built-in one
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    await first.close()

    second = await make_client(jwt_secret=None)
    assert secret_file.read_text().strip() == secret
    response = await second.get("/api/v1/me", headers=bearer(token))
    assert response.status == 200, await response.text()
    assert (await response.json())["user"]["email"] == "alice@example.com"


# --- hashing off the event loop ---------------------------------------------------------------------

EXPENSIVE = {"argon2_memory_cost": 65536, "argon2_time_cost": 3}


async def test_candidates_stay_fast_while_twenty_signups_are_hashed(make_client: MakeClient) -> None:
    client = await make_client(**EXPENSIVE)
    for _ in range(3):
        await timed_get(client, "/candidates")
    idle = median([(await timed_get(client, "/candidates"))[0] for _ in range(20)])
    bound = max(10 * idle, 0.25)

    signups = [
        asyncio.create_task(client.post("/api/v1/users", json={
            "email": f"user{n}@example.com", "name": f"user{n}", "password": "password-123",
        }))
        for n in range(20)
    ]
    busy: list[float] = []
    async with asyncio.timeout(60):
        while not all(task.done() for task in signups):
            elapsed, status = await timed_get(client, "/candidates")
            assert status == 200
            busy.append(elapsed)
            await asyncio.sleep(0.01)
        responses = await asyncio.gather(*signups)
    assert [r.status for r in responses] == [201] * 20
    assert len(busy) >= 3, "the signups finished before /candidates could be measured"
    assert max(busy) < bound, f"idle median {idle:.4f}s, during hashing {sorted(busy)[-5:]}"


async def test_unknown_email_and_wrong_password_take_about_as_long(make_client: MakeClient) -> None:
    client = await make_client(**EXPENSIVE)
    await signup_and_login(client, "alice@example.com")

    async def attempt(email: str) -> float:
        start = time.perf_counter()
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-pass"})
        await error_of(response, 401, "invalid_credentials")
        return time.perf_counter() - start

    known: list[float] = []
    unknown: list[float] = []
    for n in range(5):
        known.append(await attempt("alice@example.com"))
        unknown.append(await attempt(f"nobody{n}@example.com"))
    cheap = median([(await timed_get(client, "/candidates"))[0] for _ in range(5)])
    assert median(unknown) >= 0.5 * median(known), (known, unknown)
    assert median(known) >= 0.5 * median(unknown), (known, unknown)
    assert min(median(known), median(unknown)) > 3 * cheap, (known, unknown, cheap)


# --- throttling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/v1/auth/login", "/auth/login"])
async def test_too_many_failed_logins_are_a_429_with_retry_after(make_client: MakeClient, route: str) -> None:
    client = await make_client(login_failures=3)
    await signup_and_login(client, "alice@example.com")
    for _ in range(3):
        response = await client.post(route, json={"email": "alice@example.com", "password": "wrong-pass"})
        await error_of(response, 401)
    response = await client.post(route, json={"email": "alice@example.com", "password": "password-123"})
    await error_of(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 0
    other = await client.post(route, json={"email": "bob@example.com", "password": "wrong-pass"})
    await error_of(other, 401)  # other accounts are not locked by alice's failures
