"""The throughput benchmark: the service's routes against a bare aiohttp handler, in one run.

It builds a fresh ledger (a SQLite file, or with ``postgres`` a database of its own on that
PostgreSQL server), imports users with a cheap hashing cost, mints their tokens, starts
``vote-ledger serve`` (``nodes`` of them on one PostgreSQL ledger, each on its own port) and drives
it with wrk (one token per request, so every vote is by a distinct user; one wrk thread per node),
then measures the ceiling (``bench.ceiling``) the same way, in the same run. With several nodes it
then measures how long a vote one node acknowledged takes to show on another (``bench.visibility``).
Afterwards it checks that the tallies equal the acknowledged votes and that the audit passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import Scenario, drive, tokens
from bench.processes import BenchError, command, environment, free_port, in_workdir, serve, step, stop
from bench.visibility import visibility
from ledger.errors import StoreUnavailableError
from ledger.open import locate, open_store
from ledger.postgres.admin import scratch_database
from projections.audit import audit
from projections.model import User
from projections.service import replay
from projections.state import LedgerState

POLLS = """
[[polls]]
id = "bench-legacy"
title = "legacy route votes"
legacy = true
[[polls.candidates]]
name = "alpha"
[[polls.candidates]]
name = "beta"

[[polls]]
id = "bench-json"
title = "JSON API votes"
[[polls.candidates]]
name = "gamma"
[[polls.candidates]]
name = "delta"
"""

SERVICE_SCENARIOS = (
    ("GET /candidates", "/candidates", "", "", None),
    ("GET /vote?id=N (legacy)", "/vote?id=1", "GET", "", "bench-legacy"),
    ("POST /api/v1/polls/{id}/votes", "/api/v1/polls/bench-json/votes", "POST", '{"candidateId": 3}',
     "bench-json"),
)
"""Each scenario the service is driven through: its name, path, method (empty: no token, a plain
GET), body, and the poll its requests vote in (None: no votes)."""

VISIBILITY_VOTES = 300
"""Votes cast one at a time, each read back on another node, for the cross-node visibility delay."""
VISIBILITY_POLL, VISIBILITY_CANDIDATE = "bench-json", 3

VOTERS_PER_SECOND = 30_000
"""Distinct voters imported per second of each scenario, unless told otherwise: more than a vote
route serves on a machine whose bare ceiling is 45,000 requests a second, so none runs out."""


async def _replayed(db: str) -> LedgerState:
    store = await open_store(db, readonly=True)
    try:
        return await replay(store)
    finally:
        await store.close()


def populate(db: str, work: Path, polls_text: str, voters: int) -> tuple[Path, list[User], float]:
    """Load the polls and import ``voters`` users (cheap hashing) into the ledger ``db``, with the
    service's own commands; the polls file, the users as the ledger holds them, and how long it
    took."""
    env = environment(db)
    polls = work / "polls.toml"
    polls.write_text(polls_text, encoding="utf-8")
    people = work / "users.jsonl"
    with people.open("w") as handle:
        for i in range(voters):
            handle.write(json.dumps({"email": f"user{i}@bench.example", "name": f"user {i}",
                                     "password": f"pw-{i}"}) + "\n")
    started = time.perf_counter()
    step("loading the polls", command("polls", "load", "--config", str(polls)), env)
    step("importing the users", command("users", "import", str(people)), env)
    seconds = time.perf_counter() - started
    return polls, list(asyncio.run(_replayed(db)).users.values()), seconds


async def _audit(db: str) -> bool:
    store = await open_store(db, readonly=True)
    try:
        return (await audit(store)).ok
    finally:
        await store.close()


def _tallies(state: LedgerState) -> dict[str, int]:
    return {p.poll_id: p.total_votes for p in state.polls.values()}


def run(
    users: int | None, connections: int, duration: float, keep: Path | None = None, rounds: int = 1,
    postgres: str | None = None, nodes: int = 1,
) -> dict[str, Any]:
    """Run the service's scenarios ``rounds`` times, with a ceiling run before the first round and
    after each, and return the figures; the files stay in ``keep`` if given. ``users`` voters vote
    in each round, so ``users * rounds`` are imported. With ``postgres`` (a URL) the ledger is in
    a database of its own on that PostgreSQL server, dropped after the run; ``nodes`` serve it."""
    if rounds < 1 or nodes < 1 or connections < nodes:
        raise ValueError(f"rounds and nodes must be 1 or more and connections at least one per node, "
                         f"not {rounds}, {nodes} and {connections}")
    # wrk runs for whole seconds, one at least
    voters = users if users is not None else VOTERS_PER_SECOND * max(1, round(duration))
    job = partial(_run, voters, connections, duration, rounds, nodes)

    def on_postgres(work: Path) -> dict[str, Any]:
        assert postgres is not None
        try:
            with scratch_database(postgres, "vote_ledger_bench") as db:
                return {**job(db, work), "database": db.rsplit("/", 1)[1]}
        except StoreUnavailableError as exc:
            raise BenchError(str(exc)) from None

    return in_workdir(keep, on_postgres if postgres else lambda work: job(str(work / "bench.db"), work))


def _run(
    users: int, connections: int, duration: float, rounds: int, nodes: int, db: str, work: Path
) -> dict[str, Any]:
    env = environment(db)
    # with several nodes, voters of their own for the visibility figures
    seen_voters = VISIBILITY_VOTES if nodes > 1 else 0
    polls, voters, import_seconds = populate(db, work, POLLS, users * rounds + seen_voters)
    # tokens minted now must outlive every round: an hour past the run's longest likely length
    lifetime = 3600 + rounds * (len(SERVICE_SCENARIOS) + 1) * (duration + 120)
    # each round's votes are by voters of its own, who have voted in neither poll yet
    slices = [
        tokens(voters[r * users:(r + 1) * users], work, f"tokens-{r + 1}.txt", lifetime)
        for r in range(rounds)
    ]
    seen_tokens = (tokens(voters[users * rounds:], work, "tokens-visibility.txt", lifetime)[0]
                   if seen_voters else [])

    # The ceiling is measured before the first round and after each, and each round's ratios are
    # to the mean of the two around it: the host's speed drifts within a run, and one measurement
    # at a slow moment would flatter or sink every ratio.
    bare_port, ports = free_port(), [free_port() for _ in range(nodes)]
    bare = serve([sys.executable, "-m", "bench.ceiling", str(bare_port)], env, bare_port, work / "bare.log")
    try:
        def ceiling(name: str, r: int) -> Scenario:
            round_tokens, tokens_file = slices[r - 1]
            return replace(drive([bare_port], tokens_file, round_tokens, name, "/", connections, duration,
                                 pids=[bare.pid]), round=r)

        ceilings = [ceiling("bare aiohttp (ceiling)", 1)]
        served: list[list[Scenario]] = []
        seen: dict[str, Any] | None = None
        servers: list[subprocess.Popen[bytes]] = []
        try:
            for n, port in enumerate(ports, start=1):
                log = work / ("server.log" if n == 1 else f"server-{n}.log")
                servers.append(serve(
                    command("serve", "--port", str(port), "--config", str(polls), "--log-format", "json"),
                    {**env, "PYTHONUNBUFFERED": "1"}, port, log,
                ))
            pids = [server.pid for server in servers]
            for r, (round_tokens, tokens_file) in enumerate(slices, start=1):
                served.append([
                    replace(drive(ports, tokens_file, round_tokens, name, path, connections, duration,
                                  method=method, body=body, pids=pids), round=r)
                    for name, path, method, body, _ in SERVICE_SCENARIOS
                ])
                ceilings.append(ceiling("bare aiohttp (ceiling, again)", r))
            if nodes > 1:
                seen = visibility(ports, seen_tokens, VISIBILITY_POLL, VISIBILITY_CANDIDATE)
        finally:
            for server in servers:
                stop(server)
    finally:
        stop(bare)
    mean = statistics.fmean(c.rps for c in ceilings)
    for c in ceilings:  # how far each ceiling run strays from their mean
        c.ratio = round(c.rps / mean, 3) if mean else 0.0
    for r, scenarios in enumerate(served):
        around = (ceilings[r].rps + ceilings[r + 1].rps) / 2
        for scenario in scenarios:
            scenario.ratio = round(scenario.rps / around, 3) if around else 0.0

    tallies = _tallies(asyncio.run(_replayed(db)))
    acknowledged = {
        poll: sum(s.ok for s in _runs(served, name))
        for name, *_, poll in SERVICE_SCENARIOS if poll is not None
    }
    if seen is not None:
        acknowledged[VISIBILITY_POLL] += seen["votes"]
    # wrk stops with up to one request per connection in flight: those votes may have committed
    # without wrk counting the answer, so a tally may exceed the acknowledged votes by that much.
    tallies_match = all(
        acknowledged[k] <= tallies.get(k, 0) <= acknowledged[k] + connections * rounds for k in acknowledged
    )
    audit_ok = asyncio.run(_audit(db))
    ordered = [ceilings[0]]
    for scenarios, after in zip(served, ceilings[1:], strict=True):
        ordered += [*scenarios, after]
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "ledger": locate(db).scheme, "nodes": nodes,
        "users": users, "rounds": rounds, "connections": connections, "duration": duration,
        "import_seconds": round(import_seconds, 2),
        "scenarios": [asdict(s) for s in ordered],
        "summary": summary(served),
        "tallies": tallies, "acknowledged": acknowledged,
        "tallies_match": tallies_match,
        "audit_passed": audit_ok,
        "visibility": seen,
    }


def _runs(served: list[list[Scenario]], name: str) -> list[Scenario]:
    """The scenario named ``name`` in every round."""
    return [s for scenarios in served for s in scenarios if s.name == name]


def summary(served: list[list[Scenario]]) -> dict[str, dict[str, float]]:
    """Each service scenario over the rounds: the median, lowest and highest ratio, the median
    rate and the highest p99."""
    figures: dict[str, dict[str, float]] = {}
    for name, *_ in SERVICE_SCENARIOS:
        runs = _runs(served, name)
        ratios = [s.ratio for s in runs]
        figures[name] = {
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "rps_median": round(statistics.median(s.rps for s in runs), 1),
            "p99_ms_max": max(s.p99_ms for s in runs),
        }
    return figures
