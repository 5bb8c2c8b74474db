"""Many open results streams, held by one small process for the streams benchmark.

``python -m bench.stream_holder PORT POLL COUNT`` opens COUNT ``GET /api/v1/polls/POLL/results/stream``
connections to 127.0.0.1:PORT, prints ``READY`` once every one has had its first event, and on
SIGTERM (or SIGINT) prints one line of JSON: the streams still open and the ``results`` events they
got after ``READY``. It reads with bare asyncio protocols and counts, never parses: a client costs
the machine as little as a client can, and it runs at the lowest priority, since real clients are
on machines of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import statistics
import sys
from typing import cast

EVENT = b"event: results"


class Stream(asyncio.Protocol):
    """One open stream: how many ``results`` events it got, and whether it is still open."""

    def __init__(self, request: bytes, first: asyncio.Event, ready: list[int]) -> None:
        self.request = request
        self.events = 0
        self.open = False
        self._first = first
        self._ready = ready
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.open = True
        cast(asyncio.WriteTransport, transport).write(self.request)  # uvloop's is no asyncio class

    def data_received(self, data: bytes) -> None:
        joined = self._tail + data
        seen = joined.count(EVENT)  # an event split between two reads counts once
        # keep less than a whole marker: one that ended this read was counted, and is not again
        self._tail = joined[-(len(EVENT) - 1):]
        if seen and self.events == 0:
            self._ready[0] += 1
            if self._ready[0] == self._ready[1]:
                self._first.set()
        self.events += seen

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False


async def hold(port: int, poll: str, count: int) -> dict[str, object]:
    """Open the streams, say READY, and hold them until told to stop; their figures."""
    loop = asyncio.get_running_loop()
    request = (f"GET /api/v1/polls/{poll}/results/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    first, ready = asyncio.Event(), [0, count]
    streams: list[Stream] = []
    for start in range(0, count, 100):  # in bursts under the server's listen backlog
        made = await asyncio.gather(*(
            loop.create_connection(lambda: Stream(request, first, ready), "127.0.0.1", port)
            for _ in range(start, min(count, start + 100))
        ))
        streams += [protocol for _, protocol in made]
    await asyncio.wait_for(first.wait(), 60)
    before = [s.events for s in streams]
    print("READY", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    got = [s.events - b for s, b in zip(streams, before, strict=True)]
    return {
        "streams": count, "open": sum(s.open for s in streams),
        "events_min": min(got), "events_median": statistics.median(got), "events_max": max(got),
    }


def main(argv: list[str]) -> None:
    port, poll, count = int(argv[0]), argv[1], int(argv[2])
    os.nice(19)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    try:
        import uvloop
    except ImportError:
        figures = asyncio.run(hold(port, poll, count))
    else:
        figures = uvloop.run(hold(port, poll, count))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
