"""How long a vote one node acknowledged takes to show on another node of the same ledger.

Votes go one at a time, each to the next node in turn; once a node answers a vote with its ledger
position, the next node is asked for the poll's results until they are as of that position. The
delay runs from the answer to the first read that shows the vote, so each delay is at most one
read's round trip longer than the true one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.processes import BenchError

PATIENCE = 10.0
"""Seconds a node may take to show a vote before the benchmark stops."""


def visibility(ports: Sequence[int], tokens: Sequence[str], poll: str, candidate: int) -> dict[str, Any]:
    """One vote by each of ``tokens`` in ``poll``, each on the next node of ``ports`` and read
    back on the one after it: the delays' median, 99th percentile and highest, in ms."""
    delays = asyncio.run(_delays(ports, tokens, poll, candidate))
    ranked = sorted(delays)
    return {
        "votes": len(delays),
        "p50_ms": round(statistics.median(ranked) * 1000, 2),
        "p99_ms": round(ranked[min(len(ranked) - 1, int(0.99 * len(ranked)))] * 1000, 2),
        "max_ms": round(ranked[-1] * 1000, 2),
    }


async def _delays(ports: Sequence[int], tokens: Sequence[str], poll: str, candidate: int) -> list[float]:
    if len(ports) < 2 or not tokens:
        raise ValueError("the visibility of votes across nodes needs two nodes and one voter at least")
    delays = []
    async with aiohttp.ClientSession() as session:
        for n, token in enumerate(tokens):
            writer, reader = ports[n % len(ports)], ports[(n + 1) % len(ports)]
            async with session.post(f"http://127.0.0.1:{writer}/api/v1/polls/{poll}/votes",
                                    json={"candidateId": candidate},
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                answer = await response.json()
                if response.status != 201:
                    raise BenchError(f"a vote for the visibility figures was refused: {answer}")
            acknowledged = time.perf_counter()
            while True:
                async with session.get(f"http://127.0.0.1:{reader}/api/v1/polls/{poll}/results") as response:
                    results = await response.json()
                seen = time.perf_counter()
                if results["asOf"] >= answer["seq"]:
                    break
                if seen - acknowledged > PATIENCE:
                    raise BenchError(f"the node on port {reader} did not show the vote at seq "
                                     f"{answer['seq']} within {PATIENCE:g} s")
            delays.append(seen - acknowledged)
    return delays
