"""Idempotent votes: a retry under the same ``Idempotency-Key`` returns the original vote and appends
nothing, on both surfaces, under concurrency, and across a restart (clean or SIGKILL) of the service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import SETTINGS
from ledger.events import VoteCast
from projections.commands import idempotency_digest
from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import (
    assert_error_shape,
    audit_ok,
    http,
    import_users,
    login,
    read_log,
    rebuild_changes,
    serving,
    write_polls,
    write_users,
)

VOTES = "/api/v1/polls/frontend-leader/votes"


def _auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def _head(client: TestClient[Any, Any]) -> int:
    response = await client.get("/healthz")
    assert response.status == 200
    seq: int = (await response.json())["seq"]
    return seq


async def test_a_retried_json_api_vote_returns_the_original_seq_and_appends_nothing(
    client: TestClient[Any, Any],
) -> None:
    token = await signup_and_login(client, "ida@example.org")
    first = await client.post(VOTES, json={"candidateId": 2}, headers=_auth(token, "ballot-1"))
    assert first.status == 201
    original = await first.json()
    head = await _head(client)
    for _ in range(3):
        again = await client.post(VOTES, json={"candidateId": 2}, headers=_auth(token, "ballot-1"))
        assert again.status == 201
        assert await again.json() == original
    assert await _head(client) == head
    results = await (await client.get("/api/v1/polls/frontend-leader/results")).json()
    assert results["totalVotes"] == 1
    votes = [e.event for _, e in await read_log(client.app[SETTINGS].db) if isinstance(e.event, VoteCast)]
    assert len(votes) == 1 and votes[0].key == idempotency_digest("ballot-1")


async def test_a_retried_legacy_vote_returns_the_original_seq_not_already_voted(
    client: TestClient[Any, Any],
) -> None:
    token = await signup_and_login(client, "leo@example.org")
    first = await client.get("/vote?id=3", headers={"Authorization": token, "Idempotency-Key": "legacy-1"})
    assert first.status == 200
    seq = (await first.json())["seq"]
    head = await _head(client)
    again = await client.get("/vote?id=3", headers={"Authorization": token, "Idempotency-Key": "legacy-1"})
    assert again.status == 200, await again.text()
    assert (await again.json())["seq"] == seq
    # the same key on the other surface names the same vote
    other = await client.post(VOTES, json={"candidateId": 3}, headers=_auth(token, "legacy-1"))
    assert other.status == 201 and (await other.json())["seq"] == seq
    # without the key, the second vote is what it is: already voted
    plain = await client.get("/vote?id=3", headers={"Authorization": token})
    assert plain.status == 409
    assert (await plain.json())["error"]["code"] == "already_voted"
    assert await _head(client) == head


async def test_a_key_reused_for_another_vote_is_409_and_appends_nothing(client: TestClient[Any, Any]) -> None:
    token = await signup_and_login(client, "kim@example.org")
    assert (await client.post(VOTES, json={"candidateId": 1}, headers=_auth(token, "k"))).status == 201
    head = await _head(client)
    other = await client.post(VOTES, json={"candidateId": 2}, headers=_auth(token, "k"))
    assert other.status == 409
    error = assert_error_shape(other.status, await other.read())
    assert error["code"] == "idempotency_key_reused"
    assert await _head(client) == head


async def test_keys_belong_to_their_user(client: TestClient[Any, Any]) -> None:
    a = await signup_and_login(client, "ann@example.org")
    b = await signup_and_login(client, "bob@example.org")
    first = await client.post(VOTES, json={"candidateId": 1}, headers=_auth(a, "shared"))
    second = await client.post(VOTES, json={"candidateId": 1}, headers=_auth(b, "shared"))
    assert first.status == second.status == 201
    assert (await first.json())["seq"] != (await second.json())["seq"]


async def test_concurrent_retries_under_one_key_land_once(make_client: MakeClient, tmp_path: Path) -> None:
    config = write_polls(tmp_path / "polls.toml")
    client = await make_client(config=config)
    token = await signup_and_login(client, "cat@example.org")
    path = "/api/v1/polls/marathon/votes"
    answers = await asyncio.gather(
        *(client.post(path, json={"candidateId": 4}, headers=_auth(token, "same")) for _ in range(20))
    )
    assert {a.status for a in answers} == {201}
    assert len({(await a.json())["seq"] for a in answers}) == 1
    votes = [e.event for _, e in await read_log(client.app[SETTINGS].db) if isinstance(e.event, VoteCast)]
    assert len(votes) == 1


@pytest.mark.parametrize(
    "key",
    [
        "",
        " ",
        "a b",
        "x" * 129,
        "ключ",
        "tab\there",
        "é",
    ],
)
async def test_an_invalid_key_is_400_and_appends_nothing(client: TestClient[Any, Any], key: str) -> None:
    token = await signup_and_login(client, "val@example.org")
    head = await _head(client)
    response = await client.post(
        VOTES, json={"candidateId": 1}, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    )
    assert response.status == 400, await response.text()
    assert assert_error_shape(response.status, await response.read())["code"] == "invalid_header"
    assert await _head(client) == head


@pytest.mark.parametrize("stop", ["clean", "sigkill"])
def test_a_retry_after_a_restart_returns_the_original_vote(tmp_path: Path, stop: str) -> None:
    db, config = tmp_path / "ledger.db", write_polls(tmp_path / "polls.toml")
    users = write_users(tmp_path / "users.jsonl", 1)
    import_users(db, tmp_path / "users.jsonl")
    with serving(db, config=config) as server:
        token = login(server.url, *users[0])
        marathon = http(
            "POST",
            f"{server.url}/api/v1/polls/marathon/votes",
            {"candidateId": 5},
            {"Authorization": f"Bearer {token}", "Idempotency-Key": "restart-1"},
        )
        leader = http(
            "GET", f"{server.url}/vote?id=2", None, {"Authorization": token, "Idempotency-Key": "restart-2"}
        )
        assert marathon[0] == 201 and leader[0] == 200
        if stop == "clean":
            assert server.stop() == 0
    with serving(db, config=config) as server:
        again = http(
            "POST",
            f"{server.url}/api/v1/polls/marathon/votes",
            {"candidateId": 5},
            {"Authorization": f"Bearer {token}", "Idempotency-Key": "restart-1"},
        )
        assert again[0] == 201 and json.loads(again[2]) == json.loads(marathon[2])
        legacy = http(
            "GET", f"{server.url}/vote?id=2", None, {"Authorization": token, "Idempotency-Key": "restart-2"}
        )
        assert legacy[0] == 200 and json.loads(legacy[2])["seq"] == json.loads(leader[2])["seq"]
        assert server.stop() == 0
    votes = [e.event for _, e in asyncio.run(read_log(db)) if isinstance(e.event, VoteCast)]
    expected = sorted(idempotency_digest(k) for k in ("restart-1", "restart-2"))
    assert sorted(v.key or "" for v in votes) == expected
    audit_ok(db)
    assert rebuild_changes(db) == 0
