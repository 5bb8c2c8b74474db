"""The queues in front of the hashing threads: logins first, bounded, and a caller that gives up
gives its turn to the next."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from api.hashing import LOGIN, SIGNUP, HashingBusyError, WorkQueues


def _recorder(order: list[str], gate: threading.Event | None = None) -> Callable[[str], str]:
    def work(name: str) -> str:
        if gate is not None:
            gate.wait(timeout=10)
        order.append(name)
        return name

    return work


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_free_thread_takes_a_login_before_the_signups_queued_ahead_of_it() -> None:
    queues = WorkQueues(1, {LOGIN: None, SIGNUP: None}, "test")
    order: list[str] = []
    gate = threading.Event()
    try:
        busy = asyncio.ensure_future(queues.run(SIGNUP, _recorder(order, gate), "running"))
        signups = [asyncio.ensure_future(queues.run(SIGNUP, _recorder(order), f"s{n}")) for n in range(3)]
        await _until(lambda: queues.waiting(SIGNUP) == 3)
        login = asyncio.ensure_future(queues.run(LOGIN, _recorder(order), "login"))
        await _until(lambda: queues.waiting(LOGIN) == 1)
        gate.set()
        await asyncio.gather(busy, login, *signups)
        assert order == ["running", "login", "s0", "s1", "s2"]
    finally:
        gate.set()
        queues.close()


async def test_past_its_bound_a_kind_is_refused_at_once_and_the_other_kind_still_waits() -> None:
    queues = WorkQueues(1, {LOGIN: 5, SIGNUP: 2}, "test")
    order: list[str] = []
    gate = threading.Event()
    try:
        busy = asyncio.ensure_future(queues.run(SIGNUP, _recorder(order, gate), "running"))
        waiting = [asyncio.ensure_future(queues.run(SIGNUP, _recorder(order), f"s{n}")) for n in range(2)]
        await _until(lambda: queues.waiting(SIGNUP) == 2)
        with pytest.raises(HashingBusyError) as refused:
            await queues.run(SIGNUP, _recorder(order), "one too many")
        assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) >= 1
        login = asyncio.ensure_future(queues.run(LOGIN, _recorder(order), "login"))
        gate.set()
        await asyncio.gather(busy, login, *waiting)
        assert "one too many" not in order and order[1] == "login"
    finally:
        gate.set()
        queues.close()


async def test_a_caller_that_gives_up_in_the_queue_passes_its_turn_on() -> None:
    queues = WorkQueues(1, {LOGIN: None, SIGNUP: None}, "test")
    order: list[str] = []
    gate = threading.Event()
    try:
        busy = asyncio.ensure_future(queues.run(SIGNUP, _recorder(order, gate), "running"))
        quitter = asyncio.ensure_future(queues.run(LOGIN, _recorder(order), "quitter"))
        stayer = asyncio.ensure_future(queues.run(SIGNUP, _recorder(order), "stayer"))
        await _until(lambda: queues.waiting(LOGIN) == 1 and queues.waiting(SIGNUP) == 1)
        quitter.cancel()
        gate.set()
        await asyncio.gather(busy, stayer)
        assert quitter.cancelled() and order == ["running", "stayer"]
        # and the thread is free again for whoever comes next
        assert await asyncio.wait_for(queues.run(LOGIN, _recorder(order), "next"), 5) == "next"
    finally:
        gate.set()
        queues.close()
