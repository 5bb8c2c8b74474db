"""The live results stream (``GET /api/v1/polls/{pollId}/results/stream``) over real HTTP: the
results at once, one event per change with the ledger position as its id, resuming with
``Last-Event-ID``, the results route's visibility rules, keep-alives, many subscribers served by
one computation, and an app that stops at once with streams open."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.keys import LEDGER
from api.stream import STREAMS
from projections.commands import SetPollStatus
from tests.api.helpers import Client, bearer, error_of, unsigned_token
from tests.conftest import MakeClient, signup_and_login
from tests.reliability.helpers import run_cli, serving
from tests.web.sse import EventReader, stream

CLUB = Path(__file__).resolve().parents[2] / "projections" / "polls" / "club.toml"
POLL = "frontend-leader"  # the demo poll: results always public, one vote each


async def vote(client: Client, token: str, candidate: int, poll: str = POLL) -> int:
    """Vote through the JSON API; the vote's ledger position."""
    response = await client.post(f"/api/v1/polls/{poll}/votes", json={"candidateId": candidate},
                                 headers=bearer(token))
    assert response.status == 201, await response.text()
    seq: int = (await response.json())["seq"]
    return seq


async def results_now(client: Client, poll: str = POLL) -> dict[str, Any]:
    response = await client.get(f"/api/v1/polls/{poll}/results")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_the_stream_sends_the_results_at_once_then_each_change_with_its_ledger_position(
    client: Client,
) -> None:
    token = await signup_and_login(client, "ada@example.com")
    async with stream(client, POLL) as events:
        first = await events.next()
        assert first.name == "results"
        expected = await results_now(client)
        assert first.id == str(expected["asOf"])
        assert {**first.json(), "status": None} == {**expected, "status": None}
        assert first.json()["status"] == "open"
        assert events.retry is not None and events.retry > 0
        seq = await vote(client, token, 3)
        change = await events.next()
        assert change.name == "results" and change.id == str(seq)
        body = change.json()
        assert body["asOf"] == seq and body["totalVotes"] == expected["totalVotes"] + 1
        assert [c["votes"] for c in body["candidates"] if c["id"] == 3] == [1]
        assert body == {**(await results_now(client)), "status": "open"}


async def test_resuming_with_last_event_id_gets_only_the_changes_after_it(client: Client) -> None:
    ada = await signup_and_login(client, "ada@example.com")
    bo = await signup_and_login(client, "bo@example.com")
    async with stream(client, POLL) as events:
        await events.next()
        seen = await vote(client, ada, 1)
        assert (await events.next()).id == str(seen)
    # the client comes back with the id of the last event it saw: nothing new, so nothing at all
    async with stream(client, POLL, headers={"Last-Event-ID": str(seen)}) as events:
        await events.none_within(0.5)
        later = await vote(client, bo, 2)
        change = await events.next()
        assert change.id == str(later) and change.json()["totalVotes"] == 2


async def test_resuming_from_before_a_change_gets_the_current_results_at_once(client: Client) -> None:
    ada = await signup_and_login(client, "ada@example.com")
    async with stream(client, POLL) as events:
        before = int((await events.next()).id or "0")
        seq = await vote(client, ada, 1)
        await events.next()
    async with stream(client, POLL, headers={"Last-Event-ID": str(before)}) as events:
        caught_up = await events.next()
        assert caught_up.id == str(seq) and caught_up.json()["totalVotes"] == 1
        await events.none_within(0.3)  # once, not once per change it missed


async def test_a_last_event_id_that_is_not_a_ledger_position_is_ignored(client: Client) -> None:
    async with stream(client, POLL, headers={"Last-Event-ID": "yesterday"}) as events:
        assert (await events.next()).name == "results"


async def test_the_stream_refuses_what_the_results_route_refuses(client: Client) -> None:
    await error_of(await client.get("/api/v1/polls/nope/results/stream"), 404, "unknown_poll")
    await error_of(await client.get(f"/api/v1/polls/{POLL}/results/stream",
                                    headers={"Authorization": "Bearer forged"}), 401)
    await error_of(await client.get(f"/api/v1/polls/{POLL}/results/stream?token=forged"), 401)
    await error_of(await client.get(f"/api/v1/polls/{POLL}/results/stream?at=3"), 400)
    await error_of(await client.get(f"/api/v1/polls/{POLL}/results/stream?token=a&token=b"), 400)


