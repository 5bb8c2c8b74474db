"""The login benchmark (``--logins``): logins a second on a ledger of few users and of many.

For each size it builds a ledger of that many users, each with a password of their own hashed at
the cheap cost the benchmark's servers use (the cost of argon2 is not what is measured), starts
``vote-ledger serve`` on it and has wrk post the users' logins to ``/api/v1/auth/login`` for the
scenario's duration, each user in turn and again. Every login is right, so the throttle, which
counts failures only, never holds one back. The ratio of the rates says how a login's cost grows
with the number of users.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from api.auth import Passwords
from api.settings import Settings
from bench.harness import FALLBACK, Scenario, aiohttp_load, measure, wrk
from bench.ledgers import AT_ONCE, BENCH_POLL, bulk_ledger, execute_all
from bench.processes import command, environment, free_port, in_workdir, serve, stop
from projections.commands import RegisterUser, SyncPolls
from projections.polls_file import parse_polls

LOGIN_USERS = (3_000, 300_000)
"""The ledgers' sizes, in users, unless told otherwise."""

PATH = "/api/v1/auth/login"


def _login(i: int) -> tuple[str, str]:
    """The email and password of the benchmark's user ``i``."""
    return f"login{i}@bench.example", f"pw-{i}"


async def _build_ledger(db: Path, users: int, settings: Settings) -> None:
    """A ledger of the benchmark's poll and ``users`` users, their passwords hashed as ``settings``
    say."""
    passwords = Passwords(settings)
    try:
        async with bulk_ledger(db) as ledger:
            await ledger.execute(SyncPolls(parse_polls(BENCH_POLL)))
            for start in range(0, users, AT_ONCE):
                logins = [_login(i) for i in range(start, min(users, start + AT_ONCE))]
                hashes = await asyncio.gather(*(passwords.hash_password(pw) for _, pw in logins))
                await execute_all(ledger, (
                    RegisterUser(email, email.split("@")[0], password_hash)
                    for (email, _), password_hash in zip(logins, hashes, strict=True)
                ))
    finally:
        passwords.close()


def _drive(port: int, bodies_file: Path, bodies: list[str], name: str, connections: int,
           duration: float, pid: int) -> Scenario:
    def load() -> tuple[dict[str, Any], str]:
        if shutil.which("wrk"):
            inputs = {"BENCH_BODIES": str(bodies_file), "BENCH_PATH": PATH}
            return wrk([port], "logins", inputs, connections, duration, bodies_file.parent), "wrk"
        return asyncio.run(aiohttp_load([port], PATH, connections, duration, "POST", bodies=bodies)), FALLBACK

    return measure(name, [pid], load)


def login_run(sizes: Sequence[int], connections: int, duration: float,
              keep: Path | None = None) -> dict[str, Any]:
    """Logins a second on a ledger of each of ``sizes`` users, and the rate at the most users over
    the rate at the fewest; the files stay in ``keep`` if given."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every size must be 1 user or more, not {list(sizes)}")
    return in_workdir(keep, partial(_login_run, sorted(set(sizes)), connections, duration))


def _login_run(sizes: list[int], connections: int, duration: float, work: Path) -> dict[str, Any]:
    polls = work / "polls.toml"
    polls.write_text(BENCH_POLL, encoding="utf-8")
    runs: list[dict[str, Any]] = []
    for users in sizes:
        db = work / f"logins-{users}.db"
        env = environment(db)
        started = time.perf_counter()
        asyncio.run(_build_ledger(db, users, Settings.load(environ=env)))
        build_seconds = time.perf_counter() - started
        bodies = [json.dumps({"email": email, "password": pw}) for email, pw in map(_login, range(users))]
        bodies_file = work / f"logins-{users}.jsonl"
        bodies_file.write_text("\n".join(bodies) + "\n", encoding="utf-8")
        port = free_port()
        server = serve(command("serve", "--port", str(port), "--config", str(polls)), env, port,
                       work / f"server-{users}.log")
        try:
            scenario = _drive(port, bodies_file, bodies, f"POST {PATH}, {users:,} users", connections,
                              duration, server.pid)
        finally:
            stop(server)
        runs.append({"users": users, "build_seconds": round(build_seconds, 2), **asdict(scenario)})
    fewest = runs[0]["rps"]
    for run in runs:  # each rate over the rate at the fewest users
        run["ratio"] = round(run["rps"] / fewest, 3) if fewest else 0.0
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "connections": connections, "duration": duration,
        "logins": runs,
        "ratio": runs[-1]["ratio"],
        "all_logins_succeeded": all(r["ok"] == r["requests"] > 0 for r in runs),
    }
