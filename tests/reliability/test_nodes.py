"""Several ``vote-ledger serve`` nodes on one PostgreSQL database: one truth.

Real processes over real sockets, each test in a database of its own on the machine's server:
every node decides every command against the whole log (a vote raced through two nodes is taken
once, an email registers once); a vote acknowledged by one node shows in the other's answers within
100 ms (p99); tokens and idempotency keys are honoured by every node; a node killed with SIGKILL
under load loses no acknowledged vote while the other keeps serving; and a node that missed
notifications still sees every vote, a little later.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ledger.events import Envelope, VoteCast
from projections.commands import idempotency_digest
from tests.postgres import fresh_database, require_postgres
from tests.reliability.helpers import (
    LEADER_CANDIDATES,
    MARATHON_CANDIDATES,
    VOTE_LEDGER,
    assert_error_shape,
    cli_env,
    free_port,
    http,
    login,
    read_log,
    run_cli,
    write_polls,
    write_users,
)
from tests.reliability.pgcluster import Node, nodes

TIMEOUT = aiohttp.ClientTimeout(total=20)
VISIBLE_WITHIN = 0.100  # seconds: p99 of the delay before another node shows an acknowledged vote


@dataclass
class Setup:
    """A database holding a ledger with ``users``, and what the nodes are started with."""

    db: str
    config: Path
    logs: Path
    users: list[tuple[str, str]]


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of an empty database of this test's own on the machine's server; dropped afterwards."""
    require_postgres()
    manager = fresh_database()
    loop = asyncio.new_event_loop()  # its own: the test's ``asyncio.run`` calls come and go meanwhile
    try:
        url = loop.run_until_complete(manager.__aenter__())
        try:
            yield url
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()


def _setup(database: str, tmp_path: Path, users: int) -> Setup:
    logs = tmp_path / "logs"
    logs.mkdir()
    made = write_users(logs / "users.jsonl", users)
    imported = run_cli("users", "import", str(logs / "users.jsonl"), "--db", database)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    return Setup(database, write_polls(logs / "polls.toml"), logs, made)


@pytest.fixture
def ledger_with_users(database: str, tmp_path: Path) -> Setup:
    return _setup(database, tmp_path, 60)


def _audit(db: str) -> dict[str, Any]:
    """``vote-ledger audit --db URL --json``; asserts it passed."""
    result = run_cli("audit", "--db", db, "--json")
    assert result.returncode == 0, f"audit failed:\n{result.stdout}\n{result.stderr}"
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _votes(db: str) -> dict[int, VoteCast]:
    log: list[tuple[int, Envelope]] = asyncio.run(read_log(db))
    return {seq: env.event for seq, env in log if isinstance(env.event, VoteCast)}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _no_traceback(*node_list: Node) -> None:
    for node in node_list:
        assert "Traceback" not in node.log_text(), node.log_text()[-3000:]


async def _log_in(session: aiohttp.ClientSession, node: Node, email: str, password: str) -> tuple[str, str]:
    """(token, user id) from the JSON API's login on ``node``."""
    async with session.post(
        f"{node.url}/api/v1/auth/login", json={"email": email, "password": password}
    ) as response:
        body = await response.json()
        assert response.status == 200, body
    return body["accessToken"], body["user"]["id"]


