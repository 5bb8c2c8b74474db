"""Erasing a person: through ``DELETE /api/v1/me`` and ``vote-ledger users erase``, while serving
and while stopped. Their votes and every tally stay, the audit passes, and their email, name and
password hash are in no byte of the ledger's files."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from api.keys import LEDGER
from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import run_cli, serving

POLL = "/api/v1/polls/frontend-leader"
EMAIL, NAME, PASSWORD = "grace.erasable@example.org", "Grace Quxley-Zed", "grace-secret-pw"


def ledger_bytes(db: Path) -> bytes:
    """Every byte of the ledger's files: the database, its WAL and its shared-memory index."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if not p.name.endswith(".log"))


def assert_gone(db: Path, *secrets: str) -> None:
    raw = ledger_bytes(db)
    for secret in secrets:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in raw, f"{secret!r} ({encoding}) is still on disk"


def audit(db: Path | str) -> str:
    done = run_cli("audit", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def grace_votes(client: TestClient[Any, Any], others: int = 0) -> tuple[str, str]:
    """Grace signs up (with ``others`` at the same moment: batches that write many pages), votes
    for candidate 2; her token and her password hash as kept."""
    signups = [signup_and_login(client, f"other{i}@example.org") for i in range(others)]
    token, *_ = await asyncio.gather(signup_and_login(client, EMAIL, PASSWORD, name=NAME), *signups)
    assert (await client.post(f"{POLL}/votes", json={"candidateId": 2}, headers=bearer(token))).status == 201
    ledger = client.app[LEDGER]
    user = ledger.state.user_by_email(EMAIL)
    assert user is not None
    password_hash = await ledger.password_hash(user)
    assert password_hash is not None
    return token, password_hash


async def test_erasing_oneself_over_http_forgets_the_person_and_keeps_the_vote(
    make_client: MakeClient, tmp_path: Path
) -> None:
    db = tmp_path / "ledger.db"
    client = await make_client(db=db, signups_per_client=200)  # 121 signups from this one client
    token, password_hash = await grace_votes(client, others=120)
    before = await (await client.get(f"{POLL}/results")).json()
    assert password_hash.encode() in ledger_bytes(db) and EMAIL.encode() in ledger_bytes(db)

    wrong = await client.delete("/api/v1/me", json={"password": "not-her-password"}, headers=bearer(token))
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "invalid_credentials"
    assert (await client.get("/api/v1/me", headers=bearer(token))).status == 200  # nothing changed

    erased = await client.delete("/api/v1/me", json={"password": PASSWORD}, headers=bearer(token))

    assert erased.status == 204
    assert_gone(db, EMAIL, NAME, password_hash)  # as soon as it is answered, the service still running
    after = await (await client.get(f"{POLL}/results")).json()
    assert after["candidates"] == before["candidates"] and after["totalVotes"] == before["totalVotes"]
    me = await client.get("/api/v1/me", headers=bearer(token))
    assert me.status == 401 and (await me.json())["error"]["code"] == "invalid_token"
    again = await client.delete("/api/v1/me", json={"password": PASSWORD}, headers=bearer(token))
    assert again.status == 401
    login = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert login.status == 401 and (await login.json())["error"]["code"] == "invalid_credentials"
    vote = await client.get("/vote?id=3", headers={"Authorization": token})
    assert vote.status == 401
    ledger = client.app[LEDGER]
    assert all(u.email != EMAIL and u.name != NAME for u in ledger.state.users.values())
    # the email is free again: a new, unrelated user
    new_token = await signup_and_login(client, EMAIL, "a-new-password", name="Someone Else")
    new_me = await (await client.get("/api/v1/me", headers=bearer(new_token))).json()
    assert new_me["user"]["name"] == "Someone Else"
    assert not any(ballot["voted"] for ballot in new_me["polls"])  # not the erased user's votes
    await client.close()

    assert_gone(db, NAME, password_hash)
    assert EMAIL.encode() in ledger_bytes(db)  # the new user's: the scan does see what is there
    assert "UserErased" in audit(db)


async def test_a_wrong_password_or_no_body_erases_nothing(make_client: MakeClient) -> None:
    client = await make_client()
    token, _ = await grace_votes(client)

    for body in ({}, {"password": ""}, {"password": PASSWORD, "extra": 1}):
        response = await client.delete("/api/v1/me", json=body, headers=bearer(token))
        assert response.status == 400, body
        assert set((await response.json())["error"]) == {"code", "message", "fields"}
    assert (await client.delete("/api/v1/me", json={"password": PASSWORD})).status == 401  # no token

    assert (await client.get("/api/v1/me", headers=bearer(token))).status == 200


async def test_an_operator_erases_a_user_while_the_service_runs(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with serving(db) as server:
        async with aiohttp.ClientSession(server.url) as http:
            signup = {"email": EMAIL, "name": NAME, "password": PASSWORD}
            assert (await http.post("/api/v1/users", json=signup)).status == 201
            login = await http.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
            token = (await login.json())["accessToken"]
            voted = await http.post(f"{POLL}/votes", json={"candidateId": 4}, headers=bearer(token))
            assert voted.status == 201

            done = run_cli("users", "erase", EMAIL.upper(), "--db", str(db))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "erased" in done.stdout

            # the running service sees it before its next answer
            assert (await http.get("/api/v1/me", headers=bearer(token))).status == 401
            results = await (await http.get(f"{POLL}/results")).json()
            assert results["totalVotes"] == 1
            again = run_cli("users", "erase", EMAIL, "--db", str(db))
            assert again.returncode != 0 and "no user" in again.stderr
            assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
            assert_gone(db, EMAIL, NAME)  # the WAL the service writes to included
        # a clean stop waits for the batch writer: once it has closed its connection, no process
        # is left to fold the WAL into the database (and delete it) while the files are read
        assert server.stop() == 0, server.log_text()[-2000:]
    assert_gone(db, EMAIL, NAME)
    audit(db)


def test_an_operator_erases_a_user_of_a_stopped_ledger(tmp_path: Path) -> None:
    db, users = tmp_path / "ledger.db", tmp_path / "users.jsonl"
    users.write_text(f'{{"email": "{EMAIL}", "name": "{NAME}", "password": "{PASSWORD}"}}\n'
                     '{"email": "stays@example.org", "name": "Stays Here", "password": "stays-password"}\n')
    assert run_cli("users", "import", str(users), "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn:
        (password_hash,) = [
            row[0].decode() for row in conn.execute("SELECT body FROM private_data")
            if EMAIL.encode() in row[0]
        ]
    assert b"$argon2id$" in password_hash.encode()

    unknown = run_cli("users", "erase", "nobody@example.org", "--db", str(db))
    done = run_cli("users", "erase", EMAIL, "--db", str(db))

    assert unknown.returncode != 0 and len(unknown.stderr.strip().splitlines()) == 1
    assert done.returncode == 0, done.stdout + done.stderr
    assert_gone(db, EMAIL, NAME, password_hash.split('"password_hash":"')[-1].rstrip('"}'))
    assert b"stays@example.org" in ledger_bytes(db)
    audit(db)


def test_the_audit_fails_on_private_data_deleted_without_an_erasure(tmp_path: Path) -> None:
    db, users = tmp_path / "ledger.db", tmp_path / "users.jsonl"
    users.write_text(f'{{"email": "{EMAIL}", "name": "{NAME}", "password": "{PASSWORD}"}}\n')
    assert run_cli("users", "import", str(users), "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn:
        (seq,) = conn.execute("SELECT seq FROM events WHERE type = 'UserRegistered'").fetchone()
        conn.execute("DELETE FROM private_data")
        conn.commit()

    done = run_cli("audit", "--db", str(db))

    assert done.returncode == 1
    assert f"AUDIT FAILED at seq {seq} (commitment)" in done.stderr
    assert "no UserErased" in done.stderr


def test_the_audit_fails_on_private_data_kept_after_an_erasure(tmp_path: Path) -> None:
    db, users = tmp_path / "ledger.db", tmp_path / "users.jsonl"
    users.write_text(f'{{"email": "{EMAIL}", "name": "{NAME}", "password": "{PASSWORD}"}}\n')
    assert run_cli("users", "import", str(users), "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn:
        kept = conn.execute("SELECT event_id, salt, body FROM private_data").fetchall()
    assert run_cli("users", "erase", EMAIL, "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn:  # put the erased row back, as a careless backup would
        conn.executemany("INSERT INTO private_data VALUES (?, ?, ?)", kept)
        conn.commit()
        (seq,) = conn.execute("SELECT seq FROM events WHERE type = 'UserErased'").fetchone()

    done = run_cli("audit", "--db", str(db))

    assert done.returncode == 1
    assert f"AUDIT FAILED at seq {seq} (commitment)" in done.stderr
