"""``--db`` and ``VOTE_LEDGER_DB`` choose the backend by URL; an unknown scheme is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import load_or_create_secret
from api.settings import Settings, SettingsError
from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import run_cli


@pytest.mark.parametrize("url", ["ftp://host/ledger", "postgresx:ledger", "mysql://root@localhost/test"])
def test_every_command_refuses_an_unknown_scheme_in_one_line_and_creates_no_file(
    tmp_path: Path, url: str
) -> None:
    for command in (["audit"], ["rebuild"], ["candidates", "list"], ["polls", "load"]):
        done = run_cli(*command, "--db", url, env={"HOME": str(tmp_path)})

        assert done.returncode != 0, command
        assert "unknown database scheme" in done.stderr and url.split(":")[0] in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_environment_variable_takes_the_same_urls() -> None:
    assert Settings.load(environ={"VOTE_LEDGER_DB": "memory:"}).db == "memory:"
    assert Settings.load(environ={"VOTE_LEDGER_DB": "sqlite:///data/x.db"}).secret_file == Path(
        "data/x.db.jwt-secret"
    )
    with pytest.raises(SettingsError, match="unknown database scheme 'gopher'"):
        Settings.load(environ={"VOTE_LEDGER_DB": "gopher://x"})


async def test_a_sqlite_url_serves_the_same_file_as_its_path(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(db=f"sqlite:///{tmp_path}/by-url.db")
    token = await signup_and_login(client, "ada@example.com")
    response = await client.post(
        "/api/v1/polls/frontend-leader/votes", json={"candidateId": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201
    await client.close()

    done = run_cli("audit", "--db", str(tmp_path / "by-url.db"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VoteCast" in done.stdout


async def test_a_memory_ledger_serves_everything_and_leaves_no_file(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(db="memory:")
    token = await signup_and_login(client, "bo@example.com")
    headers = {"Authorization": f"Bearer {token}"}

    vote = await client.post("/api/v1/polls/frontend-leader/votes", json={"candidateId": 2}, headers=headers)
    results = await (await client.get("/api/v1/polls/frontend-leader/results")).json()
    legacy = await (await client.get("/candidates")).json()

    assert vote.status == 201
    assert results["totalVotes"] == 1 and results["asOf"] == (await vote.json())["seq"]
    assert [c["voteCount"] for c in legacy if c["id"] == 2] == [1]
    assert (await client.get("/healthz")).status == 200
    assert list(tmp_path.iterdir()) == []


def test_a_memory_ledger_gets_a_secret_of_its_own_and_no_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load({"db": "memory:"}, environ={})

    first, second = load_or_create_secret(settings), load_or_create_secret(settings)

    assert settings.secret_file is None
    assert len(first) >= 32 and first != second
    assert list(tmp_path.iterdir()) == []
