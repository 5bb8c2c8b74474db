"""Graceful shutdown: SIGTERM under load answers every request that reached the service.

In-flight votes finish and are answered; queued votes are committed (or refused) before the
process exits. So the ledger holds exactly the votes that were acknowledged: none was committed
without its client hearing of it.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from ledger.events import VoteCast
from tests.reliability.helpers import (
    audit_ok,
    import_users,
    login,
    read_log,
    start_server,
    write_polls,
    write_users,
)

VOTERS = 48
VOTES_EACH = 400


@pytest.mark.slow
async def test_sigterm_under_load_answers_every_vote_it_committed(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    users = write_users(tmp_path / "users.jsonl", VOTERS)
    import_users(db, tmp_path / "users.jsonl")
    server = start_server(db, config=write_polls(tmp_path / "polls.toml"))
    acknowledged: list[int] = []
    refused: list[int] = []
    try:
        tokens = [login(server.url, email, password) for email, password in users]

        async def voter(session: aiohttp.ClientSession, token: str, index: int) -> None:
            for n in range(VOTES_EACH):
                try:
                    async with session.post(
                        f"{server.url}/api/v1/polls/marathon/votes",
                        json={"candidateId": 4 + n % 2},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"{index}-{n}"},
                    ) as response:
                        body = await response.json()
                        if response.status == 201:
                            acknowledged.append(body["seq"])
                        else:
                            assert response.status == 503, body  # refused while shutting down
                            assert body["error"]["code"] == "store_unavailable"
                            refused.append(response.status)
                except (TimeoutError, aiohttp.ClientConnectionError):
                    return  # the listener is gone: this request never reached a handler

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            load = asyncio.gather(*(voter(session, t, i) for i, t in enumerate(tokens)))
            while len(acknowledged) < 300:
                await asyncio.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            await load
        assert server.process.wait(timeout=30) == 0, server.log_text()[-3000:]
    finally:
        server.kill()

    votes = {seq for seq, envelope in await read_log(db) if isinstance(envelope.event, VoteCast)
             and envelope.event.poll_id == "marathon"}
    print(f"SIGTERM after 300 acknowledged votes: {len(acknowledged)} acknowledged, {len(refused)} refused")
    assert votes == set(acknowledged), (
        f"{len(votes - set(acknowledged))} committed but never answered, "
        f"{len(set(acknowledged) - votes)} answered but not in the ledger"
    )
    assert "Traceback" not in server.log_text()
    audit_ok(db)