async def test_results_hidden_until_close_are_not_streamed_and_open_when_the_poll_closes(
    make_client: MakeClient,
) -> None:
    client = await make_client(config=CLUB)
    fe = await signup_and_login(client, "fe@example.com", part="FE", team="Hooking")
    await error_of(await client.get("/api/v1/polls/demo-day/results"), 403, "results_not_open")
    async with stream(client, "demo-day") as events:
        hidden = await events.next()
        assert hidden.name == "hidden" and hidden.id == ""  # the client holds no results
        notice = hidden.json()
        route = await error_of(await client.get("/api/v1/polls/demo-day/results"), 403, "results_not_open")
        assert notice["error"] == route and notice["status"] == "open"
        await vote(client, fe, 7, "demo-day")
        await events.none_within(0.5)  # a vote moves nothing a hidden stream shows
        await client.app[LEDGER].execute(SetPollStatus("demo-day", False))
        opened = await events.next()
        assert opened.name == "results" and opened.json()["status"] == "closed"
        assert opened.json() == {**(await results_now(client, "demo-day")), "status": "closed"}
        assert opened.json()["totalVotes"] == 1
        # reopened, the results hide again: the stream says so, and the client's id is reset
        await client.app[LEDGER].execute(SetPollStatus("demo-day", True))
        again = await events.next()
        assert again.name == "hidden" and again.id == ""


async def test_after_vote_results_open_on_the_voters_own_stream_and_no_other(make_client: MakeClient) -> None:
    client = await make_client(config=CLUB)
    fe = await signup_and_login(client, "fe@example.com", part="FE")
    async with stream(client, POLL, params={"token": fe}) as mine, stream(client, POLL) as anyone:
        assert (await mine.next()).name == "hidden"
        assert (await anyone.next()).name == "hidden"
        seq = await vote(client, fe, 1)
        opened = await mine.next()
        assert opened.name == "results" and opened.id == str(seq)
        assert opened.json()["totalVotes"] == 1
        await anyone.none_within(0.5)
    # Authorization works as well as ?token= (and wins over it)
    async with stream(client, POLL, headers=bearer(fe), params={"token": "ignored"}) as mine:
        assert (await mine.next()).name == "results"


async def test_two_hundred_streams_get_one_vote_as_one_event_computed_once(client: Client) -> None:
    token = await signup_and_login(client, "ada@example.com")
    hub = client.app[STREAMS]
    url = client.make_url(f"/api/v1/polls/{POLL}/results/stream")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        responses = await asyncio.gather(*(session.get(url) for _ in range(200)))
        readers = [EventReader(response) for response in responses]
        try:
            assert all(r.status == 200 for r in responses)
            firsts = await asyncio.gather(*(r.next() for r in readers))
            assert {e.id for e in firsts} == {firsts[0].id}
            assert hub.streams == 200
            computed = hub.computations
            seq = await vote(client, token, 2)
            changes = await asyncio.gather(*(r.next() for r in readers))
            assert {e.id for e in changes} == {str(seq)}
            assert {e.data for e in changes} == {changes[0].data}
            assert hub.computations == computed + 1
        finally:
            for reader in readers:
                await reader.close()
    for _ in range(100):  # every stream is forgotten as its client goes
        if not hub.channels:
            break
        await asyncio.sleep(0.05)
    assert hub.streams == 0 and hub.channels == {}


