"""How long the public log's proofs take to answer on a served ledger: inclusion and consistency
proofs of random positions, asked one after another on one kept-alive connection."""

from __future__ import annotations

import http.client
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.processes import BenchError

PROOFS = 1000  # of each kind


def proof_latency(port: int, size: int, count: int = PROOFS, seed: int = 9162) -> dict[str, Any]:
    """Milliseconds per proof (median and 99th percentile), each kind over ``count`` requests
    against the tree of ``size`` leaves."""
    pick = random.Random(seed)
    kinds: dict[str, Callable[[], str]] = {
        "inclusion": lambda: f"/api/v1/log/proof/inclusion?seq={pick.randint(1, size)}&size={size}",
        "consistency": lambda: f"/api/v1/log/proof/consistency?from={pick.randint(1, size)}&to={size}",
    }
    figures: dict[str, Any] = {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for kind, path in kinds.items():
            times = []
            for _ in range(count):
                started = time.perf_counter()
                connection.request("GET", path())
                response = connection.getresponse()
                body = response.read()
                times.append(time.perf_counter() - started)
                if response.status != 200:
                    raise BenchError(f"{kind} proof answered {response.status}: {body[:200]!r}")
            times.sort()
            figures[f"{kind}_proof_p50_ms"] = round(statistics.median(times) * 1000, 3)
            figures[f"{kind}_proof_p99_ms"] = round(times[int(len(times) * 0.99) - 1] * 1000, 3)
    finally:
        connection.close()
    return figures
