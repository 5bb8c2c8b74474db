"""This process's end of ``ledger.sqlite.batch_writer``: starts the process, sends it batches,
and settles what happens when it ends or hangs mid-request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from ledger.errors import LedgerError, StoreUnavailableError
from ledger.pipes import frame, helper_command, reap, receive
from ledger.sqlite.steps import Row, Statement
from ledger.store import Head, StoredEvent

BATCH_WRITER_PATIENCE = 10.0
"""Seconds a batch writer gets to answer beyond the busy timeout, or to finish once closed, before
it is killed."""
BATCH_WRITER_ATTEMPTS = 3  # batch writers a batch may outlive before its callers hear "unavailable"


class BatchWriterGone(StoreUnavailableError):
    """The batch writer process ended before it answered."""


class BatchWriterHung(BatchWriterGone):
    """The batch writer process did not answer in time, and was killed."""


class BatchWriter:
    """This process's end of ``ledger.batch_writer``: the connection that commits group-commit batches.

    One request at a time. A process that has ended is started again at the next request; one that
    does not answer within the busy timeout and ``BATCH_WRITER_PATIENCE`` more is killed.
    """

    def __init__(self, uri: str, path: Path, busy_timeout_ms: int) -> None:
        self._args = (uri, str(path), str(busy_timeout_ms))
        self._path = path
        # a request may first wait that long for another process's write lock
        self._answer_within = busy_timeout_ms / 1000 + BATCH_WRITER_PATIENCE
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Start the process and wait until its connection is open (or say why it is not)."""
        try:
            process = await asyncio.create_subprocess_exec(
                *helper_command("ledger.sqlite.batch_writer", *self._args),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for the server does not reach it
            )
        except OSError as exc:
            raise StoreUnavailableError(f"{self._path}: the batch writer cannot start: {exc}") from exc
        self._process = process
        try:
            assert process.stdout is not None
            _unwrap(await self._reply(process.stdout))  # its connection opened, or why not
        except BaseException:
            await self._reap(patience=BATCH_WRITER_PATIENCE)
            raise

    async def commit_batch(
        self, head: Head, events: Sequence[StoredEvent], statements: Sequence[Statement],
        wipe: bool = False,
    ) -> list[StoredEvent]:
        """Commit a batch; with ``wipe``, empty the WAL once it is committed (an erasure)."""
        # plain tuples: pickling a named tuple costs a Python call each, three times the whole row
        batch = ("batch", (head.seq, head.hash), [tuple(e) for e in events], list(statements), wipe)
        rows = cast(list[Row], await self._request(batch))
        return StoredEvent.from_rows(rows)

    async def probe(self) -> None:
        """A tiny durable write through the process's connection."""
        await self._request(("probe",))

    async def close(self) -> None:
        """Let the process close its connection and end (a process that will not is killed)."""
        async with self._lock:  # after the request in hand, if any
            self._closed = True
            process = self._process
            if process is not None and process.returncode is None and process.stdin is not None:
                with contextlib.suppress(ConnectionError):  # already gone: nothing to tell it
                    process.stdin.write(frame(None))
                    await process.stdin.drain()
            await self._reap(patience=BATCH_WRITER_PATIENCE)

    async def _request(self, message: object) -> object:
        # A cancelled caller does not cut an exchange short: the next one would read its reply.
        exchange = asyncio.ensure_future(self._exchange(frame(message)))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await exchange
            raise

    async def _exchange(self, request: bytes) -> object:
        async with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self._path}: the batch writer is closed")
            try:
                # the deadline covers the whole exchange: a batch larger than the pipe and the
                # transport's buffer waits in drain() for as long as the process does not read
                async with asyncio.timeout(self._answer_within):
                    reply = await self._send_and_answer(request)
            except TimeoutError:
                await self._reap()  # stopped, or hung: its lock goes once it has ended
                raise BatchWriterHung(
                    f"{self._path}: the batch writer did not answer within {self._answer_within:g} s"
                ) from None
            return _unwrap(reply)

    async def _send_and_answer(self, request: bytes) -> tuple[bool, object]:
        if self._process is None or self._process.returncode is not None:
            await self._reap()
            await self.start()
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(request)
            await process.stdin.drain()
        except ConnectionError as exc:
            raise await self._let_go("process ended") from exc
        return await self._reply(process.stdout)

    async def _reply(self, stdout: asyncio.StreamReader) -> tuple[bool, object]:
        """The next reply; a process that ends first, or answers what cannot be read, is let go."""
        try:
            reply = cast(tuple[bool, object], await receive(stdout))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise await self._let_go("process ended") from exc
        except Exception as exc:  # out of step with it: nothing it says can be trusted any more
            raise await self._let_go(f"answered garbage: {exc!r}") from exc
        return reply

    async def _let_go(self, what: str) -> BatchWriterGone:
        """Reap the process; the error for its callers (the log settles whether their batch landed)."""
        await self._reap()
        return BatchWriterGone(f"{self._path}: the batch writer {what}")

    async def _reap(self, patience: float = 0.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            await reap(process, patience)


def _unwrap(reply: tuple[bool, object]) -> object:
    ok, value = reply
    if not ok:
        raise value if isinstance(value, BaseException) else LedgerError(repr(value))
    return value