async def test_the_more_streams_a_poll_has_the_further_apart_its_events(client: Client) -> None:
    hub = client.app[STREAMS]
    hub.gap_per_stream = 0.1  # 5 streams: an event every 0.5 s at most
    voters = [await signup_and_login(client, f"v{n}@example.com") for n in range(4)]
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(stream(client, POLL)) for _ in range(5)]
        for events in streams:
            await events.next()
        await asyncio.sleep(0.6)
        computed = hub.computations
        first = await vote(client, voters[0], 1)
        assert (await streams[0].next()).id == str(first)  # the first change goes out at once
        sent = loop.time()
        last = 0
        for voter in voters[1:]:  # three more, one by one, within the gap
            last = await vote(client, voter, 2)
        later = await streams[0].next()
        assert loop.time() - sent >= 0.45
        assert later.id == str(last) and later.json()["totalVotes"] == 4  # the three, together
        assert hub.computations == computed + 2
        for events in streams[1:]:
            assert [(await events.next()).id, (await events.next()).id] == [str(first), str(last)]


async def test_nothing_is_computed_while_no_stream_is_open(client: Client) -> None:
    token = await signup_and_login(client, "ada@example.com")
    hub = client.app[STREAMS]
    await vote(client, token, 1)
    await asyncio.sleep(3 * hub.interval)
    assert hub.computations == 0


async def test_keep_alive_comments_arrive_on_a_quiet_stream(client: Client) -> None:
    client.app[STREAMS].keepalive = 0.2
    async with stream(client, POLL) as events:
        await events.next()
        await events.none_within(0.7)
        assert len(events.comments) >= 2
        assert set(events.comments) == {"keep-alive"}


async def test_a_stream_from_another_origin_carries_the_cors_headers(client: Client) -> None:
    async with stream(client, POLL, headers={"Origin": "http://localhost:3000"}) as events:
        assert events.response.headers["Access-Control-Allow-Origin"] == "*"
        assert events.response.headers["Cache-Control"].startswith("no-cache")
        await events.next()


async def test_the_app_stops_at_once_with_streams_open(make_client: MakeClient) -> None:
    client = await make_client()
    readers = []
    for _ in range(5):
        response = await client.get(f"/api/v1/polls/{POLL}/results/stream")
        readers.append(EventReader(response))
    for reader in readers:
        await reader.next()
    started = asyncio.get_running_loop().time()
    await client.server.close()  # the runner's shutdown: on_shutdown ends the streams first
    assert asyncio.get_running_loop().time() - started < 5
    for reader in readers:
        await asyncio.wait_for(reader.ended.wait(), 5)
        await reader.close()


@pytest.mark.parametrize("kind", ["header", "query"])
async def test_a_forged_token_is_refused_before_the_stream_starts(client: Client, kind: str) -> None:
    token = unsigned_token({"sub": "nobody", "iat": 1, "exp": 2})
    sent: dict[str, Any] = {"headers": bearer(token)} if kind == "header" else {"params": {"token": token}}
    await error_of(await client.get(f"/api/v1/polls/{POLL}/results/stream", **sent), 401)


# --- a real `vote-ledger serve`: another process's append, and SIGTERM with streams open ------------


async def test_a_poll_closed_by_another_process_opens_its_results_on_its_streams(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with serving(db, config=CLUB) as server:
        async with aiohttp.ClientSession() as session:
            events = EventReader(await session.get(f"{server.url}/api/v1/polls/demo-day/results/stream"))
            try:
                assert (await events.next()).name == "hidden"
                closed = await asyncio.to_thread(run_cli, "polls", "close", "demo-day", "--db", str(db))
                assert closed.returncode == 0, closed.stderr
                opened = await events.next(timeout=5)  # no request came: the hub looked by itself
                assert opened.name == "results" and opened.json()["status"] == "closed"
            finally:
                await events.close()


async def test_sigterm_stops_the_server_at_once_with_streams_open(tmp_path: Path) -> None:
    with serving(tmp_path / "ledger.db", config=CLUB) as server:
        async with aiohttp.ClientSession() as session:
            readers = [EventReader(await session.get(f"{server.url}/api/v1/polls/{poll}/results/stream"))
                       for poll in ("frontend-leader", "demo-day") for _ in range(10)]
            for reader in readers:
                await reader.next()
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.process.wait, 20)
            assert code == 0, server.log_text()[-2000:]
            assert time.monotonic() - started < 5  # not the 30 s the server waits for handlers at most
            for reader in readers:
                await asyncio.wait_for(reader.ended.wait(), 5)
                await reader.close()
        assert "Traceback" not in server.log_text()
