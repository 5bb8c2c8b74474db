"""Polls from a polls file, over HTTP: vote policies, results visibility, eligibility, closing a poll
from the command line while the service runs, and broken polls files refused at start-up."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import SETTINGS
from projections.errors import PollConfigError
from projections.polls_file import bundled
from tests.api.helpers import (
    Client,
    bearer,
    candidate_ids,
    error_of,
    head_seq,
    legacy_login,
    legacy_signup,
    write_polls,
)
from tests.conftest import MakeClient, make_settings, signup_and_login
from tests.ledger.helpers import TEST_SIGNING_KEY

ROOT = Path(__file__).resolve().parents[2]

POLLS = """\
[[polls]]
id = "pick-one"
title = "Single"
policy = "single"

[[polls.candidates]]
name = "S1"

[[polls.candidates]]
name = "S2"

[[polls]]
id = "change-mind"
title = "Changeable"
policy = "changeable"

[[polls.candidates]]
name = "C1"

[[polls.candidates]]
name = "C2"

[[polls]]
id = "vote-often"
title = "Unlimited"
policy = "unlimited"

[[polls.candidates]]
name = "U1"

[[polls.candidates]]
name = "U2"

[[polls]]
id = "open-book"
title = "Always visible"
results = "always"

[[polls.candidates]]
name = "O1"

[[polls]]
id = "vote-first"
title = "Visible after you vote"
results = "after_vote"

[[polls.candidates]]
name = "V1"

[[polls]]
id = "wait-close"
title = "Visible after the close"
results = "after_close"

[[polls.candidates]]
name = "W1"

[[polls.candidates]]
name = "W2"

[[polls]]
id = "fe-only"
title = "Frontend only"
eligibility = { same_part = "FE" }

[[polls.candidates]]
name = "F1"
part = "FE"

[[polls]]
id = "other-teams"
title = "Not your own team"
policy = "changeable"
eligibility = { not_own_team = true }

[[polls.candidates]]
name = "Red"
team = "red"

[[polls.candidates]]
name = "Blue"
team = "blue"

[[polls]]
id = "long-over"
title = "Closed by the clock"
results = "after_close"
closes_at = 2001-01-01T00:00:00+09:00

[[polls.candidates]]
name = "L1"

[[polls]]
id = "not-yet"
title = "Opens in the future"
opens_at = 2999-01-01T00:00:00+09:00

