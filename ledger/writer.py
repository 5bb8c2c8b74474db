"""Group commit: concurrent commands queue up and are committed together in one transaction.

The handler decides a whole batch against the state it holds, which is the state at the head it
names; the store appends the batch only if the log still ends at that head, in one durable
transaction (``EventStore.append``). If another writer appended in between, nothing is written: the
handler catches up with those events and decides the batch again. So every invariant is checked
against exactly the state the batch commits on, one fsync serves the whole batch, and each caller
is answered only after that commit. A command that fails gets its own error; the others commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ledger.errors import LedgerError, StoreUnavailableError
from ledger.store import EventStore, Head, StoredEvent
from ledger.tables import TableWrites
from ledger.tree import LogTree

C = TypeVar("C")
R = TypeVar("R")
P = TypeVar("P")
C_contra = TypeVar("C_contra", contravariant=True)

log = logging.getLogger(__name__)
MAX_RETRIES = 100


@dataclass
class Decision(Generic[R, P]):
    """A decided batch: what to append after ``head``, the handler's own record of each of those
    events (``pending``, folded in once they are durable), the projection rows, each command's
    result in the order of the commands, and the streams whose private data it erases."""

    head: Head
    events: list[StoredEvent]
    pending: list[P]
    writes: TableWrites
    results: list[R | Exception]
    erase: list[str] = field(default_factory=list)  # streams whose private data goes with the batch


class BatchHandler(Protocol[C_contra, R, P]):
    """Decides batches against its state and keeps that state in step with the log."""

    def decide(self, commands: Sequence[C_contra]) -> Decision[R, P]: ...

    def catch_up(self, events: Sequence[StoredEvent]) -> None: ...

    def committed(self, decision: Decision[R, P]) -> None: ...


class WriterClosedError(LedgerError):
    """The writer is shutting down and takes no more commands."""


class GroupCommitWriter(Generic[C, R, P]):
    """The one writer of a process: batches commands and commits each batch durably."""

    def __init__(
        self, store: EventStore, handler: BatchHandler[C, R, P], max_batch: int = 512,
        tree: LogTree | None = None,
    ) -> None:
        self._store = store
        self._handler = handler
        self._tree = tree  # seals each batch into the Merkle tree, with a signed checkpoint
        self._max_batch = max_batch
        self._queue: list[tuple[C, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.in_flight: list[StoredEvent] = []  # the batch being committed

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def submit(self, command: C) -> R:
        """Queue a command; returns its result once the batch that holds it has committed.

        A caller cancelled while waiting cancels only its own wait: the command stays queued and
        is committed with its batch (the writer skips answering a cancelled future).
        """
        if self._closing or self._task is None:
            raise WriterClosedError("the ledger is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        self._wakeup.set()
        return await future

    def is_own(self, head: Head) -> bool:
        """Whether ``head`` is an event of the batch this writer is committing right now."""
        if not self.in_flight or not self.in_flight[0].seq <= head.seq <= self.in_flight[-1].seq:
            return False
        return self.in_flight[head.seq - self.in_flight[0].seq].hash == head.hash

    async def close(self) -> None:
        """Commit (or refuse) everything queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                results = await self._commit([command for command, _ in batch])
            except LedgerError as exc:
                log.warning("batch of %d not committed: %s", len(batch), exc)
                error = exc if isinstance(exc, StoreUnavailableError) else StoreUnavailableError(str(exc))
                results = [error] * len(batch)
            except Exception as exc:  # a defect: answer every caller rather than leave them hanging
                log.exception("batch of %d failed", len(batch))
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _commit(self, commands: list[C]) -> list[R | Exception]:
        for _ in range(MAX_RETRIES):
            decision = self._handler.decide(commands)
            if not decision.events:
                # Nothing to append (refusals, replays): no transaction, but the refusals must stand
                # on the log as it is now, so catch up and decide again if anyone appended.
                if (await self._store.head()).seq == decision.head.seq:
                    return decision.results
                async for chunk in self._store.read(after=decision.head.seq):
                    self._handler.catch_up(chunk)
                continue
            self.in_flight = decision.events
            try:
                writes = decision.writes
                if self._tree is not None:
                    seal = await self._tree.seal(decision.head, decision.events)
                    writes = {**writes, **seal.writes}
                foreign = await self._store.append(decision.head, decision.events, writes, decision.erase)
                if foreign:
                    self._handler.catch_up(foreign)
                    continue
                if self._tree is not None:
                    self._tree.sealed(seal)
                self._handler.committed(decision)
            finally:
                self.in_flight = []
            return decision.results
        raise StoreUnavailableError("other writers kept the log moving; the batch was not committed")
