"""Small builders and checks shared by the ledger tests."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from bench.procfs import children, command_line, stat_fields
from ledger.chain import chain, link
from ledger.events import PollOpened, UserRegistered, encode
from ledger.notes import key_from_text
from ledger.store import (
    EMPTY_WRITES,
    GENESIS_HASH,
    EventStore,
    NewEvent,
    PrivateData,
    StoredEvent,
    fold_reads,
)
from ledger.tables import TableWrites
from ledger.tree import Signing

T = TypeVar("T")

TEST_SIGNING_KEY = base64.b64encode(bytes(range(32))).decode()
"""A fixed checkpoint signing key, so that every test opening a ledger again signs as before."""
TEST_SIGNING = Signing(key_from_text(TEST_SIGNING_KEY), default_origin="test/vote-ledger")


def user_event(user_id: str | None = None, private: PrivateData | None = None) -> NewEvent:
    """A registration ready to append (stream ``user:<id>``, version 1)."""
    event = UserRegistered(user_id or uuid.uuid4().hex, commitment="0" * 64)
    event_id = str(uuid.uuid4())
    return NewEvent(event_id, event.TYPE, event.stream(), 1, encode(event_id, event, 1), private)


def poll_event(poll_id: str, version: int) -> NewEvent:
    """An event of stream ``poll:<id>`` at ``version`` (the store does not care which type)."""
    event = PollOpened(poll_id)
    event_id = str(uuid.uuid4())
    return NewEvent(event_id, event.TYPE, event.stream(), version, encode(event_id, event, version))


def stream_event(stream: str, version: int = 1) -> NewEvent:
    """An event of any ``stream`` at ``version`` (its body names another stream: the store does
    not read bodies)."""
    return poll_event(uuid.uuid4().hex, version)._replace(stream=stream)


def user_events(count: int) -> list[NewEvent]:
    return [user_event() for _ in range(count)]


async def append(
    store: EventStore, events: Sequence[NewEvent], writes: TableWrites = EMPTY_WRITES
) -> list[StoredEvent]:
    """Append ``events`` (and ``writes``) as one batch at the head, which must still be the head
    when it commits; the stored events."""
    head = await store.head()
    stored = chain(head, events)
    assert await store.append(head, stored, writes) == []
    return stored


async def append_retrying(
    store: EventStore, events: Sequence[NewEvent], writes: TableWrites = EMPTY_WRITES
) -> list[StoredEvent]:
    """Append ``events`` as one batch, at whatever the head is when the store takes it (deciding
    again at the new head each time another writer got there first); the stored events."""
    head = await store.head()
    while True:
        stored = chain(head, events)
        missed = await store.append(head, stored, writes)
        if not missed:
            return stored
        assert missed[0].seq == head.seq + 1 and missed[0].prev_hash == head.hash
        head = await store.head()


async def read_all(store: EventStore, after: int = 0, upto: int | None = None) -> list[StoredEvent]:
    """Every event ``store.read`` yields, chunks flattened. ``fold_reads(store).read_all`` must
    yield the same, and ``read_bodies`` the same events' seq, body, hash and private body."""
    events = [event async for chunk in store.read(after=after, upto=upto) for event in chunk]
    reads = fold_reads(store)
    assert [event async for chunk in reads.read_all(after=after, upto=upto) for event in chunk] == events
    bodies = [row async for rows in reads.read_bodies(after=after, upto=upto) for row in rows]
    assert bodies == [(e.seq, e.body, e.hash, e.private_body) for e in events]
    return events


async def read_streams(store: EventStore, prefix: str, upto: int | None = None) -> list[StoredEvent]:
    """Every event ``store.read_streams`` yields, chunks flattened."""
    return [event async for chunk in store.read_streams(prefix, upto=upto) for event in chunk]


def assert_chain(events: list[StoredEvent]) -> None:
    """``events`` are the whole log: seq gapless from 1, each hash recomputed from the stored body."""
    prev = GENESIS_HASH
    for expected_seq, event in enumerate(events, start=1):
        assert event.seq == expected_seq, f"gap or disorder at seq {expected_seq}"
        assert event.prev_hash == prev, f"seq {event.seq} does not link to the hash before it"
        assert event.hash == link(prev, event.body), f"seq {event.seq} hash does not recompute"
        prev = event.hash


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (an exited process nobody has reaped yet counts as ended)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


async def until_ended(pid: int, timeout: float = 10.0) -> None:
    """Wait for process ``pid`` to end."""
    for _ in range(int(timeout / 0.02)):
        if not _running(pid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"process {pid} is still running after {timeout} s")


def helper_processes(parent: int, module: str) -> list[int]:
    """The helper processes running ``module`` (``ledger.pipes``) that ``parent`` started and that
    still run."""
    return [pid for pid in children(parent) if _running(pid) and module.encode() in command_line(pid)]


def batch_writers(parent: int) -> list[int]:
    """The ``ledger.sqlite.batch_writer`` processes that ``parent`` started and that still run."""
    return helper_processes(parent, "ledger.sqlite.batch_writer")


def answered_inline(call: Coroutine[Any, Any, T]) -> T:
    """The answer of a coroutine that must come without waiting for anything (no I/O, no task):
    it ends at its first step."""
    try:
        call.send(None)
    except StopIteration as done:
        answer: T = done.value
        return answer
    call.close()
    raise AssertionError("it waited for something before answering")
