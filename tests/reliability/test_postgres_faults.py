"""PostgreSQL going away under real ``vote-ledger serve`` nodes, on a throw-away cluster of the
test's own (the machine's shared server is never stopped).

While the server is stopped (``fast``: clients disconnected, a clean shutdown; ``immediate``: every
server process quits at once, and the next start recovers from the WAL): every write answers 503
with the JSON error shape and ``Retry-After``; reads answer 200 from the projections in memory;
``/healthz`` answers 503; no traceback reaches a client. Once it is back, each node takes writes
again by itself and catches up with what the other node appended meanwhile. A node started while
the server is down exits with one clear line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger.events import VoteCast
from projections.commands import idempotency_digest
from tests.reliability.helpers import (
    assert_error_shape,
    http,
    login,
    read_log,
    run_cli,
    wait_ready,
    write_polls,
    write_users,
)
from tests.reliability.pgcluster import (
    Cluster,
    Node,
    nodes,
    proxy_to,
    spawn_node,
    throwaway_cluster,
)

ENV = {"VOTE_LEDGER_BUSY_TIMEOUT": "1000"}  # ms: how long a node waits for a connection
UNAVAILABLE = ("store_unavailable",)
ANSWER_WITHIN = 5.0  # seconds: the longest any request may take while the server is down
RECOVER_WITHIN = 15.0  # seconds: from the server answering again to a node taking writes


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        yield made


@dataclass
class Site:
    db: str
    config: Path
    logs: Path
    users: list[tuple[str, str]]


def _site(cluster: Cluster, tmp_path: Path) -> Site:
    """A ledger with a few users on the cluster, and the polls file the nodes load."""
    logs = tmp_path / "logs"
    logs.mkdir()
    users = write_users(logs / "users.jsonl", 8)
    db = cluster.create_database("vote_ledger")
    imported = run_cli("users", "import", str(logs / "users.jsonl"), "--db", db)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    return Site(db, write_polls(logs / "polls.toml"), logs, users)


def _request(
    node: Node, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, answered within ``ANSWER_WITHIN`` and with no traceback in it."""
    started = time.monotonic()
    status, answer_headers, answer = http(method, node.url + path, body, headers, timeout=ANSWER_WITHIN + 5)
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN, f"{method} {path} took {took:.1f}s"
    assert b"Traceback" not in answer and b'File "' not in answer, answer[:2000]
    return status, answer_headers, answer


def _refused(answer: tuple[int, dict[str, str], bytes]) -> None:
    """503, the JSON error shape with the unavailable code, and a Retry-After."""
    status, headers, body = answer
    assert status == 503, (status, body)
    assert assert_error_shape(status, body, allow_5xx=True)["code"] in UNAVAILABLE, body
    assert headers.get("Retry-After", "").isdigit(), headers


