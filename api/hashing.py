"""Password hashing that cannot starve the rest: a fixed pool of worker threads fed from one queue
per kind of work, bounded, the first kind first (logins ahead of signups).

A signup flood then waits behind itself: a login waits at most for the hashes already running, and
past its bound a queue refuses at once (503 ``busy`` with ``Retry-After``) instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from api.errors import ApiError

T = TypeVar("T")
LOGIN, SIGNUP = "login", "signup"  # the kinds of work, logins first


class HashingBusyError(ApiError):
    """The queue for this kind of work is full: try again after ``retry_after`` seconds."""

    def __init__(self, kind: str, retry_after: int) -> None:
        super().__init__(503, "busy", f"too many {kind}s are waiting for a password check; try again",
                         headers={"Retry-After": str(retry_after)})


class WorkQueues:
    """Run blocking calls on ``workers`` threads; callers queue by kind, and a free thread takes the
    oldest caller of the first kind that has one. ``limits`` gives each kind's most waiting callers
    (None: no limit), in priority order."""

    def __init__(self, workers: int, limits: Mapping[str, int | None], name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._workers = workers
        self._free = workers
        self._limits = dict(limits)
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {kind: deque() for kind in limits}
        self._seconds = 0.05  # a running mean of a call's duration, for Retry-After

    def waiting(self, kind: str) -> int:
        return len(self._waiting[kind])

    async def run(self, kind: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread, once this caller's turn comes."""
        loop = asyncio.get_running_loop()
        if self._free and not any(self._waiting.values()):
            self._free -= 1
        else:
            queue, limit = self._waiting[kind], self._limits[kind]
            if limit is not None and len(queue) >= limit:
                wait = (len(queue) + 1) * self._seconds / self._workers
                raise HashingBusyError(kind, max(1, math.ceil(wait)))
            turn = loop.create_future()
            queue.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.cancelled():
                    with contextlib.suppress(ValueError):
                        queue.remove(turn)
                else:  # the turn came as it was cancelled: hand it on
                    self._release()
                raise
        started = time.perf_counter()
        work = self._pool.submit(fn, *args)
        # the thread is free when the call ends, even if its caller has gone away meanwhile
        work.add_done_callback(lambda _: self._finished(loop, started))
        return await asyncio.wrap_future(work)

    def _finished(self, loop: asyncio.AbstractEventLoop, started: float) -> None:
        self._seconds += (time.perf_counter() - started - self._seconds) / 8
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        """A thread is free: the next caller in priority order gets it."""
        for queue in self._waiting.values():
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