[[polls.candidates]]
name = "N1"
"""


@pytest.fixture
async def polls(make_client: MakeClient, tmp_path: Path) -> Client:
    """The service on a polls file with one poll per policy, visibility and eligibility rule."""
    return await make_client(config=write_polls(tmp_path / "polls.toml", POLLS))


async def user(client: Client, email: str, **extra: str) -> str:
    return await signup_and_login(client, email, **extra)


async def cast(client: Client, token: str, poll: str, name: str) -> Any:
    ids = await candidate_ids(client, poll)
    return await client.post(
        f"/api/v1/polls/{poll}/votes", json={"candidateId": ids[name]}, headers=bearer(token)
    )


async def tally(client: Client, poll: str, token: str | None = None) -> dict[str, Any]:
    response = await client.get(f"/api/v1/polls/{poll}/results", headers=bearer(token) if token else {})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    body["by_name"] = {c["name"]: c["votes"] for c in body["candidates"]}
    return body


# --- policies ---------------------------------------------------------------------------------------


async def test_single_policy_refuses_a_second_vote(polls: Client) -> None:
    token = await user(polls, "a@example.com")
    assert (await cast(polls, token, "pick-one", "S1")).status == 201
    await error_of(await cast(polls, token, "pick-one", "S2"), 409, "already_voted")
    await error_of(await cast(polls, token, "pick-one", "S1"), 409, "already_voted")
    body = await tally(polls, "pick-one")
    assert (body["totalVotes"], body["by_name"]) == (1, {"S1": 1, "S2": 0})


async def test_changeable_policy_moves_the_vote_and_keeps_one_per_voter(polls: Client) -> None:
    token = await user(polls, "a@example.com")
    assert (await cast(polls, token, "change-mind", "C1")).status == 201
    assert (await cast(polls, token, "change-mind", "C2")).status == 201
    body = await tally(polls, "change-mind")
    assert (body["totalVotes"], body["by_name"]) == (1, {"C1": 0, "C2": 1})
    me = await (await polls.get("/api/v1/me", headers=bearer(token))).json()
    ballot = next(b for b in me["polls"] if b["pollId"] == "change-mind")
    second = (await candidate_ids(polls, "change-mind"))["C2"]
    assert (ballot["voted"], ballot["candidateId"]) == (True, second)


async def test_unlimited_policy_counts_every_vote(polls: Client) -> None:
    token = await user(polls, "a@example.com")
    for name in ("U1", "U1", "U2"):
        assert (await cast(polls, token, "vote-often", name)).status == 201
    body = await tally(polls, "vote-often")
    assert (body["totalVotes"], body["by_name"]) == (3, {"U1": 2, "U2": 1})


async def test_changed_votes_travel_back_in_time(polls: Client) -> None:
    token = await user(polls, "a@example.com")
    first = await (await cast(polls, token, "change-mind", "C1")).json()
    second = await (await cast(polls, token, "change-mind", "C2")).json()
    url = "/api/v1/polls/change-mind/results"
    then = await (await polls.get(f"{url}?at={first['seq']}")).json()
    now = await (await polls.get(f"{url}?at={second['seq']}")).json()
    assert [(c["name"], c["votes"]) for c in then["candidates"]] == [("C1", 1), ("C2", 0)]
    assert [(c["name"], c["votes"]) for c in now["candidates"]] == [("C1", 0), ("C2", 1)]
    assert then["totalVotes"] == now["totalVotes"] == 1


# --- results visibility -----------------------------------------------------------------------------


async def test_results_always_visible_are_shown_to_anyone_at_any_time(polls: Client) -> None:
    assert (await tally(polls, "open-book"))["totalVotes"] == 0
    token = await user(polls, "a@example.com")
    assert (await tally(polls, "open-book", token))["totalVotes"] == 0


async def test_results_after_vote_open_per_caller_once_they_voted(polls: Client) -> None:
    voter = await user(polls, "voter@example.com")
    other = await user(polls, "other@example.com")
    url = "/api/v1/polls/vote-first/results"
    await error_of(await polls.get(url), 403, "results_not_open")
    await error_of(await polls.get(url, headers=bearer(voter)), 403, "results_not_open")
    assert (await cast(polls, voter, "vote-first", "V1")).status == 201
    assert (await tally(polls, "vote-first", voter))["totalVotes"] == 1
    await error_of(await polls.get(url, headers=bearer(other)), 403, "results_not_open")
    await error_of(await polls.get(url), 403, "results_not_open")
    await error_of(await polls.get(f"{url}?at=1", headers=bearer(other)), 403, "results_not_open")


async def run_cli(*args: str) -> tuple[int, str]:
    """``python -m api.cli ...`` in a child process, while this process keeps serving."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOTE_LEDGER_")}
    env["VOTE_LEDGER_SIGNING_KEY"] = TEST_SIGNING_KEY  # the key the test's app signs with
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None  # for the type checker: communicate() waited for it
    return process.returncode, output.decode()


@pytest.mark.ledger_file
async def test_results_after_close_open_when_the_cli_closes_the_running_poll(polls: Client) -> None:
    db = polls.app[SETTINGS].db
    voter = await user(polls, "voter@example.com")
    url = "/api/v1/polls/wait-close/results"
    assert (await cast(polls, voter, "wait-close", "W1")).status == 201
    await error_of(await polls.get(url, headers=bearer(voter)), 403, "results_not_open")
    await error_of(await polls.get(url), 403, "results_not_open")
    assert (await (await polls.get("/api/v1/polls/wait-close")).json())["status"] == "open"

    code, output = await run_cli("polls", "close", "wait-close", "--db", str(db))
    assert code == 0, output

    assert (await (await polls.get("/api/v1/polls/wait-close")).json())["status"] == "closed"
    listed = (await (await polls.get("/api/v1/polls")).json())["polls"]
    assert {p["id"]: p["status"] for p in listed}["wait-close"] == "closed"
    late = await user(polls, "late@example.com")
    await error_of(await cast(polls, late, "wait-close", "W2"), 409, "poll_closed")
    body = await tally(polls, "wait-close")
    assert (body["totalVotes"], body["by_name"]) == (1, {"W1": 1, "W2": 0})
    assert (await tally(polls, "pick-one"))["totalVotes"] == 0  # the other polls stay as they were
    assert (await cast(polls, late, "pick-one", "S1")).status == 201


