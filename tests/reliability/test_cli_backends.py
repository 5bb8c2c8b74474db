"""Every operator command, through the real CLI, on each backend that keeps a ledger beyond one
process: a SQLite file and a PostgreSQL database. The same commands, the same answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.postgres import fresh_schema, require_postgres
from tests.reliability.helpers import run_cli, write_polls, write_users


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    require_postgres()
    async with fresh_schema() as url:
        yield url


def ok(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode != 0, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


async def test_every_command_works_the_same_on_each_backend(ledger_url: str, tmp_path: Path) -> None:
    db = ["--db", ledger_url]
    polls = write_polls(tmp_path / "polls.toml")
    refused("audit", *db)  # nothing there yet: not a ledger, and nothing is created
    assert "appended 9 event(s)" in ok("polls", "load", "--config", str(polls), *db)
    assert "nothing to append" in ok("polls", "load", "--config", str(polls), *db)
    users = write_users(tmp_path / "users.jsonl", 5)
    assert "5 added" in ok("users", "import", str(tmp_path / "users.jsonl"), *db)
    assert "0 added, 5 skipped" in ok("users", "import", str(tmp_path / "users.jsonl"), *db)

    ok("polls", "close", "marathon", *db)
    ok("polls", "open", "marathon", *db)
    refused("polls", "close", "no-such-poll", *db)
    assert "erased" in ok("users", "erase", users[0][0], *db)
    refused("users", "erase", users[0][0], *db)
    listing = ok("candidates", "list", "--poll", "leader", *db)
    assert all(name in listing for name in ("Ada", "Bo", "Cy"))

    report = json.loads(ok("audit", "--json", *db))
    assert report["ok"] and report["users"] == 5
    assert report["eventsByType"]["UserErased"] == 1
    assert report["eventsByType"]["PollClosed"] == 1 and report["eventsByType"]["PollOpened"] == 3
    assert "0 row(s) changed" in ok("rebuild", *db)
    assert json.loads(ok("audit", "--json", *db))["headHash"] == report["headHash"]
