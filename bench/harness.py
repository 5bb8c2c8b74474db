"""Driving a server with a real load generator, and what it measured.

wrk runs one of this package's Lua scripts (``votes.lua``: one token per request, so every vote is
by a distinct user; ``logins.lua``: one user's login per request, round and round), after
``slices.lua``, which gives each wrk thread its slice of the script's lines, and before
``figures.lua``, which reports wrk's figures as one line of JSON. Where wrk is absent an aiohttp
client stands in (slower; it shares the Python runtime's cost) and says so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from bench.processes import SECRET, BenchError, child_environment, last_line
from bench.procfs import children, stat_fields
from projections.model import User

FALLBACK = "aiohttp (wrk not found)"


@dataclass
class Scenario:
    """One measured scenario."""

    name: str
    requests: int
    ok: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float = 0.0
    generator: str = "wrk"
    cpu_us: float | None = None  # the server's CPU time (all threads, and its batch writer) per request
    voters_ran_out: bool = False  # every voter had voted before the time was up: rps is a lower bound
    socket_errors: int = 0  # connections that failed or timed out: the figures are not to be trusted
    round: int = 1


def wrk(ports: Sequence[int], script: str, inputs: dict[str, str], connections: int, duration: float,
        work: Path) -> dict[str, Any]:
    """wrk's figures for ``script`` (``votes`` or ``logins``) against the servers on ``ports``, the
    script reading its inputs from the ``BENCH_*`` variables in ``inputs``; the script is written
    into ``work``. One wrk thread per server, each with its share of the connections (``votes.lua``
    points each thread at its own server), so the figures are one run's: one latency histogram."""
    path = work / f"{script}.lua"
    path.write_text("".join((resources.files("bench") / name).read_text(encoding="utf-8")
                            for name in ("slices.lua", f"{script}.lua", "figures.lua")), encoding="utf-8")
    threads = len(ports)
    nodes = ",".join(map(str, ports)) if threads > 1 else ""
    env = child_environment({**inputs, "BENCH_THREADS": str(threads), "BENCH_NODES": nodes})
    try:
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", str(path), f"http://127.0.0.1:{ports[0]}"],
            env=env, capture_output=True, text=True, timeout=duration + 120,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 120:g} s") from None
    for line in result.stderr.splitlines():
        if line.startswith("BENCH "):
            stats: dict[str, Any] = json.loads(line[6:])
            return stats
    raise BenchError(f"wrk exited with {result.returncode} and printed no figures: "
                     f"{last_line(result.stderr + result.stdout)}")


async def aiohttp_load(ports: Sequence[int], path: str, connections: int, duration: float,
                       method: str = "", body: str = "", tokens: Sequence[str] = (),
                       bodies: Sequence[str] = ()) -> dict[str, Any]:
    """The figures of the stand-in for wrk: as ``votes.lua`` with ``tokens`` (each used once),
    as ``logins.lua`` with ``bodies`` (round and round); the connections take turns at ``ports``."""
    latencies: list[float] = []
    ok = non2xx = 0
    queue = iter(tokens)
    payloads = itertools.cycle(bodies) if bodies else itertools.repeat(body)
    deadline = time.monotonic() + duration
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker(port: int) -> None:
            nonlocal ok, non2xx
            while time.monotonic() < deadline:
                token = next(queue, None)
                if token is None and method and not bodies:
                    return
                payload = next(payloads)
                headers = {"Authorization": f"Bearer {token}"} if method and token else {}
                if payload:  # as the wrk scripts send it
                    headers["Content-Type"] = "application/json"
                start = time.perf_counter()
                async with session.request(method or "GET", f"http://127.0.0.1:{port}{path}",
                                           headers=headers, data=payload or None,
                                           ) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                if 200 <= response.status < 300:
                    ok += 1
                else:
                    non2xx += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(ports[n % len(ports)]) for n in range(connections)))
        seconds = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": ok + non2xx, "seconds": seconds, "non2xx": non2xx, "socket_errors": 0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def service_pids(pid: int) -> list[int]:
    """A served process and the processes it started (its batch writer)."""
    return [pid, *children(pid)]


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a served process and its children so far (None where ``/proc``
    does not tell)."""
    total = 0
    for process in service_pids(pid):
        fields = stat_fields(process)
        if fields is None:
            if process == pid:
                return None
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _all_cpu_seconds(pids: Sequence[int]) -> float | None:
    """``_cpu_seconds`` of every served process in ``pids``, added up."""
    seconds = [_cpu_seconds(pid) for pid in pids]
    return None if not seconds or None in seconds else sum(s for s in seconds if s is not None)


def measure(name: str, pids: Sequence[int], load: Callable[[], tuple[dict[str, Any], str]]) -> Scenario:
    """Run ``load`` (which gives the load generator's figures and its name) against the served
    processes ``pids``, and what it measured, with their CPU time per request."""
    cpu_before = _all_cpu_seconds(pids)
    stats, generator = load()
    # wrk counts a request once its answer is in; a connection that failed (to connect, read or
    # write) brought no answer, and its error is no request of the count
    ok = stats["requests"] - stats["non2xx"]
    cpu_after = _all_cpu_seconds(pids)
    cpu_us = None
    if cpu_before is not None and cpu_after is not None and stats["requests"]:
        cpu_us = round((cpu_after - cpu_before) / stats["requests"] * 1e6, 1)
    return Scenario(name, stats["requests"], ok, stats["seconds"], ok / stats["seconds"],
                    stats["p50_ms"], stats["p99_ms"], generator=generator, cpu_us=cpu_us,
                    socket_errors=stats["socket_errors"])


def drive(ports: Sequence[int], tokens_file: Path, tokens: list[str], name: str, path: str,
          connections: int, duration: float, method: str = "", body: str = "",
          pids: Sequence[int] = ()) -> Scenario:
    """A scenario of ``votes.lua`` against the servers on ``ports`` (processes ``pids``): ``method``
    requests to ``path``, each with a token of its own (without a method, plain GETs with none)."""
    def load() -> tuple[dict[str, Any], str]:
        if shutil.which("wrk"):
            inputs = {"BENCH_TOKENS": str(tokens_file), "BENCH_PATH": path, "BENCH_METHOD": method,
                      "BENCH_BODY": body}
            return wrk(ports, "votes", inputs, connections, duration, tokens_file.parent), "wrk"
        return asyncio.run(aiohttp_load(ports, path, connections, duration, method, body, tokens)), FALLBACK

    scenario = measure(name, pids, load)
    # wrk counts the whole duration even when every voter has voted and its thread has stopped
    scenario.voters_ran_out = bool(method) and scenario.requests >= len(tokens) - connections
    return scenario


def tokens(
    users: Iterable[User], work: Path, name: str, lifetime: float = 3600
) -> tuple[list[str], Path]:
    """One token per user, as the service would issue it (valid for ``lifetime`` seconds), and the
    file wrk reads them from."""
    now = int(time.time())
    exp = now + int(lifetime)
    minted = [
        jwt.encode({"sub": u.user_id, "email": u.email, "iat": now, "exp": exp}, SECRET, "HS256")
        for u in users
    ]
    tokens_file = work / name
    tokens_file.write_text("\n".join(minted) + "\n")
    return minted, tokens_file
