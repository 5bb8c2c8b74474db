"""Shared fixtures: settings for a fresh ledger file, and a client over real HTTP to the real app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.settings import Settings

TEST_SECRET = "test-secret-" + "x" * 32  # the JWT secret every test app signs with
FAST_HASHING = {"argon2_time_cost": 1, "argon2_memory_cost": 64, "argon2_parallelism": 1}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: a ledger in ``tmp_path``, cheap password hashing, a fixed secret."""
    values: dict[str, Any] = {
        "db": tmp_path / "ledger.db",
        "jwt_secret": TEST_SECRET,
        **FAST_HASHING,
        **overrides,
    }
    return Settings.load(values, environ={})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path) -> MakeClient:
    """Start the real app (``create_app``) on a real socket with the given setting overrides."""

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(make_settings(tmp_path, **overrides)))
        return client

    return start


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    """The service on the bundled demo poll."""
    return await make_client()


async def signup_and_login(
    client: TestClient[Any, Any], email: str, password: str = "password-123", **extra: str
) -> str:
    """Register through the JSON API and return a bearer token."""
    response = await client.post(
        "/api/v1/users", json={"email": email, "name": email.split("@")[0], "password": password, **extra}
    )
    assert response.status == 201, await response.text()
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["accessToken"]
    return token
