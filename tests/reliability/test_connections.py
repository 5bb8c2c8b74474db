"""Connections: a real ``vote-ledger serve`` under a low open-file limit, with far more idle
connections held open against it than it has descriptors, still accepts and answers a new client,
sheds the idle connections oldest first, and says so in one log line. Behind a trusted reverse
proxy, the limits kept per client key on the address the proxy forwards."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import aiohttp

from tests.conftest import MakeClient
from tests.reliability.helpers import http, import_users, start_server, write_polls, write_users

FILES = 320  # the child's open-file limit, soft and hard alike (as `ulimit -n 320` sets it)
IDLE = 600  # idle connections held open against it: more than it has descriptors


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte (as a client that opens and waits would)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_new_client_is_answered_while_more_idle_connections_are_held_than_it_has_files(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ledger.db"
    users = write_users(tmp_path / "users.jsonl", 1)
    import_users(db, tmp_path / "users.jsonl")
    server = start_server(db, config=write_polls(tmp_path / "polls.toml"), preexec_fn=_low_file_limit)
    held: list[socket.socket] = []
    try:
        held = _open_idle(server.port, IDLE)
        time.sleep(0.5)
        for _ in range(3):  # a new client, again and again: a read, and a login that hashes
            status, _, body = http("GET", f"{server.url}/candidates", timeout=5)
            assert status == 200, body
            status, _, body = http("POST", f"{server.url}/api/v1/auth/login",
                                   {"email": users[0][0], "password": users[0][1]}, timeout=5)
            assert status == 200, body
        closed = [_closed_by_server(sock) for sock in held]
        # the oldest idle connections went first; the ones opened last are still there
        assert sum(closed) >= IDLE - FILES, sum(closed)
        assert closed[0] and not closed[-1]
        assert server.alive()
    finally:
        for sock in held:
            sock.close()
        server.kill()
    log = server.log_text()
    assert log.count("over the limit of") == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# Behind a reverse proxy every connection comes from the proxy: the client is the last hop of
# X-Forwarded-For, believed from a configured proxy only.

PROXY = "127.0.0.2"


async def _login_from(local: str, email: str, forwarded: str | None, url: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
        f"{url}/api/v1/auth/login", json={"email": email, "password": "wrong-password"}, headers=headers
    ) as response:
        return response.status


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    make_client: MakeClient,
) -> None:
    client = await make_client(login_failures_per_client=3, trusted_proxies=(PROXY,))
    url = str(client.make_url("")).rstrip("/")
    # a client behind the proxy, guessing at three accounts (the proxy appends the address it saw)
    for n in range(3):
        assert await _login_from(PROXY, f"guess{n}@example.org", "10.9.9.9, 203.0.113.9", url) == 401
    assert await _login_from(PROXY, "guess9@example.org", "203.0.113.9", url) == 429
    # another client behind the same proxy is not held back by it, nor is the proxy itself
    assert await _login_from(PROXY, "someone@example.org", "198.51.100.7", url) == 401
    assert await _login_from(PROXY, "someone@example.org", None, url) == 401


async def test_x_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(
    make_client: MakeClient,
) -> None:
    client = await make_client(login_failures_per_client=3, trusted_proxies=(PROXY,))
    url = str(client.make_url("")).rstrip("/")
    for n in range(3):  # a new forwarded address each time: it gains nothing from 127.0.0.1
        assert await _login_from("127.0.0.1", f"guess{n}@example.org", f"203.0.113.{n}", url) == 401
    assert await _login_from("127.0.0.1", "guess9@example.org", "198.51.100.7", url) == 429
