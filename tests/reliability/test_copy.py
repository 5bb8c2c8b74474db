"""``vote-ledger copy`` end to end: a ledger goes from SQLite to PostgreSQL and back, row for row,
its private data with it; a broken chain or a full destination is refused in one line."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ledger.copy import copy_log
from ledger.open import open_store
from ledger.store import Head, StoredEvent
from tests.postgres import FILE_OR_SERVER, fresh_database, new_ledger, require_postgres
from tests.projections.helpers import body_of, tamper
from tests.reliability.helpers import (
    LEADER_CANDIDATES,
    MARATHON_CANDIDATES,
    audit_ok,
    http,
    import_users,
    login,
    run_cli,
    serving,
    write_polls,
    write_users,
)

VOTERS = 12


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ledger built by the real service: polls loaded, users imported, votes cast over HTTP."""
    work = tmp_path_factory.mktemp("copy")
    db, polls = work / "source.db", write_polls(work / "polls.toml")
    done = run_cli("polls", "load", "--config", str(polls), "--db", str(db))
    assert done.returncode == 0, done.stderr
    users = write_users(work / "users.jsonl", VOTERS)
    import_users(db, work / "users.jsonl")
    with serving(db, config=polls) as server:
        for n, (email, password) in enumerate(users):
            auth = {"Authorization": f"Bearer {login(server.url, email, password)}"}
            leader = LEADER_CANDIDATES[n % len(LEADER_CANDIDATES)]
            status, _, body = http("GET", f"{server.url}/vote?id={leader}", headers=auth)
            assert status == 200, body
            for _ in range(n % 3):
                marathon = MARATHON_CANDIDATES[n % len(MARATHON_CANDIDATES)]
                status, _, body = http("POST", f"{server.url}/api/v1/polls/marathon/votes",
                                       {"candidateId": marathon}, auth)
                assert status == 201, body
    yield db


@pytest.fixture
def source(built: Path, tmp_path: Path) -> Path:
    """A copy of the built ledger's file for one test (the service closed it cleanly)."""
    db = tmp_path / "source.db"
    shutil.copyfile(built, db)
    return db


@pytest.fixture
async def postgres() -> AsyncIterator[str]:
    require_postgres()
    async with fresh_database() as url:
        yield url


@pytest.fixture(params=FILE_OR_SERVER)
async def nowhere(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where no ledger is yet: a new file, or an empty PostgreSQL schema."""
    async with new_ledger(request.param, tmp_path, "destination.db") as url:
        yield url


async def _events(db: str | Path) -> list[StoredEvent]:
    """Every row of the log, private data included."""
    store = await open_store(db, readonly=True)
    try:
        return [event async for chunk in store.read() for event in chunk]
    finally:
        await store.close()


def last_head(events: list[StoredEvent]) -> Head:
    return Head(events[-1].seq, events[-1].hash)


def _head(output: str) -> tuple[int, str]:
    """The ``head seq N, hash H`` a command printed."""
    found = re.search(r"head seq (\d+), hash ([0-9a-f]{64})", output)
    assert found, output
    return int(found.group(1)), found.group(2)


def _copy(source: str | Path, destination: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli("copy", "--from", str(source), "--to", str(destination))


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert done.stderr.startswith("vote-ledger: error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


async def test_a_ledger_goes_to_postgresql_and_back_row_for_row_and_audits_to_the_same_head(
    source: Path, postgres: str, tmp_path: Path,
) -> None:
    back = tmp_path / "back.db"
    original = await _events(source)
    head = _head(audit_ok(source).stdout)
    assert head[0] == len(original) and any(e.type == "VoteCast" for e in original)

    there = _copy(source, postgres)
    assert there.returncode == 0, there.stderr
    again = _copy(postgres, back)
    assert again.returncode == 0, again.stderr

    assert _head(there.stdout) == _head(again.stdout) == head
    assert f"copied {head[0]:,} events" in there.stdout
    assert _head(audit_ok(postgres).stdout) == _head(audit_ok(back).stdout) == head
    # every column of every row, the private data beside each registration too
    assert await _events(postgres) == await _events(back) == original
    assert sum(e.private_body is not None for e in original) == VOTERS
    listings = [run_cli("candidates", "list", "--db", str(db)) for db in (source, postgres, back)]
    assert all(done.returncode == 0 for done in listings), [done.stderr for done in listings]
    assert listings[0].stdout == listings[1].stdout == listings[2].stdout
    assert "Ada" in listings[0].stdout


async def test_a_copy_into_memory_goes_in_batches_each_appended_at_the_head_before_it(source: Path) -> None:
    original = await _events(source)
    sqlite, memory = await open_store(source, readonly=True), await open_store("memory:", create=True)
    seen: list[tuple[int, int]] = []
    try:
        head = await copy_log(sqlite, memory, lambda done, total: seen.append((done, total)), batch=7)
        copied = [event async for chunk in memory.read() for event in chunk]
    finally:
        await sqlite.close()
        await memory.close()

    assert copied == original and head == last_head(original)
    total = len(original)
    assert seen == [(min(n, total), total) for n in range(7, total + 7, 7)]


@pytest.mark.parametrize("edit", ["a body byte", "a middle row deleted"])
async def test_a_tampered_source_is_refused_naming_the_seq_and_the_destination_stays_empty(
    source: Path, nowhere: str, edit: str,
) -> None:
    seq = len(await _events(source)) // 2
    with tamper(source) as conn:
        if edit == "a body byte":
            body = bytearray(body_of(conn, seq))
            body[-3] ^= 1
            conn.execute("UPDATE events SET body = ? WHERE seq = ?", (bytes(body), seq))
        else:
            conn.execute("DELETE FROM events WHERE seq = ?", (seq,))

    error = _one_line_error(_copy(source, nowhere))

    assert f"the source's hash chain breaks at seq {seq}: " in error
    assert await _events(nowhere) == []


async def test_a_destination_that_holds_events_is_refused_and_left_as_it_was(
    source: Path, nowhere: str,
) -> None:
    destination = nowhere
    done = run_cli("polls", "load", "--db", str(destination))
    assert done.returncode == 0, done.stderr
    before = await _events(destination)
    listed = run_cli("candidates", "list", "--db", str(destination)).stdout

    error = _one_line_error(_copy(source, destination))

    assert "already holds events" in error
    assert await _events(destination) == before
    assert run_cli("candidates", "list", "--db", str(destination)).stdout == listed


@pytest.mark.parametrize(("source_url", "said"), [
    ("ftp://example.org/ledger", "unknown database scheme 'ftp'"),
    ("missing.db", "no ledger at this path"),
    ("postgresql://postgres@127.0.0.1:1/nowhere", "cannot connect"),
])
def test_an_unusable_source_is_one_line_and_no_destination_is_made(
    source_url: str, said: str, tmp_path: Path,
) -> None:
    destination = tmp_path / "copy.db"
    if source_url == "missing.db":
        source_url = str(tmp_path / source_url)

    error = _one_line_error(_copy(source_url, destination))

    assert said in error and "Traceback" not in error
    assert not destination.exists()


def test_an_unreachable_destination_is_one_line(source: Path) -> None:
    error = _one_line_error(_copy(source, "postgresql://postgres@127.0.0.1:1/nowhere"))

    assert "cannot connect" in error