async def test_a_poll_past_its_closing_time_is_closed_and_shows_its_results(polls: Client) -> None:
    poll = await (await polls.get("/api/v1/polls/long-over")).json()
    assert poll["status"] == "closed"
    token = await user(polls, "a@example.com")
    await error_of(await cast(polls, token, "long-over", "L1"), 409, "poll_closed")
    assert (await tally(polls, "long-over"))["totalVotes"] == 0


async def test_a_poll_before_its_opening_time_refuses_votes(polls: Client) -> None:
    poll = await (await polls.get("/api/v1/polls/not-yet")).json()
    assert poll["status"] == "closed"
    token = await user(polls, "a@example.com")
    await error_of(await cast(polls, token, "not-yet", "N1"), 409, "poll_not_open")


@pytest.mark.ledger_file
async def test_users_imported_by_the_cli_can_log_in_to_the_running_service(
    polls: Client, tmp_path: Path
) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text('{"email": "Imported@Example.com", "name": "Im", "password": "pw-1", "part": "FE"}\n')
    code, output = await run_cli("users", "import", str(users), "--db", str(polls.app[SETTINGS].db))
    assert code == 0, output
    login = {"email": "imported@example.com", "password": "pw-1"}
    response = await polls.post("/api/v1/auth/login", json=login)
    assert response.status == 200, await response.text()
    token = (await response.json())["accessToken"]
    assert (await cast(polls, token, "fe-only", "F1")).status == 201
    await error_of(await polls.post("/api/v1/users", json={
        "email": "imported@example.com", "name": "Again", "password": "password-123",
    }), 409, "email_taken")


# --- eligibility ------------------------------------------------------------------------------------


async def test_same_part_refuses_voters_of_another_part(polls: Client) -> None:
    backend = await user(polls, "be@example.com", part="BE")
    nobody = await user(polls, "none@example.com")
    frontend = await user(polls, "fe@example.com", part="FE")
    await error_of(await cast(polls, backend, "fe-only", "F1"), 403, "not_eligible")
    await error_of(await cast(polls, nobody, "fe-only", "F1"), 403, "not_eligible")
    assert (await cast(polls, frontend, "fe-only", "F1")).status == 201
    assert (await tally(polls, "fe-only"))["totalVotes"] == 1


async def test_not_own_team_refuses_a_vote_for_your_own_team_only(polls: Client) -> None:
    red = await user(polls, "red@example.com", team="red")
    await error_of(await cast(polls, red, "other-teams", "Red"), 403, "not_eligible")
    assert (await cast(polls, red, "other-teams", "Blue")).status == 201
    await error_of(await cast(polls, red, "other-teams", "Red"), 403, "not_eligible")  # nor change to it
    body = await tally(polls, "other-teams")
    assert (body["totalVotes"], body["by_name"]) == (1, {"Red": 0, "Blue": 1})


# --- the bundled club polls, through the legacy routes ----------------------------------------------


@pytest.fixture
async def club(make_client: MakeClient) -> Client:
    return await make_client(config=bundled("club"))


async def test_legacy_signup_takes_part_and_team_as_extra_form_fields(club: Client) -> None:
    response = await legacy_signup(club, "fe@example.com", part="FE", team="Hooking")
    assert response.status == 201, await response.text()
    created = await response.json()
    assert (created["part"], created["team"]) == ("FE", "Hooking")
    token = await legacy_login(club, "fe@example.com")
    me = await (await club.get("/api/v1/me", headers=bearer(token))).json()
    assert (me["user"]["part"], me["user"]["team"]) == ("FE", "Hooking")


async def test_club_legacy_poll_lets_only_frontend_voters_vote_on_the_legacy_route(club: Client) -> None:
    assert [c["name"] for c in await (await club.get("/candidates")).json()] == ["정시원", "고은", "유현우"]
    await legacy_signup(club, "fe@example.com", part="FE", team="Hooking")
    await legacy_signup(club, "be@example.com", part="BE", team="Aetheria")
    frontend = await legacy_login(club, "fe@example.com")
    backend = await legacy_login(club, "be@example.com")
    ids = await candidate_ids(club, "frontend-leader")
    await error_of(await club.get(f"/vote?id={ids['고은']}", headers={"Authorization": backend}), 403,
                   "not_eligible")
    response = await club.get(f"/vote?id={ids['고은']}", headers={"Authorization": frontend})
    assert response.status == 200, await response.text()
    other_poll = (await candidate_ids(club, "backend-leader"))["김*오"]
    await error_of(await club.get(f"/vote?id={other_poll}", headers={"Authorization": backend}), 404)


