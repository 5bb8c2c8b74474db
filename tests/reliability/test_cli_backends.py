"""Every operator command, through the real CLI, on each backend that keeps a ledger beyond one
process: a SQLite file and a PostgreSQL database. The same commands, the same answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from api.cli import IMPORT_CHUNK
from projections.commands import CastVote
from projections.state import VoteRecord
from tests.conftest import open_vote_ledger
from tests.postgres import FILE_OR_SERVER, new_ledger
from tests.reliability.helpers import run_cli, write_polls, write_users


@pytest.fixture(params=FILE_OR_SERVER)
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with new_ledger(request.param, tmp_path) as url:
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


async def test_an_export_holds_no_personal_data_and_verifies_offline(ledger_url: str, tmp_path: Path) -> None:
    db = ["--db", ledger_url]
    ok("polls", "load", "--config", str(write_polls(tmp_path / "polls.toml")), *db)
    users = write_users(tmp_path / "users.jsonl", 4)
    ok("users", "import", str(tmp_path / "users.jsonl"), *db)
    ledger = await open_vote_ledger(ledger_url)
    try:
        leader = ledger.state.polls["leader"]
        voters = [u.user_id for u in ledger.state.users.values()]
        votes = [
            await ledger.execute(CastVote(user, "leader", sorted(leader.candidates)[n % 2], None))
            for n, user in enumerate(voters)
        ]
        cast = votes[0]
        assert isinstance(cast, VoteRecord) and all(isinstance(v, VoteRecord) for v in votes)
        receipt = (await ledger.receipt(cast.seq)).as_json()
        key = ledger.tree.signer.verifier_key
    finally:
        await ledger.close()
    ok("users", "erase", users[1][0], *db)
    (tmp_path / "receipt.json").write_text(json.dumps(receipt), encoding="utf-8")

    export = tmp_path / "export"
    said = ok("export", str(export), *db)

    assert f"--key '{key}'" in said
    files = [p for p in export.rglob("*") if p.is_file()]
    everything = b"".join(p.read_bytes() for p in files)
    assert not any(email.encode() in everything for email, _ in users)
    assert "verified" in ok("verify", "export", str(export), "--key", key)
    first = sorted(export.glob("checkpoints/*.txt"), key=lambda p: int(p.stem))[0]
    assert "verified" in ok("verify", "export", str(export), "--key", key, "--checkpoint", str(first))
    assert "verified" in ok("verify", "receipt", str(tmp_path / "receipt.json"), "--key", key)

    refused("export", str(export), *db)  # never into a directory that holds anything
    summary = json.loads((export / "log.json").read_text(encoding="utf-8"))
    summary["tallies"]["leader"] = {c: n + 1 for c, n in summary["tallies"]["leader"].items()}
    (export / "log.json").write_text(json.dumps(summary), encoding="utf-8")
    assert "tall" in refused("verify", "export", str(export), "--key", key)


async def test_an_import_of_several_chunks_gives_each_user_their_own_password(tmp_path: Path) -> None:
    """The import hashes a chunk of users' passwords at once, on every core, then registers them:
    every user gets the hash of their own password, across chunk boundaries, and a repeated email
    keeps the first registration's."""
    count = 2 * IMPORT_CHUNK + 345
    users = write_users(tmp_path / "users.jsonl", count)
    repeated = (users[10][0], "another password")  # in the last chunk, an email of the first
    with (tmp_path / "users.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"email": repeated[0], "name": "again", "password": repeated[1]}) + "\n")
    db = str(tmp_path / "ledger.db")
    assert f"{count:,} added, 1 skipped" in ok("users", "import", str(tmp_path / "users.jsonl"), "--db", db)
    ledger = await open_vote_ledger(db)
    try:
        hasher = PasswordHasher()
        for n in (0, 10, IMPORT_CHUNK - 1, IMPORT_CHUNK, 2 * IMPORT_CHUNK - 1, 2 * IMPORT_CHUNK, count - 1):
            email, password = users[n]
            user = ledger.state.user_by_email(email)
            assert user is not None
            stored = await ledger.password_hash(user)
            assert stored is not None and hasher.verify(stored, password), email
        first = ledger.state.user_by_email(repeated[0])
        assert first is not None
        with pytest.raises(VerificationError):
            hasher.verify(await ledger.password_hash(first) or "", repeated[1])
    finally:
        await ledger.close()
