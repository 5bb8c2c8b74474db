"""What both surfaces do the same way: sign up, log in, authenticate, vote."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from api.auth import Identity, normalize_email
from api.clients import client_address
from api.errors import ApiError
from api.hashing import HashingBusyError
from api.keys import AUTH, LEDGER, SIGNUPS, THROTTLE
from projections.commands import CastVote, Registered, RegisterUser
from projections.model import User
from projections.state import VoteRecord

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

async def sign_up(request: web.Request, data: dict[str, Any]) -> User:
    """Register a user from validated fields; 409 when the email is taken, 429 past the client's
    limit on signups (which the 409s count towards: see ``SignupThrottle``)."""
    wait = request.app[SIGNUPS].attempt(client_address(request))
    if wait:
        raise ApiError(429, "too_many_signups", "too many signups from this client; wait and try again",
                       headers={"Retry-After": str(wait)})
    ledger = request.app[LEDGER]
    email = normalize_email(data["email"])
    if email in ledger.state.users_by_email:  # cheap early answer; the writer checks again
        raise ApiError(409, "email_taken", "this email is already registered", {"email": "already taken"})
    password_hash = await request.app[AUTH].hash_password(data["password"])
    result = await ledger.execute(register_command(data, password_hash))
    assert isinstance(result, Registered)
    return ledger.state.users[result.user_id]


def register_command(data: Mapping[str, Any], password_hash: str) -> RegisterUser:
    """The registration validated signup fields ask for: the email normalized, the name trimmed."""
    email, name = normalize_email(data["email"]), data["name"].strip()
    return RegisterUser(email, name, password_hash, data.get("part"), data.get("team"))


async def log_in(request: web.Request, email: str, password: str) -> tuple[str, User]:
    """A token for the right email and password; 401 otherwise, 429 after too many failures."""
    email = normalize_email(email)
    client = client_address(request)
    throttle = request.app[THROTTLE]
    wait = throttle.retry_after(email, client)
    if wait:
        raise ApiError(429, "too_many_attempts", "too many failed logins; wait and try again",
                       headers={"Retry-After": str(wait)})
    mark = throttle.attempt(email, client)  # a failure at this account until found right
    ledger = request.app[LEDGER]
    await ledger.refresh()
    user = ledger.state.user_by_email(email)
    auth = request.app[AUTH]
    password_hash = await ledger.password_hash(user) if user is not None else None
    try:
        right = await auth.check_password(password_hash, password)
    except HashingBusyError:
        throttle.withdraw(email, client, mark)
        raise
    if not right or user is None:
        throttle.failed(client)
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    throttle.succeeded(email, client, mark)
    return auth.issue(user), user


def authenticate(request: web.Request, header: str | None = None) -> Identity:
    """The caller's identity from ``Authorization`` (or ``header``); 401 when absent or invalid."""
    value = header if header is not None else request.headers.get("Authorization")
    return request.app[AUTH].verify(value, request.app[LEDGER].state)


NO_TOKEN = {"", "null", "undefined", '""'}


def caller_id(request: web.Request) -> str | None:
    """The caller's user id where a route works with or without a login (401 for a bad token).

    A logged-out 2020 client sends ``Authorization: null`` (``JSON.parse`` of nothing stored).
    """
    header = request.headers.get("Authorization")
    if header is None or header.strip() in NO_TOKEN:
        return None
    return authenticate(request).user.user_id


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ApiError(400, "invalid_header", "Idempotency-Key must be 1 to 128 visible ASCII characters",
                       {"Idempotency-Key": "invalid"})
    return key


async def cast_vote(
    request: web.Request, identity: Identity, poll_id: str, candidate_id: int
) -> tuple[VoteRecord, msgspec.Raw]:
    """Vote; where the vote landed in the ledger (after it is durable), and its receipt (JSON, to
    go into the answer as it is)."""
    ledger = request.app[LEDGER]
    command = CastVote(identity.user.user_id, poll_id, candidate_id, idempotency_key(request))
    result = await ledger.execute(command)
    assert isinstance(result, VoteRecord)
    return result, msgspec.Raw(await ledger.receipt_json(result.seq))
