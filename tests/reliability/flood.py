"""Login and vote latency while a flood of signups waits for its password hashes.

``python -m tests.reliability.flood [--signups 300] [--logins 100] [--votes 300] [--json]`` starts a
real ``vote-ledger serve`` with the default argon2id cost (m = 19 MiB, t = 2, p = 1) and sends
logins (16 a second) and votes (50 a second) at a steady pace, each whether or not the ones before
were answered, first to the idle server, then while SIGNUPS signups, sent at once from ten loopback
addresses (each under the per-client signup limit), wait to be hashed. It prints the p50, p99 and
worst time to an answer of each, and how the flood went. Traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.reliability.helpers import Server, start_server, write_polls

PASSWORD = "a long password"
REAL_COST = {  # the service's defaults: an empty value is no value
    "VOTE_LEDGER_ARGON2_TIME_COST": "", "VOTE_LEDGER_ARGON2_MEMORY_COST": "",
    "VOTE_LEDGER_ARGON2_PARALLELISM": "",
}
SOURCES = [f"127.0.0.{n}" for n in range(10, 20)]


@dataclass
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return cls(len(ordered), round(statistics.median(ordered) * 1000, 1), round(p99 * 1000, 1),
                   round(ordered[-1] * 1000, 1))


async def _timed(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, float, Any]:
    start = time.perf_counter()
    async with session.request(method, url, **kwargs) as response:
        body = await response.json()
        return response.status, time.perf_counter() - start, body


CREDENTIALS = {"email": "probe@example.org", "password": PASSWORD}


LOGIN_EVERY = 0.06  # seconds between two logins sent: about 16 a second
VOTE_EVERY = 0.02  # seconds between two votes sent: 50 a second


async def _series(server: Server, logins: int, votes: int, token: str) -> tuple[Latency, Latency]:
    """Logins and votes sent at a steady pace, whether or not the ones before were answered (so
    that a request held up holds up none sent after it): the time each took to be answered."""
    bearer = {"Authorization": f"Bearer {token}"}
    votes_url = f"{server.url}/api/v1/polls/marathon/votes"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def log_in() -> float:
            status, took, body = await _timed(session, "POST", f"{server.url}/api/v1/auth/login",
                                              json=CREDENTIALS)
            assert status == 200, body
            return took

        async def vote(n: int) -> float:
            status, took, body = await _timed(session, "POST", votes_url, json={"candidateId": 4 + n % 2},
                                              headers=bearer)
            assert status == 201, body
            return took

        async def paced(count: int, every: float, send: Any) -> list[float]:
            sent = []
            for n in range(count):
                sent.append(asyncio.ensure_future(send(n)))
                await asyncio.sleep(every)
            return list(await asyncio.gather(*sent))

        login_times, vote_times = await asyncio.gather(
            paced(logins, LOGIN_EVERY, lambda _: log_in()), paced(votes, VOTE_EVERY, vote)
        )
        return Latency.of(login_times), Latency.of(vote_times)


async def _flood(server: Server, signups: int) -> tuple[asyncio.Future[list[tuple[int, float]]], float]:
    """Send ``signups`` signups at once, from ten addresses; their answers, and when they were sent."""
    started = time.perf_counter()

    async def one(n: int) -> tuple[int, float]:
        source = SOURCES[n % len(SOURCES)]
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session,
            session.post(f"{server.url}/api/v1/users", json={
                "email": f"flood{n}@example.org", "name": f"Flood {n}", "password": PASSWORD,
            }) as response,
        ):
            await response.read()
            return response.status, time.perf_counter() - started

    return asyncio.gather(*(one(n) for n in range(signups))), started


async def measure(signups: int, logins: int, votes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vote-ledger-flood-") as tmp:
        root = Path(tmp)
        server = start_server(root / "ledger.db", config=write_polls(root / "polls.toml"), env={
            **REAL_COST, "VOTE_LEDGER_SIGNUPS_PER_CLIENT": str(max(30, -(-signups // len(SOURCES)))),
        })
        try:
            async with aiohttp.ClientSession() as session:
                status, _, body = await _timed(session, "POST", f"{server.url}/api/v1/users",
                                               json={**CREDENTIALS, "name": "Probe"})
                assert status == 201, body
                status, _, body = await _timed(session, "POST", f"{server.url}/api/v1/auth/login",
                                               json=CREDENTIALS)
                assert status == 200, body
                token = body["accessToken"]
            await _series(server, 5, 20, token)  # warm up
            idle_login, idle_vote = await _series(server, logins, votes, token)
            answers, started = await _flood(server, signups)
            await asyncio.sleep(0.5)  # every signup is in and waiting for its hash
            measured_from = time.perf_counter() - started
            flood_login, flood_vote = await _series(server, logins, votes, token)
            measured_to = time.perf_counter() - started
            results = await answers
        finally:
            server.kill()
    done = sorted(t for _, t in results)
    still_waiting = sum(1 for t in done if t > measured_to)
    return {
        "argon2": "m=19456 KiB, t=2, p=1 (the defaults)",
        "idle": {"login": asdict(idle_login), "vote": asdict(idle_vote)},
        "during_flood": {"login": asdict(flood_login), "vote": asdict(flood_vote)},
        "flood": {
            "signups": signups,
            "statuses": {str(s): [r for r, _ in results].count(s) for s in sorted({r for r, _ in results})},
            "measured_from_s": round(measured_from, 2), "measured_to_s": round(measured_to, 2),
            "drained_after_s": round(done[-1], 2),
            "still_waiting_when_measured": still_waiting,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.flood",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--signups", type=int, default=300)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--votes", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.signups, args.logins, args.votes))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"argon2id {report['argon2']}")
    for phase in ("idle", "during_flood"):
        for kind in ("login", "vote"):
            lat = report[phase][kind]
            print(f"{phase:>12} {kind:>5}: {lat['count']:>4} at a steady pace, p50 {lat['p50_ms']:7.1f} ms, "
                  f"p99 {lat['p99_ms']:7.1f} ms, worst {lat['max_ms']:7.1f} ms")
    flood = report["flood"]
    print(f"flood: {flood['signups']} signups at once from {len(SOURCES)} addresses, "
          f"answered {flood['statuses']}; measured from {flood['measured_from_s']} s "
          f"to {flood['measured_to_s']} s, the last signup answered at {flood['drained_after_s']} s "
          f"({flood['still_waiting_when_measured']} still waiting when the measurement ended)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