def _signup(name: str) -> dict[str, str]:
    return {"email": f"{name}@example.org", "name": name, "password": "password-1"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _vote(node: Node, token: str, candidate: int, key: str) -> tuple[int, dict[str, str], bytes]:
    return _request(node, "POST", "/api/v1/polls/marathon/votes", {"candidateId": candidate},
                    {**_bearer(token), "Idempotency-Key": key})


def _reads(node: Node, token: str) -> dict[str, Any]:
    """What the node shows: the legacy candidates, the marathon results, the caller's ballots."""
    shown: dict[str, Any] = {}
    for name, path in (("candidates", "/candidates"), ("results", "/api/v1/polls/marathon/results"),
                       ("me", "/api/v1/me"), ("polls", "/api/v1/polls")):
        status, _, body = _request(node, "GET", path, headers=_bearer(token))
        assert status == 200, (path, status, body)
        shown[name] = json.loads(body)
    return shown


def _until(what: str, check: Any, within: float = RECOVER_WITHIN) -> Any:
    """Call ``check`` until it returns something true; AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        time.sleep(0.1)


def _no_traceback(*node_list: Node) -> None:
    for node in node_list:
        assert "Traceback" not in node.log_text(), node.log_text()[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_while_postgres_is_stopped_writes_are_refused_reads_answer_and_the_nodes_recover(
    cluster: Cluster, tmp_path: Path, mode: str
) -> None:
    site = _site(cluster, tmp_path)
    with nodes(site.db, site.logs, 2, config=site.config, env=ENV) as (a, b):
        token_a, token_b = login(a.url, *site.users[0]), login(b.url, *site.users[1])
        assert _vote(a, token_a, 4, "before")[0] == 201
        assert _request(b, "GET", "/vote?id=1", headers={"Authorization": token_b})[0] == 200
        before = _reads(a, token_a)
        assert before["results"]["totalVotes"] == 1

        cluster.stop(mode)
        for node, token in ((a, token_a), (b, token_b)):
            _refused(_vote(node, token, 5, f"down-{node.port}"))
            _refused(_request(node, "GET", "/vote?id=2", headers={"Authorization": token_a}))
            _refused(_request(node, "POST", "/api/v1/users", _signup(f"new-{node.port}")))
            _refused(_request(node, "POST", "/auth/signup", _signup(f"old-{node.port}")))
            _refused(_request(node, "GET", "/healthz"))
        for _ in range(3):  # again and again: still from memory, and still as they were
            assert _reads(a, token_a) == before
            time.sleep(0.2)
        shown_by_b = _reads(b, token_b)
        assert shown_by_b["candidates"] == before["candidates"]
        assert shown_by_b["results"] == before["results"]
        status, _, body = _request(b, "GET", "/api/v1/me", headers={"Authorization": token_a})
        assert status == 200 and json.loads(body) == before["me"], body
        assert a.alive() and b.alive()

        cluster.start()
        # the first write b is sent once the server is back is taken: b reconnects by itself
        status, _, body = _vote(b, token_b, 5, "after-0")
        assert status == 201, body
        appended = [json.loads(_vote(b, token_b, 4, f"after-{n}")[2])["seq"] for n in range(1, 6)]
        # a has not looked at the log since the server came back, and missed the notifications:
        # its first answer shows b's votes, and it takes its first write
        shown = _reads(a, token_a)["results"]
        assert shown["asOf"] >= appended[-1], shown
        assert shown["totalVotes"] == before["results"]["totalVotes"] + 6, shown
        status, _, body = _vote(a, token_a, 5, f"down-{a.port}")
        assert status == 201, body
        for node in (a, b):
            assert _request(node, "GET", "/healthz")[0] == 200
        # the refused writes, sent again, land once each
        assert _vote(b, token_b, 5, f"down-{b.port}")[0] == 201
        assert _request(a, "GET", "/vote?id=2", headers={"Authorization": token_a})[0] == 200
        for node in (a, b):
            assert _request(node, "POST", "/api/v1/users", _signup(f"new-{node.port}"))[0] == 201
            assert _request(node, "POST", "/auth/signup", _signup(f"old-{node.port}"))[0] == 201

        log = [env.event for _, env in asyncio.run(read_log(site.db))]
        votes = [e for e in log if isinstance(e, VoteCast)]
        keys = Counter(v.key for v in votes if v.key is not None)
        assert set(keys.values()) == {1}
        for key in (f"down-{a.port}", f"down-{b.port}", "after-0", "after-5"):
            assert keys[idempotency_digest(key)] == 1, key
        marathon = sum(1 for v in votes if v.poll_id == "marathon")
        for node, token in ((a, token_a), (b, token_b)):
            _until(f"{node.url} shows every vote",
                   lambda n=node, t=token: _reads(n, t)["results"]["totalVotes"] == marathon, 5)
        audit = run_cli("audit", "--db", site.db)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        _no_traceback(a, b)


def test_a_node_started_while_postgres_is_down_exits_with_one_clear_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    site = _site(cluster, tmp_path)
    cluster.stop("fast")
    node = spawn_node(site.db, site.logs / "down.log", config=site.config, env=ENV)
    try:
        node.process.wait(timeout=30)
    finally:
        node.kill()
    output = node.log_text().strip()
    assert node.process.returncode not in (0, None), output
    assert "Traceback" not in output, output
    # the last line, and the only error line (start-up notes may come before it)
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert errors == [output.splitlines()[-1]], output
    assert errors[0].startswith("vote-ledger: error:"), output
    assert "127.0.0.1" in errors[0], output  # it names the server it could not reach

    cluster.start()
    again = wait_ready(spawn_node(site.db, site.logs / "up.log", config=site.config, env=ENV))
    try:
        token = login(again.url, *site.users[0])
        assert _vote(again, token, 4, "up")[0] == 201
    finally:
        again.kill()


READ_WITHIN = 1.0  # seconds: the longest a read may take while the node cannot reach the server


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_a_node_cut_off_from_postgres_answers_reads_from_memory_and_catches_up(
    cluster: Cluster, tmp_path: Path, fault: str
) -> None:
    site = _site(cluster, tmp_path)
    with proxy_to(cluster) as relay, nodes(site.db, site.logs, 1, config=site.config, env=ENV) as (b,):
        a = wait_ready(spawn_node(relay.url("vote_ledger"), site.logs / "a.log", config=site.config, env=ENV))
        try:
            token_a, token_b = login(a.url, *site.users[0]), login(b.url, *site.users[1])
            assert _vote(a, token_a, 4, "before")[0] == 201
            before = _reads(a, token_a)

            getattr(relay, fault)()
            started = time.monotonic()
            for n in range(100):  # reads again and again, while b appends what a cannot see
                if time.monotonic() - started > 3:
                    break
                t0 = time.monotonic()
                shown = _reads(a, token_a)
                assert time.monotonic() - t0 < 4 * READ_WITHIN  # four reads
                assert shown["results"] == before["results"] and shown["me"] == before["me"]
                assert _vote(b, token_b, 5, f"meanwhile-{n}")[0] == 201
                time.sleep(0.05)
            _refused(_vote(a, token_a, 5, "during"))
            _refused(_request(a, "GET", "/healthz"))

            relay.restore()
            _until("a takes a vote again", lambda: _vote(a, token_a, 5, "during")[0] == 201)
            total = _reads(b, token_b)["results"]["totalVotes"]
            _until("a shows b's votes", lambda: _reads(a, token_a)["results"]["totalVotes"] == total, 5)
            _no_traceback(a, b)
        finally:
            a.kill()


@dataclass
class Voter:
    token: str
    user_id: str
    leader: int  # the candidate of its leader vote
    acked: dict[str, int] = field(default_factory=dict)  # key -> the seq it was acknowledged at
    leader_seq: int | None = None
    refused: int = 0


async def _vote_until(stop: asyncio.Event, session: aiohttp.ClientSession, node: Node, voter: Voter,
                      tally: Counter[str]) -> None:
    """Vote again and again: the leader vote first, then keyed marathon votes; a refused vote is
    sent again with the same key (as a client should) until it is taken, even after ``stop``."""
    key, n, owed = "k0", 0, False
    while owed or not stop.is_set():
        if voter.leader_seq is None:
            request = session.get(f"{node.url}/vote", params={"id": str(voter.leader)},
                                  headers={"Authorization": voter.token})
        else:
            request = session.post(f"{node.url}/api/v1/polls/marathon/votes", json={"candidateId": 4},
                                   headers={**_bearer(voter.token), "Idempotency-Key": key})
        async with request as response:
            status, body = response.status, await response.read()
            retry_after = response.headers.get("Retry-After")
        assert b"Traceback" not in body, body
        if status == 503:
            assert retry_after and assert_error_shape(status, body, allow_5xx=True)["code"] in UNAVAILABLE
            voter.refused += 1
            tally["refused"] += 1
            owed = True
            await asyncio.sleep(0.05)
            continue
        owed = False
        if voter.leader_seq is None:
            if status == 409:  # refused earlier, yet it had landed: the ledger holds it
                assert json.loads(body)["error"]["code"] == "already_voted", body
                voter.leader_seq = -1
            else:
                assert status == 200, body
                voter.leader_seq = json.loads(body)["seq"]
        else:
            assert status == 201, body
            voter.acked[key] = json.loads(body)["seq"]
            n += 1
            key = f"k{n}"
        tally["acked"] += 1


async def _load_across_a_restart(
    cluster: Cluster, pair: tuple[Node, Node], voters: list[Voter]
) -> Counter[str]:
    tally: Counter[str] = Counter()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        load = asyncio.gather(*(
            _vote_until(stop, session, pair[n % 2], voter, tally) for n, voter in enumerate(voters)
        ))
        try:
            for _ in range(200):  # 10 s at most
                if tally["acked"] >= 200 or load.done():
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.stop, "immediate")  # votes in flight, some mid-commit
            await asyncio.sleep(1)
            await asyncio.to_thread(cluster.start)
            acked = tally["acked"]
            for _ in range(200):
                if tally["acked"] >= acked + 200 or load.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(load, 60)
    return tally


@pytest.mark.slow
def test_postgres_crashing_under_load_loses_no_acknowledged_vote_and_counts_none_twice(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(cluster, tmp_path)
    with nodes(site.db, site.logs, 2, config=site.config, env=ENV) as (a, b):
        voters = []
        for n, user in enumerate(site.users):
            token = login((a, b)[n % 2].url, *user)
            me = json.loads(_request(a, "GET", "/api/v1/me", headers=_bearer(token))[2])
            voters.append(Voter(token, me["user"]["id"], 1 + n % 3))
        tally = asyncio.run(_load_across_a_restart(cluster, (a, b), voters))
        assert tally["refused"] > 0, "the crash refused nothing"

        log = asyncio.run(read_log(site.db))
        votes = {seq: env.event for seq, env in log if isinstance(env.event, VoteCast)}
        keyed = Counter((v.user_id, v.key) for v in votes.values() if v.key is not None)
        assert set(keyed.values()) == {1}, "a key landed twice"
        for voter in voters:
            assert voter.leader_seq is not None
            leader = [seq for seq, v in votes.items() if v.poll_id == "leader" and v.user_id == voter.user_id]
            assert len(leader) == 1 and voter.leader_seq in (-1, leader[0]), (voter, leader)
            for key, seq in voter.acked.items():
                vote = votes.get(seq)
                assert vote is not None, (voter, key, seq)
                assert (vote.user_id, vote.key) == (voter.user_id, idempotency_digest(key))
            # nothing landed that was not acknowledged at last (a refused key was sent until taken)
            mine = {v.key for v in votes.values() if v.user_id == voter.user_id and v.key is not None}
            assert mine == {idempotency_digest(key) for key in voter.acked}, voter
        marathon = sum(1 for v in votes.values() if v.poll_id == "marathon")
        for node, voter in ((a, voters[0]), (b, voters[1])):
            _until(f"{node.url} counts every vote",
                   lambda n=node, t=voter.token: _reads(n, t)["results"]["totalVotes"] == marathon, 5)
        audit = run_cli("audit", "--db", site.db)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        _no_traceback(a, b)
        with capsys.disabled():
            print(f"\nPostgreSQL stopped (immediate) under load and started again: {tally['acked']} votes "
                  f"acknowledged, {tally['refused']} refused with 503 and sent again; none lost, none twice")