async def test_club_demo_day_refuses_your_own_team(club: Client) -> None:
    await legacy_signup(club, "fe@example.com", part="FE", team="Hooking")
    token = await legacy_login(club, "fe@example.com")
    await error_of(await cast(club, token, "demo-day", "Hooking"), 403, "not_eligible")
    assert (await cast(club, token, "demo-day", "Aetheria")).status == 201
    await error_of(await club.get("/api/v1/polls/demo-day/results", headers=bearer(token)), 403,
                   "results_not_open")


async def test_candidates_do_not_reveal_counts_the_results_rule_hides(club: Client) -> None:
    await legacy_signup(club, "fe@example.com", part="FE")
    token = await legacy_login(club, "fe@example.com")
    ids = await candidate_ids(club, "frontend-leader")
    assert (await club.get(f"/vote?id={ids['정시원']}", headers={"Authorization": token})).status == 200
    await error_of(await club.get("/api/v1/polls/frontend-leader/results"), 403, "results_not_open")
    counts = {c["name"]: c["voteCount"] for c in await (await club.get("/candidates")).json()}
    assert counts["정시원"] == 0


# --- broken polls files -----------------------------------------------------------------------------

GOOD_POLL = '[[polls]]\nid = "first"\ntitle = "First"\nlegacy = true\n\n[[polls.candidates]]\nname = "A"\n'
BROKEN: dict[str, tuple[str, str, int]] = {  # the file, the offending line, which occurrence of it
    "unknown policy": (GOOD_POLL + '\n[[polls]]\nid = "second"\ntitle = "Second"\npolicy = "ranked"\n',
                       'policy = "ranked"', 1),
    "two legacy polls": (GOOD_POLL + '\n[[polls]]\nid = "second"\ntitle = "Second"\nlegacy = true\n',
                         "legacy = true", 2),
    "duplicate ids": (GOOD_POLL + '\n[[polls]]\nid = "first"\ntitle = "Again"\n', 'id = "first"', 2),
}


def line_of(text: str, needle: str, occurrence: int) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == needle]
    return numbers[occurrence - 1]


async def start_and_fail(settings_dir: Path, config: Path) -> PollConfigError:
    server = TestServer(create_app(make_settings(settings_dir, config=config)))
    try:
        with pytest.raises(PollConfigError) as caught:
            await server.start_server()
    finally:
        await server.close()
    return caught.value


@pytest.mark.parametrize("case", list(BROKEN))
async def test_a_broken_polls_file_is_refused_at_start_up_naming_the_line(tmp_path: Path, case: str) -> None:
    text, needle, occurrence = BROKEN[case]
    config = write_polls(tmp_path / "polls.toml", text)
    error = await start_and_fail(tmp_path, config)
    assert f"{config}:{line_of(text, needle, occurrence)}:" in str(error)
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.ledger_file
async def test_a_polls_file_moving_the_legacy_poll_is_refused_and_appends_nothing(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(config=write_polls(tmp_path / "good.toml", GOOD_POLL))
    before = await head_seq(client)
    await client.close()
    moved = GOOD_POLL.replace("legacy = true\n", "") + (
        '\n[[polls]]\nid = "second"\ntitle = "Second"\nlegacy = true\n'
    )
    error = await start_and_fail(tmp_path, write_polls(tmp_path / "moved.toml", moved))
    assert "legacy" in str(error)
    again = await make_client(config=tmp_path / "good.toml")
    assert await head_seq(again) == before


@pytest.mark.ledger_file
@pytest.mark.parametrize("case", list(BROKEN))
async def test_a_broken_polls_file_appends_nothing_to_an_existing_ledger(
    make_client: MakeClient, tmp_path: Path, case: str
) -> None:
    good = write_polls(tmp_path / "good.toml", GOOD_POLL)
    client = await make_client(config=good)
    before = await head_seq(client)
    await client.close()
    broken = write_polls(tmp_path / "broken.toml", BROKEN[case][0])
    await start_and_fail(tmp_path, broken)
    again = await make_client(config=good)
    assert await head_seq(again) == before
    assert [p["id"] for p in (await (await again.get("/api/v1/polls")).json())["polls"]] == ["first"]
