"""The files the service keeps: private to their owner, refused when others can read them, and
never created by a command that only reads."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import http, run_cli, start_server, write_polls

SIDE_FILES = ("-wal", "-shm")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file made without a mode of its own is 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(directory: Path) -> dict[str, int]:
    """The mode of each file in ``directory`` but the test's own logs. A file gone between the
    listing and its ``stat`` is left out: the batch writer, ending after its service was killed,
    removes the ``-wal`` and ``-shm`` it closes last."""
    modes = {}
    for path in directory.iterdir():
        if path.suffix == ".log":
            continue
        try:
            modes[path.name] = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
    return modes


def _sign_up_and_vote(url: str, email: str) -> None:
    status, _, body = http("POST", f"{url}/api/v1/users",
                           {"email": email, "name": "Owner", "password": "password-123"})
    assert status == 201, body
    status, _, body = http("POST", f"{url}/api/v1/auth/login", {"email": email, "password": "password-123"})
    assert status == 200, body


def test_every_file_the_service_creates_is_private_to_its_owner(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "data" / "ledger.db"
    # no configured secret or signing key: the generated key files are among the files it creates
    server = start_server(db, config=write_polls(tmp_path / "polls.toml"),
                          env={"VOTE_LEDGER_JWT_SECRET": "", "VOTE_LEDGER_SIGNING_KEY": ""},
                          log=tmp_path / "serve.log")
    try:
        _sign_up_and_vote(server.url, "owner@example.org")
        modes = _modes(db.parent)
    finally:
        server.kill()  # the -wal and -shm stay behind a SIGKILL: check them too
    expected = {"ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db.jwt-secret"}
    expected.add("ledger.db.signing-key")
    assert expected <= set(modes), modes
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}
    assert {name: oct(mode) for name, mode in _modes(db.parent).items() if mode != 0o600} == {}


def test_a_ledger_others_can_read_is_refused_in_one_line_unless_allowed(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    polls = write_polls(tmp_path / "polls.toml")
    assert run_cli("polls", "load", "--db", str(db), "--config", str(polls)).returncode == 0
    os.chmod(db, 0o644)  # as a copy made with cp under umask 022 would be
    refused = run_cli("serve", "--db", str(db), "--config", str(polls), "--port", "1", timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert str(db) in refused.stderr and "chmod 600" in refused.stderr
    assert "ALLOW_READABLE_LEDGER" in refused.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o644  # left as it was
    # the operator may say so explicitly: by the variable, or by the flag
    server = start_server(db, config=polls, env={"VOTE_LEDGER_ALLOW_READABLE_LEDGER": "1"})
    try:
        _sign_up_and_vote(server.url, "shared@example.org")
    finally:
        assert server.stop() == 0
    os.chmod(db, 0o600)
    server = start_server(db, config=polls)
    try:
        _sign_up_and_vote(server.url, "private@example.org")
    finally:
        assert server.stop() == 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_audit_of_a_stopped_ledger_creates_no_file_beside_it(tmp_path: Path, processes: str) -> None:
    db = tmp_path / "ledger.db"
    server = start_server(db, config=write_polls(tmp_path / "polls.toml"), log=tmp_path / "serve.log")
    try:
        _sign_up_and_vote(server.url, "voter@example.org")
    finally:
        assert server.stop() == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    assert not any(name.endswith(SIDE_FILES) for name in before), before  # a clean stop removes them
    digest = _digest(db)
    for command in (["audit", "--processes", processes], ["audit", "--json", "--processes", processes],
                    ["candidates", "list"]):
        result = run_cli(*command, "--db", str(db))
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, command
    assert _digest(db) == digest
