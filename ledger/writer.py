"""Group commit: concurrent commands queue up and are decided and committed in one transaction.

Each caller is answered only after the commit that holds its events, so one fsync serves a whole
batch. The handler decides every command of the batch inside the write transaction; a command that
fails gets its own error while the others commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ledger.errors import LedgerError, StoreUnavailableError
from ledger.store import EventStore, WriteTransaction

C = TypeVar("C")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome(Generic[R]):
    """What a handler decided: one result or error per command, and what to do once committed."""

    results: list[R | Exception]
    on_commit: Callable[[], None] = field(default=lambda: None)


BatchHandler = Callable[[WriteTransaction, Sequence[C]], Awaitable[BatchOutcome[R]]]


class WriterClosedError(LedgerError):
    """The writer is shutting down and takes no more commands."""


class GroupCommitWriter(Generic[C, R]):
    """The one writer of a process: batches commands and commits each batch durably."""

    def __init__(
        self, store: EventStore, handler: BatchHandler[C, R], max_batch: int = 512
    ) -> None:
        self._store = store
        self._handler = handler
        self._max_batch = max_batch
        self._queue: list[tuple[C, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def submit(self, command: C) -> R:
        """Queue a command; returns its result once the batch that holds it has committed."""
        if self._closing or self._task is None:
            raise WriterClosedError("the ledger is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        self._wakeup.set()
        return await asyncio.shield(future)

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
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[C, asyncio.Future[R]]]) -> None:
        commands = [command for command, _ in batch]
        try:
            async with self._store.write() as tx:
                outcome = await self._handler(tx, commands)
        except LedgerError as exc:
            error: Exception = exc if isinstance(exc, StoreUnavailableError) else (
                StoreUnavailableError(f"the batch could not be committed: {exc}")
            )
            log.warning("batch of %d not committed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except Exception as exc:  # a defect: answer every caller rather than leave them hanging
            log.exception("batch of %d failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        outcome.on_commit()
        for (_, future), result in zip(batch, outcome.results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
