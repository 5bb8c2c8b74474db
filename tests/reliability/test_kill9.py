"""SIGKILL under load: every acknowledged vote survives, nothing is counted twice, the ledger audits clean.

A real ``vote-ledger serve`` takes concurrent votes from distinct users (one vote each in a ``single``
poll through the 2020 route, then as many as they like in an ``unlimited`` poll through the JSON API,
each under its own Idempotency-Key), and is killed with SIGKILL once a given number of votes has been
acknowledged. Then, on the same file: every 2xx is in the log at the ``seq`` it was given, as that
user's vote; nothing refused or left unanswered is in it twice; ``audit`` passes and ``rebuild`` changes
nothing. The service is restarted on the file, the unanswered requests are retried with their keys,
and each lands exactly once. This is repeated at several kill points on the one file.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from ledger.events import Envelope, VoteCast
from projections.commands import idempotency_digest
from tests.ledger.helpers import batch_writers, helper_processes, until_ended
from tests.reliability.helpers import (
    LEADER_CANDIDATES,
    MARATHON_CANDIDATES,
    VOTE_LEDGER,
    Server,
    assert_error_shape,
    audit_ok,
    cli_env,
    import_users,
    read_log,
    rebuild_changes,
    start_server,
    write_polls,
    write_users,
)

KILL_POINTS = (50, 300, 1000)  # acknowledged votes before the SIGKILL
WORKERS = 40  # concurrent voters (distinct users) per round
MAX_PER_WORKER = 400  # bound on each voter's requests in a round
TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class Voter:
    index: int
    email: str
    password: str
    user_id: str = ""
    token: str = ""


@dataclass
class Attempt:
    """One vote request and its fate: ``ack`` (a 2xx), ``refused`` (an error answer) or ``unanswered``."""

    voter: Voter
    poll: str
    candidate: int
    key: str | None
    outcome: str = "pending"
    status: int | None = None
    seq: int | None = None
    retried: bool = False


@dataclass
class Round:
    kill_after: int
    attempts: list[Attempt] = field(default_factory=list)
    acked: int = 0
    killed: bool = False


def digest(key: str | None) -> str | None:
    """The form the ledger keeps an idempotency key in."""
    return idempotency_digest(key) if key is not None else None


async def _log_in(session: aiohttp.ClientSession, url: str, voter: Voter) -> None:
    async with session.post(
        f"{url}/api/v1/auth/login", json={"email": voter.email, "password": voter.password}
    ) as response:
        body = await response.json()
        assert response.status == 200, body
    voter.token, voter.user_id = body["accessToken"], body["user"]["id"]


async def _send(session: aiohttp.ClientSession, url: str, attempt: Attempt) -> tuple[int, bytes]:
    """The leader vote through the 2020 route (raw token); the marathon vote through the JSON API."""
    if attempt.poll == "leader":
        async with session.get(
            f"{url}/vote",
            params={"id": str(attempt.candidate)},
            headers={"Authorization": attempt.voter.token},
        ) as response:
            return response.status, await response.read()
    assert attempt.key is not None
    async with session.post(
        f"{url}/api/v1/polls/marathon/votes",
        json={"candidateId": attempt.candidate},
        headers={"Authorization": f"Bearer {attempt.voter.token}", "Idempotency-Key": attempt.key},
    ) as response:
        return response.status, await response.read()


def _record(attempt: Attempt, status: int, body: bytes) -> None:
    attempt.status = status
    if 200 <= status < 300:
        attempt.outcome = "ack"
        attempt.seq = json.loads(body)["seq"]
    else:  # every vote here is a first vote or a new key: only "the ledger cannot write now" may refuse it
        attempt.outcome = "refused"
        assert status == 503, (status, body)
        assert assert_error_shape(status, body, allow_5xx=True)["code"] == "store_unavailable"


async def _voter(
    session: aiohttp.ClientSession, server: Server, voter: Voter, rnd: Round, number: int
) -> None:
    for k in range(MAX_PER_WORKER):
        if k == 0:
            attempt = Attempt(voter, "leader", LEADER_CANDIDATES[voter.index % 3], None)
        else:
            candidate = MARATHON_CANDIDATES[(voter.index + k) % 2]
            attempt = Attempt(voter, "marathon", candidate, f"r{number}-v{voter.index}-{k}")
        rnd.attempts.append(attempt)
        try:
            status, body = await _send(session, server.url, attempt)
        except (TimeoutError, aiohttp.ClientError):
            attempt.outcome = "unanswered"
            return  # the server is gone
        _record(attempt, status, body)
        if attempt.outcome == "ack":
            rnd.acked += 1
            if rnd.acked >= rnd.kill_after and not rnd.killed:
                rnd.killed = True
                server.process.send_signal(signal.SIGKILL)


async def _load_until_killed(server: Server, voters: list[Voter], rnd: Round, number: int) -> None:
    writers = batch_writers(server.pid)
    assert writers, "the server runs no batch writer"
    sealers = helper_processes(server.pid, "ledger.sealing")
    assert sealers, "the server runs no seal worker (it starts one before it listens)"
    connector = aiohttp.TCPConnector(limit=WORKERS + 4)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        await asyncio.gather(*(_log_in(session, server.url, v) for v in voters))
        await asyncio.wait_for(
            asyncio.gather(*(_voter(session, server, v, rnd, number) for v in voters)), timeout=90
        )
    assert rnd.killed, f"only {rnd.acked} votes were acknowledged; the kill point was {rnd.kill_after}"
    server.process.wait(timeout=10)
    assert server.process.returncode == -signal.SIGKILL
    for helper in writers + sealers:  # its input ends with the server: none lives on beside the next
        await until_ended(helper)


def _votes_by_seq(log: list[tuple[int, Envelope]]) -> dict[int, VoteCast]:
    return {seq: env.event for seq, env in log if isinstance(env.event, VoteCast)}


def _check_after_kill(db: Path, attempts: list[Attempt]) -> tuple[int, int]:
    """The ledger against what the clients were told; returns (acknowledged votes lost, unacked but kept)."""
    votes = _votes_by_seq(asyncio.run(read_log(db)))
    keyed = Counter((v.user_id, v.key) for v in votes.values() if v.key is not None)
    leader = Counter(v.user_id for v in votes.values() if v.poll_id == "leader")
    assert all(n == 1 for n in keyed.values()), "an Idempotency-Key landed twice"
    assert all(n == 1 for n in leader.values()), "a user voted twice in the single poll"

    lost = 0
    for a in attempts:
        if a.outcome != "ack":
            continue
        vote = votes.get(a.seq or -1)
        expected = (a.voter.user_id, a.poll, a.candidate, digest(a.key))
        if vote is None or (vote.user_id, vote.poll_id, vote.candidate_id, vote.key) != expected:
            lost += 1
    kept_unacked = 0
    for a in attempts:
        landed = keyed[(a.voter.user_id, idempotency_digest(a.key))] if a.key else leader[a.voter.user_id]
        if a.outcome == "refused":
            assert landed == 0, f"a refused vote is in the ledger: {a}"
        elif a.outcome == "unanswered":
            kept_unacked += landed
    return lost, kept_unacked


async def _retry_unanswered(server: Server, attempts: list[Attempt], db: Path) -> None:
    """After the restart: each unanswered request, sent again, lands exactly once (or was already in)."""
    before = _votes_by_seq(await read_log(db))
    keyed = {(v.user_id, v.key): seq for seq, v in before.items() if v.key is not None}
    leader = {v.user_id: seq for seq, v in before.items() if v.poll_id == "leader"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for a in attempts:
            if a.outcome != "unanswered":
                continue
            status, body = await _send(session, server.url, a)
            a.retried = True
            if a.key is not None:
                assert status == 201, body
                earlier = keyed.get((a.voter.user_id, idempotency_digest(a.key)))
                seq = json.loads(body)["seq"]
                assert earlier is None or seq == earlier, (a, seq, earlier)
            elif a.voter.user_id in leader:
                assert status == 409 and json.loads(body)["error"]["code"] == "already_voted", body
            else:
                assert status == 200, body


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_vote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = tmp_path / "ledger.db", write_polls(tmp_path / "polls.toml")
    users = write_users(tmp_path / "users.jsonl", WORKERS * len(KILL_POINTS))
    import_users(db, tmp_path / "users.jsonl")
    voters = [Voter(i, email, password) for i, (email, password) in enumerate(users)]

    report: list[str] = []
    total_lost = total_acked = 0
    previous: list[Attempt] = []
    everything: list[Attempt] = []
    for number, kill_after in enumerate(KILL_POINTS):
        server = start_server(db, config=config)
        try:
            asyncio.run(_retry_unanswered(server, previous, db))
            rnd = Round(kill_after)
            asyncio.run(
                _load_until_killed(server, voters[number * WORKERS : (number + 1) * WORKERS], rnd, number)
            )
        finally:
            server.kill()
        lost, kept_unacked = _check_after_kill(db, rnd.attempts)
        audit_ok(db)
        assert rebuild_changes(db) == 0
        outcomes = Counter(a.outcome for a in rnd.attempts)
        total_lost, total_acked = total_lost + lost, total_acked + rnd.acked
        report.append(
            f"kill -9 after {kill_after} acks: {rnd.acked} acknowledged, {outcomes['refused']} refused, "
            f"{outcomes['unanswered']} unanswered ({kept_unacked} of them committed anyway); "
            f"acknowledged votes lost: {lost}"
        )
        previous = rnd.attempts
        everything += rnd.attempts

    # the last round's unanswered requests, then a clean stop and the final audit
    server = start_server(db, config=config)
    try:
        asyncio.run(_retry_unanswered(server, previous, db))
        assert server.stop() == 0
    finally:
        server.kill()
    votes = _votes_by_seq(asyncio.run(read_log(db)))
    voted = {a.voter.user_id for a in everything if a.poll == "leader" and a.outcome != "refused"}
    assert {v.user_id for v in votes.values() if v.poll_id == "leader"} == voted
    keys = {(a.voter.user_id, digest(a.key)) for a in everything if a.key and a.outcome != "refused"}
    assert sorted((v.user_id, v.key) for v in votes.values() if v.key) == sorted(keys)  # each exactly once
    audit_ok(db)
    assert rebuild_changes(db) == 0

    with capsys.disabled():
        print()
        for line in report:
            print(line)
        print(f"acknowledged votes lost in total: {total_lost} of {total_acked}")
    assert total_lost == 0


@pytest.mark.slow
def test_sigkill_during_a_rebuild_leaves_a_ledger_that_audits_clean(tmp_path: Path) -> None:
    """A rebuild swaps the projections in one transaction: killed at any point, the file is whole.

    Each rebuild has a table to build afresh: an index nobody declared sits on ``users``. The kill
    times spread over a whole rebuild's time, measured first on the same file.
    """
    db = tmp_path / "ledger.db"
    write_users(tmp_path / "users.jsonl", 3000)
    import_users(db, tmp_path / "users.jsonl")

    def start_rebuild() -> subprocess.Popen[bytes]:
        with closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE INDEX IF NOT EXISTS users_by_name ON users (name)")
        return subprocess.Popen(
            [VOTE_LEDGER, "rebuild", "--db", str(db)],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    started = time.monotonic()
    assert start_rebuild().wait(timeout=60) == 0
    whole = time.monotonic() - started
    killed_mid_run = 0
    for n in range(10):
        process = start_rebuild()
        try:
            time.sleep(whole * (0.2 + 0.08 * n))
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=10)
        killed_mid_run += process.returncode == -signal.SIGKILL  # not finished before the kill
        audit_ok(db)
    assert killed_mid_run >= 3, f"only {killed_mid_run} of 10 rebuilds were still running when killed"
    assert rebuild_changes(db) == 0
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'users_by_name'").fetchall() == []
