"""What the HTTP tests share: the 2020 client's calls, the error shape, tokens and small timers."""

from __future__ import annotations

import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]

DEMO_NAMES = ["정시원", "고은", "유현우", "김*오", "문*빈", "문*진", "서*빈", "이*용", "장*훈", "황*나"]
AXIOS_ACCEPT = "application/json, text/plain, */*"
PREFLIGHT = {
    "Origin": "http://localhost:3000",
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


async def error_of(response: ClientResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is the one JSON error shape with ``status`` (and ``code``); return the error."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json", text
    body = json.loads(text)
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "fields"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict), error
    if code is not None:
        assert error["code"] == code, error
    return error


async def legacy_signup(client: Client, email: str, password: str = "pw", name: str = "someone",
                        **extra: str) -> ClientResponse:
    """The 2020 signup: a form-urlencoded body, as most clients sent it."""
    fields = {"email": email, "password": password, "name": name, **extra}
    return await client.post("/auth/signup", data=fields)


async def legacy_login(client: Client, email: str, password: str = "pw") -> str:
    """The 2020 login: a form body in, the bare JWT out."""
    response = await client.post("/auth/login", data={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return await response.text()


async def legacy_user(client: Client, email: str, password: str = "pw", **extra: str) -> str:
    """Sign up and log in on the legacy routes; the bare token."""
    response = await legacy_signup(client, email, password, **extra)
    assert response.status == 201, await response.text()
    return await legacy_login(client, email, password)


def claims_of(token: str) -> dict[str, Any]:
    """The token's payload, read without checking the signature (as 2020 tools do)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_token(claims: dict[str, Any], alg: str = "none") -> str:
    """An ``alg: none`` token, built by hand: header, payload and an empty signature."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def candidate_ids(client: Client, poll_id: str) -> dict[str, int]:
    """A poll's candidates by name."""
    response = await client.get(f"/api/v1/polls/{poll_id}")
    assert response.status == 200, await response.text()
    return {c["name"]: c["id"] for c in (await response.json())["candidates"]}


async def head_seq(client: Client) -> int:
    response = await client.get("/healthz")
    assert response.status == 200, await response.text()
    seq: int = (await response.json())["seq"]
    return seq


async def timed_get(client: Client, path: str, **kwargs: Any) -> tuple[float, int]:
    """Seconds one GET took, and its status."""
    start = time.perf_counter()
    response = await client.get(path, **kwargs)
    await response.read()
    return time.perf_counter() - start, response.status


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_polls(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
