"""Helpers for the reliability tests: a real ``vote-ledger serve`` subprocess, the CLI, and the log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.events import Envelope, decode
from ledger.open import open_store
from tests.ledger.helpers import TEST_SIGNING_KEY

BIN = Path(sys.executable).parent
VOTE_LEDGER = str(BIN / "vote-ledger")
SECRET = "reliability-tests-secret-" + "s" * 32
FAST_ENV = {
    "VOTE_LEDGER_ARGON2_TIME_COST": "1",
    "VOTE_LEDGER_ARGON2_MEMORY_COST": "64",
    "VOTE_LEDGER_ARGON2_PARALLELISM": "1",
    "VOTE_LEDGER_JWT_SECRET": SECRET,
    "VOTE_LEDGER_SIGNING_KEY": TEST_SIGNING_KEY,  # as the tests' own VoteLedgers sign
}

# Two polls: one vote per user in ``leader`` (the legacy poll), as many as you like in ``marathon``.
POLLS_TOML = """
[[polls]]
id = "leader"
title = "Leader"
policy = "single"
results = "always"
legacy = true

[[polls.candidates]]
name = "Ada"

[[polls.candidates]]
name = "Bo"

[[polls.candidates]]
name = "Cy"

[[polls]]
id = "marathon"
title = "Marathon"
policy = "unlimited"
results = "always"

[[polls.candidates]]
name = "Dee"

[[polls.candidates]]
name = "Eve"
"""
LEADER_CANDIDATES = (1, 2, 3)
MARATHON_CANDIDATES = (4, 5)


def full_width(text: str) -> str:
    """The full-width look-alike of ASCII ``text`` (``alice`` -> U+FF41 U+FF4C ...): NFKC folds it back."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def free_port() -> int:
    """A port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any inherited ``VOTE_LEDGER_*``, plus cheap hashing and a fixed secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOTE_LEDGER_")}
    env.update(FAST_ENV)
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``vote-ledger ARGS`` and return what it did (never raises on a non-zero exit)."""
    return subprocess.run(
        [VOTE_LEDGER, *args],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def write_polls(path: Path) -> Path:
    path.write_text(POLLS_TOML, encoding="utf-8")
    return path


def write_users(path: Path, count: int, prefix: str = "voter") -> list[tuple[str, str]]:
    """A JSON-lines users file for ``vote-ledger users import``; returns (email, password) pairs."""
    users = [(f"{prefix}{n}@example.org", f"pw-{prefix}-{n}") for n in range(count)]
    path.write_text(
        "".join(json.dumps({"email": e, "name": e.split("@")[0], "password": p}) + "\n" for e, p in users),
        encoding="utf-8",
    )
    return users


def import_users(db: str | Path, users_file: Path) -> None:
    result = run_cli("users", "import", str(users_file), "--db", str(db))
    assert result.returncode == 0, result.stdout + result.stderr


def audit_ok(db: str | Path) -> subprocess.CompletedProcess[str]:
    """``vote-ledger audit --db``; asserts it passed."""
    result = run_cli("audit", "--db", str(db))
    assert result.returncode == 0, f"audit failed:\n{result.stdout}\n{result.stderr}"
    return result


def rebuild_changes(db: str | Path) -> int:
    """``vote-ledger rebuild --db``: how many projection rows the rebuild had to change."""
    result = run_cli("rebuild", "--db", str(db))
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"(\d+) row\(s\) changed", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


@dataclass
class Server:
    """A ``vote-ledger serve`` subprocess on 127.0.0.1 and a free port, on a file or a URL."""

    db: Path | str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def alive(self) -> bool:
        return self.process.poll() is None


def spawn_server(
    db: Path | str,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    """Start ``vote-ledger serve --db DB`` (a path or a URL) without waiting for it (``wait_ready``
    does). ``preexec_fn`` runs in the child before it starts (to lower its resource limits, say)."""
    port = free_port()
    args = [VOTE_LEDGER, "serve", "--db", str(db), "--host", "127.0.0.1", "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    if log is None:
        assert isinstance(db, Path), "a server on a URL needs a log path"
        log = db.with_name(f"{db.name}.serve-{port}.log")
    with log.open("ab") as out:
        process = subprocess.Popen(
            args,
            env=cli_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec_fn,
        )
    return Server(db, port, process, log)


def wait_ready(server: Server, timeout: float = 30) -> Server:
    """Wait until the server answers ``/openapi.json`` (reads need no writes); RuntimeError, with
    its log, if it exits or does not answer in time (and it is killed)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not server.alive():
                raise RuntimeError(
                    f"vote-ledger serve exited with {server.process.returncode}:\n{server.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"vote-ledger serve did not answer in {timeout}s:\n{server.log_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/openapi.json", timeout=2) as response:
                    if response.status == 200:
                        return server
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
    except BaseException:
        server.kill()
        raise


def start_server(
    db: Path | str, *, ready_timeout: float = 30, **kwargs: Any
) -> Server:
    """``spawn_server``, then ``wait_ready``."""
    return wait_ready(spawn_server(db, **kwargs), ready_timeout)


@contextlib.contextmanager
def serving(db: Path, **kwargs: Any) -> Iterator[Server]:
    """A server for the length of a ``with`` block; killed on the way out whatever happened."""
    server = start_server(db, **kwargs)
    try:
        yield server
    finally:
        server.kill()


def http(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One blocking request (urllib): status, headers and body, whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def login(url: str, email: str, password: str) -> str:
    status, _, body = http("POST", f"{url}/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    token: str = json.loads(body)["accessToken"]
    return token


async def read_log(db: str | Path) -> list[tuple[int, Envelope]]:
    """Every event of the ledger (a file or a URL), decoded, with its seq (opened read-only)."""
    store = await open_store(db, readonly=True)
    try:
        events: list[tuple[int, Envelope]] = []
        async for chunk in store.read():
            events += [(row.seq, decode(row.body)) for row in chunk]
        return events
    finally:
        await store.close()


def assert_error_shape(status: int, body: bytes, *, allow_5xx: bool = False) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"code": str, "message": str, "fields": {...}}}``."""
    if not allow_5xx:
        assert 400 <= status < 500, (status, body[:500])
    try:
        parsed = json.loads(body)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {status} {body[:500]!r}") from None
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), dict), parsed
    error: dict[str, Any] = parsed["error"]
    assert isinstance(error.get("code"), str) and error["code"], parsed
    assert isinstance(error.get("message"), str), parsed
    assert isinstance(error.get("fields"), dict), parsed
    return error