async def _json_vote(
    session: aiohttp.ClientSession, node: Node, token: str, poll: str, candidate: int, key: str | None = None
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with session.post(
        f"{node.url}/api/v1/polls/{poll}/votes", json={"candidateId": candidate}, headers=headers
    ) as response:
        return response.status, await response.read()


async def _legacy_vote(
    session: aiohttp.ClientSession, node: Node, token: str, candidate: int
) -> tuple[int, bytes]:
    async with session.get(
        f"{node.url}/vote", params={"id": str(candidate)}, headers={"Authorization": token}
    ) as response:
        return response.status, await response.read()


async def _results(session: aiohttp.ClientSession, node: Node, poll: str) -> dict[str, Any]:
    async with session.get(f"{node.url}/api/v1/polls/{poll}/results") as response:
        assert response.status == 200, await response.read()
        body: dict[str, Any] = await response.json()
        return body


# --- races: one decision per command, whichever node takes it ----------------------------------


async def _race_votes(a: Node, b: Node, users: list[tuple[str, str]]) -> list[list[tuple[int, bytes, int]]]:
    """Each user's leader vote sent four times at once, twice to each node and on both surfaces,
    each for another candidate; a few users race at a time. Returns each user's answers with the
    candidate each asked for."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        tokens = await asyncio.gather(*(_log_in(session, a if n % 2 else b, *u) for n, u in enumerate(users)))
        outcomes: list[list[tuple[int, bytes, int]]] = []
        for start in range(0, len(users), 4):
            group = tokens[start : start + 4]

            async def race(token: str) -> list[tuple[int, bytes, int]]:
                tries = [
                    (_json_vote(session, a, token, "leader", 1), 1),
                    (_legacy_vote(session, b, token, 2), 2),
                    (_json_vote(session, b, token, "leader", 3), 3),
                    (_legacy_vote(session, a, token, 1), 1),
                ]
                answers = await asyncio.gather(*(send for send, _ in tries))
                return [(status, body, c) for (status, body), (_, c) in zip(answers, tries, strict=True)]

            outcomes += await asyncio.gather(*(race(token) for token, _ in group))
        return outcomes


@pytest.mark.slow
def test_a_vote_raced_through_two_nodes_is_taken_exactly_once(ledger_with_users: Setup) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (a, b):
        outcomes = asyncio.run(_race_votes(a, b, setup.users))
        taken: dict[int, int] = {}  # seq -> the candidate the successful request asked for
        for answers in outcomes:
            won = [(status, body, c) for status, body, c in answers if 200 <= status < 300]
            assert len(won) == 1, answers
            status, body, candidate = won[0]
            assert status in (200, 201), answers
            taken[json.loads(body)["seq"]] = candidate
            for status, body, _ in answers:
                if not 200 <= status < 300:
                    assert status == 409, answers
                    assert assert_error_shape(status, body)["code"] == "already_voted", body
        votes = _votes(setup.db)
        leader = [v for v in votes.values() if v.poll_id == "leader"]
        assert len(leader) == len(setup.users)
        assert len({v.user_id for v in leader}) == len(setup.users)
        assert {seq: votes[seq].candidate_id for seq in taken} == taken
        # both nodes count the same votes, and so does the audit
        for node in (a, b):
            counts = json.loads(http("GET", f"{node.url}/candidates")[2])
            assert sum(c["voteCount"] for c in counts) == len(setup.users)
        audited = _audit(setup.db)
        assert next(p for p in audited["polls"] if p["id"] == "leader")["totalVotes"] == len(setup.users)
        _no_traceback(a, b)


async def _race_signups(a: Node, b: Node, emails: list[str]) -> list[list[tuple[int, bytes, str]]]:
    """Each email signed up four times at once, twice on each node and on both surfaces, each with
    a password of its own. Returns the answers with the password each request gave."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:

        async def one(node: Node, path: str, email: str, password: str) -> tuple[int, bytes, str]:
            body = {"email": email, "name": "Racer", "password": password}
            async with session.post(f"{node.url}{path}", json=body) as response:
                return response.status, await response.read(), password

        async def race(email: str) -> list[tuple[int, bytes, str]]:
            return list(await asyncio.gather(
                one(a, "/api/v1/users", email, "password-a-json"),
                one(b, "/auth/signup", email, "password-b-legacy"),
                one(b, "/api/v1/users", email, "password-b-json"),
                one(a, "/auth/signup", email, "password-a-legacy"),
            ))

        outcomes: list[list[tuple[int, bytes, str]]] = []
        for start in range(0, len(emails), 5):
            outcomes += await asyncio.gather(*(race(e) for e in emails[start : start + 5]))
        return outcomes


@pytest.mark.slow
def test_an_email_signed_up_on_two_nodes_at_once_registers_once(ledger_with_users: Setup) -> None:
    setup = ledger_with_users
    emails = [f"racer{n}@example.org" for n in range(30)]
    env = {"VOTE_LEDGER_SIGNUPS_PER_CLIENT": "10000"}  # every signup here comes from one address
    with nodes(setup.db, setup.logs, 2, config=setup.config, env=env) as (a, b):
        outcomes = asyncio.run(_race_signups(a, b, emails))
        for email, answers in zip(emails, outcomes, strict=True):
            created = [password for status, _, password in answers if status == 201]
            assert len(created) == 1, (email, answers)
            for status, body, _ in answers:
                if status != 201:
                    assert status == 409 and assert_error_shape(status, body)["code"] == "email_taken", body
            # the one registration is the user on both nodes: its password logs in everywhere
            for node in (a, b):
                login(node.url, email, created[0])
        audited = _audit(setup.db)
        assert audited["users"] == len(setup.users) + len(emails)
        _no_traceback(a, b)


@pytest.mark.parametrize("shared", ["VOTE_LEDGER_JWT_SECRET", "VOTE_LEDGER_SIGNING_KEY"])
def test_a_node_without_a_shared_key_refuses_to_start_in_one_line(database: str, shared: str) -> None:
    env = {k: v for k, v in cli_env().items() if k != shared}
    args = [VOTE_LEDGER, "serve", "--db", database, "--host", "127.0.0.1", "--port", str(free_port())]
    refused = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    output = (refused.stdout + refused.stderr).strip()
    assert refused.returncode != 0 and "Traceback" not in output, output
    assert output.splitlines()[-1].startswith("vote-ledger: error:"), output
    assert shared in output, output


def test_three_nodes_started_together_on_an_empty_database_lay_it_out_and_load_the_polls_once(
    database: str, tmp_path: Path
) -> None:
    config = write_polls(tmp_path / "polls.toml")
    with nodes(database, tmp_path, 3, config=config) as started:
        listings = [json.loads(http("GET", f"{node.url}/api/v1/polls")[2]) for node in started]
        assert listings[0] == listings[1] == listings[2]
        candidates = [json.loads(http("GET", f"{node.url}/candidates")[2]) for node in started]
        assert [c["id"] for c in candidates[0]] == list(LEADER_CANDIDATES)
        assert candidates[0] == candidates[1] == candidates[2]
        _no_traceback(*started)
    audited = _audit(database)
    assert [(p["id"], len(p["candidates"])) for p in audited["polls"]] == [("leader", 3), ("marathon", 2)]
    assert audited["eventsByType"]["PollCreated"] == 2
    assert audited["eventsByType"]["CandidateAdded"] == 5


def test_a_poll_closed_by_the_cli_is_closed_on_every_node_at_once(ledger_with_users: Setup) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (a, b):
        tokens = [login(a.url, *user) for user in setup.users[:2]]
        assert http("POST", f"{b.url}/api/v1/polls/marathon/votes", {"candidateId": 4},
                    _bearer(tokens[0]))[0] == 201
        closed = run_cli("polls", "close", "marathon", "--db", setup.db)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        # no wait: the first vote each node decides after the close is decided on the log with it
        for node, token in ((a, tokens[1]), (b, tokens[0])):
            status, _, body = http("POST", f"{node.url}/api/v1/polls/marathon/votes", {"candidateId": 5},
                                   _bearer(token))
            assert status == 409 and assert_error_shape(status, body)["code"] == "poll_closed", body
        for node in (a, b):
            poll = json.loads(http("GET", f"{node.url}/api/v1/polls/marathon")[2])
            assert poll["status"] == "closed", poll
        reopened = run_cli("polls", "open", "marathon", "--db", setup.db)
        assert reopened.returncode == 0, reopened.stdout + reopened.stderr
        status, _, body = http("POST", f"{a.url}/api/v1/polls/marathon/votes", {"candidateId": 5},
                               _bearer(tokens[1]))
        assert status == 201, body
        _no_traceback(a, b)


# --- one node's answer is every node's ------------------------------------------------------------


async def _visibility(a: Node, b: Node, email: str, password: str, votes: int) -> list[float]:
    """Cast ``votes`` votes one after another, alternately on each node, and after each 201 poll
    the other node's results until they show it: the delays, in seconds."""
    delays: list[float] = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        token, _ = await _log_in(session, a, email, password)
        total = (await _results(session, a, "marathon"))["totalVotes"]
        for n in range(votes):
            writer, reader = (a, b) if n % 2 == 0 else (b, a)
            status, body = await _json_vote(session, writer, token, "marathon", MARATHON_CANDIDATES[n % 2])
            assert status == 201, body
            acknowledged = time.perf_counter()
            seq, total = json.loads(body)["seq"], total + 1
            deadline = acknowledged + 2.0
            while True:
                shown = await _results(session, reader, "marathon")
                if shown["asOf"] >= seq:
                    assert shown["totalVotes"] == total, shown
                    delays.append(time.perf_counter() - acknowledged)
                    break
                assert time.perf_counter() < deadline, f"vote at seq {seq} not shown by the other node in 2 s"
    return delays


def _p99(delays: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(delays)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _figures(delays: list[float]) -> str:
    return (f"{len(delays)} votes: p50 {statistics.median(delays) * 1000:.1f} ms, "
            f"p99 {_p99(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")


@pytest.mark.slow
def test_a_vote_acknowledged_by_one_node_shows_on_the_other_within_100_ms(
    ledger_with_users: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (a, b):
        delays = asyncio.run(_visibility(a, b, *setup.users[0], votes=200))
        with capsys.disabled():
            print(f"\ncross-node visibility, {_figures(delays)}")
        assert _p99(delays) <= VISIBLE_WITHIN, _figures(delays)
        _no_traceback(a, b)


def test_a_token_issued_by_one_node_is_accepted_by_the_others(ledger_with_users: Setup) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 3, config=setup.config) as (a, b, c):
        # a user signed up on a, logged in on a, known at once to b and c
        status, _, body = http("POST", f"{a.url}/api/v1/users",
                               {"email": "newcomer@example.org", "name": "New", "password": "password-1"})
        assert status == 201, body
        token = login(a.url, "newcomer@example.org", "password-1")
        for node in (b, c):
            status, _, body = http("GET", f"{node.url}/api/v1/me", headers=_bearer(token))
            assert status == 200 and json.loads(body)["user"]["email"] == "newcomer@example.org", body
            status, _, body = http("GET", f"{node.url}/auth/token?token={token}")
            assert status == 200, body
        status, _, body = http("GET", f"{b.url}/vote?id=2", headers={"Authorization": token})
        assert status == 200, body
        status, _, body = http("POST", f"{c.url}/api/v1/polls/marathon/votes", {"candidateId": 5},
                               {"Authorization": f'"{token}"'})
        assert status == 201, body
        me = json.loads(http("GET", f"{a.url}/api/v1/me", headers={"Authorization": token})[2])
        assert {p["pollId"]: p["candidateId"] for p in me["polls"]} == {"leader": 2, "marathon": 5}
        # a forged token is refused by every node alike
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for node in (a, b, c):
            status, _, body = http("GET", f"{node.url}/api/v1/me", headers=_bearer(forged))
            assert status == 401, body
        _no_traceback(a, b, c)


def test_an_idempotency_key_retried_on_another_node_returns_the_first_answer(
    ledger_with_users: Setup,
) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (a, b):
        token = login(a.url, *setup.users[0])
        answers: list[tuple[int, dict[str, Any]]] = []
        for n in range(20):
            headers = {**_bearer(token), "Idempotency-Key": f"retry-{n}"}
            first = http("POST", f"{a.url}/api/v1/polls/marathon/votes", {"candidateId": 4}, headers)
            again = http("POST", f"{b.url}/api/v1/polls/marathon/votes", {"candidateId": 4}, headers)
            assert first[0] == 201 and again[0] == 201, (first, again)
            assert json.loads(again[2]) == json.loads(first[2])
            answers.append((first[0], json.loads(first[2])))
            # the same key with another vote is refused on either node
            other = http("POST", f"{b.url}/api/v1/polls/marathon/votes", {"candidateId": 5}, headers)
            assert other[0] == 409, other
            assert assert_error_shape(other[0], other[2])["code"] == "idempotency_key_reused"
        votes = _votes(setup.db)
        keyed = Counter(v.key for v in votes.values() if v.key is not None)
        assert sorted(keyed.values()) == [1] * 20
        marathon = {seq for seq, v in votes.items() if v.poll_id == "marathon"}
        assert marathon == {answer["seq"] for _, answer in answers}
        _no_traceback(a, b)


# --- a node killed under load -------------------------------------------------------------------

WORKERS = 40  # voters, half of them on each node
PER_VOTER = 30  # a leader vote, then keyed marathon votes
KILL_AFTER = 150  # votes acknowledged by the victim before its SIGKILL


@dataclass
class Attempt:
    node: int  # 0: the victim, 1: the survivor
    user_id: str
    token: str
    poll: str
    candidate: int
    key: str | None
    outcome: str = "pending"  # ack | refused | unanswered
    seq: int | None = None


@dataclass
class Load:
    attempts: list[Attempt] = field(default_factory=list)
    victim_acks: int = 0
    killed_at: float | None = None


async def _send(session: aiohttp.ClientSession, node: Node, attempt: Attempt) -> tuple[int, bytes]:
    if attempt.poll == "leader":
        return await _legacy_vote(session, node, attempt.token, attempt.candidate)
    return await _json_vote(session, node, attempt.token, attempt.poll, attempt.candidate, attempt.key)


async def _voter(session: aiohttp.ClientSession, pair: tuple[Node, Node], index: int, token: str,
                 user_id: str, load: Load) -> None:
    side = index % 2
    node = pair[side]
    for k in range(PER_VOTER):
        if k == 0:
            attempt = Attempt(side, user_id, token, "leader", LEADER_CANDIDATES[index % 3], None)
        else:
            candidate = MARATHON_CANDIDATES[k % 2]
            attempt = Attempt(side, user_id, token, "marathon", candidate, f"load-{index}-{k}")
        load.attempts.append(attempt)
        try:
            status, body = await _send(session, node, attempt)
        except (TimeoutError, aiohttp.ClientError):
            attempt.outcome = "unanswered"
            assert side == 0, "the surviving node stopped answering"
            return
        if 200 <= status < 300:
            attempt.outcome, attempt.seq = "ack", json.loads(body)["seq"]
        else:  # every vote here is a first vote or a new key: only an unavailable ledger may refuse it
            attempt.outcome = "refused"
            assert status == 503, (status, body)
            code = assert_error_shape(status, body, allow_5xx=True)["code"]
            assert code == "store_unavailable", body
        if side == 0 and attempt.outcome == "ack":
            load.victim_acks += 1
            if load.victim_acks >= KILL_AFTER and load.killed_at is None:
                load.killed_at = time.monotonic()
                pair[0].process.send_signal(signal.SIGKILL)


async def _load_until_killed(pair: tuple[Node, Node], users: list[tuple[str, str]]) -> Load:
    load = Load()
    connector = aiohttp.TCPConnector(limit=WORKERS + 4)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        logged_in = await asyncio.gather(*(_log_in(session, pair[n % 2], *u) for n, u in enumerate(users)))
        await asyncio.wait_for(asyncio.gather(*(
            _voter(session, pair, n, token, user_id, load) for n, (token, user_id) in enumerate(logged_in)
        )), timeout=120)
    return load


@pytest.mark.slow
def test_a_node_killed_under_load_loses_no_acknowledged_vote_and_the_other_serves_on(
    ledger_with_users: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = ledger_with_users
    users = setup.users[:WORKERS]
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (victim, survivor):
        load = asyncio.run(_load_until_killed((victim, survivor), users))
        assert load.killed_at is not None, f"the victim acknowledged only {load.victim_acks} votes"
        victim.process.wait(timeout=10)
        assert victim.process.returncode == -signal.SIGKILL
        assert survivor.alive()

        votes = _votes(setup.db)
        keyed = Counter((v.user_id, v.key) for v in votes.values() if v.key is not None)
        leader = Counter(v.user_id for v in votes.values() if v.poll_id == "leader")
        assert set(keyed.values()) <= {1}, "an Idempotency-Key landed twice"
        assert set(leader.values()) <= {1}, "a user voted twice in the single poll"
        lost = []
        for a in load.attempts:
            if a.outcome == "ack":
                vote = votes.get(a.seq or -1)
                got = None if vote is None else (vote.user_id, vote.poll_id, vote.candidate_id, vote.key)
                if got != (a.user_id, a.poll, a.candidate, idempotency_digest(a.key) if a.key else None):
                    lost.append(a)
            elif a.outcome == "refused":
                landed = keyed[(a.user_id, idempotency_digest(a.key))] if a.key else leader[a.user_id]
                assert landed == 0, f"a refused vote is in the ledger: {a}"
        assert lost == [], f"{len(lost)} acknowledged votes are not in the ledger as acknowledged"

        # the survivor takes the victim's unanswered votes again: each lands once
        retried = asyncio.run(_retry_on(survivor, [a for a in load.attempts if a.outcome == "unanswered"]))
        votes = _votes(setup.db)
        keyed = Counter((v.user_id, v.key) for v in votes.values() if v.key is not None)
        assert set(keyed.values()) == {1}
        for a in load.attempts:
            if a.key is not None and a.outcome != "refused":
                assert keyed[(a.user_id, idempotency_digest(a.key))] == 1, a

        # the survivor's counts are the log's, and so are the audit's
        marathon = sum(1 for v in votes.values() if v.poll_id == "marathon")
        shown = json.loads(http("GET", f"{survivor.url}/api/v1/polls/marathon/results")[2])
        assert shown["totalVotes"] == marathon
        audited = _audit(setup.db)
        assert next(p for p in audited["polls"] if p["id"] == "marathon")["totalVotes"] == marathon
        assert audited["headSeq"] == shown["asOf"]
        _no_traceback(survivor)
        outcomes = Counter(a.outcome for a in load.attempts)
        with capsys.disabled():
            print(f"\nkill -9 of one node of two: {outcomes['ack']} acknowledged ({load.victim_acks} by the "
                  f"victim), {outcomes['refused']} refused, {outcomes['unanswered']} unanswered "
                  f"(retried on the survivor: {retried}); acknowledged votes lost: {len(lost)}")


async def _retry_on(node: Node, attempts: list[Attempt]) -> int:
    """Send unanswered votes again (keyed ones with their key): a 2xx, or 409 for a leader vote
    that had landed. Returns how many were sent."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for a in attempts:
            status, body = await _send(session, node, a)
            if a.key is None:
                assert status == 200 or (status == 409 and b"already_voted" in body), (status, body)
            else:
                assert status == 201, (status, body)
    return len(attempts)


# --- missed notifications ---------------------------------------------------------------------

_LISTENERS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'vote-ledger' AND query ILIKE 'LISTEN%'
"""


async def _listeners(db: str) -> list[int]:
    conn = await asyncpg.connect(db, timeout=10)
    try:
        return [row[0] for row in await conn.fetch(_LISTENERS)]
    finally:
        await conn.close()


async def _terminate_listeners(db: str) -> int:
    conn = await asyncpg.connect(db, timeout=10)
    try:
        pids = [row[0] for row in await conn.fetch(_LISTENERS)]
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        return len(pids)
    finally:
        await conn.close()


@pytest.mark.slow
def test_a_node_whose_listener_was_terminated_still_sees_every_vote_within_a_second(
    ledger_with_users: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = ledger_with_users
    with nodes(setup.db, setup.logs, 2, config=setup.config) as (a, b):
        assert len(asyncio.run(_listeners(setup.db))) == 2, "each node listens on a session of its own"
        assert asyncio.run(_terminate_listeners(setup.db)) == 2
        # with nobody listening, each vote still shows on the other node, later at worst
        delays = asyncio.run(_visibility(a, b, *setup.users[1], votes=20))
        assert max(delays) < 1.0, _figures(delays)
        # the nodes listen again by themselves, and keep doing so after further losses
        deadline = time.monotonic() + 10
        while len(asyncio.run(_listeners(setup.db))) < 2:
            assert time.monotonic() < deadline, "the nodes did not listen again within 10 s"
            http("GET", f"{a.url}/candidates")
            http("GET", f"{b.url}/candidates")
            time.sleep(0.1)
        again = asyncio.run(_visibility(a, b, *setup.users[1], votes=100))
        assert _p99(again) <= VISIBLE_WITHIN, _figures(again)
        assert a.alive() and b.alive()
        _audit(setup.db)
        with capsys.disabled():
            print(f"\nlisteners terminated: {_figures(delays)}; listening again: {_figures(again)}")
