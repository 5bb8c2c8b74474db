"""Sealing batches into the Merkle tree in a process of the service's own.

Sealing a batch (its leaf hashes, the nodes they complete, the signed checkpoint) and writing
every receipt of it to JSON cost the server's event loop about 9 µs a vote, all of it Python
holding the interpreter lock. A batch of ``OFFLOAD_FROM`` events or more goes instead to this
process, on another core: the event loop pays for the pickles and the pipe, while the batch's
callers wait as they would have anyway. Smaller batches are sealed where they are: the round trip
costs the loop about 60 µs whatever the batch, as much as sealing 4 events here (and batches past
``OFFLOAD_UPTO`` too).

The worker gets the checkpoint signing key and origin once, as its first message, and says it
is ready; then each request ``(frontier size, frontier hashes, event rows)`` gets two answers: at
once ``(True, (size, hashes, rows, note))``, the seal, and then, while the server commits the
batch, ``(True, receipts)``, each event's receipt in JSON: the same values
``ledger.tree.seal_batch`` gives in the server (Ed25519 signatures are deterministic).

``serve`` starts it before it listens; other users of a ledger (the command line, a test) seal
every batch themselves. Until it is ready, and whenever it fails or is slow, batches are sealed
(and receipts written) in the server: a worker is a speed-up, never a dependency.
Like the batch writer it ignores SIGINT and SIGTERM and ends when its input does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.merkle import Frontier, Row
from ledger.notes import NoteSigner
from ledger.pipes import frame, helper_command, helper_streams, read_frame, reap, receive
from ledger.store import StoredEvent

log = logging.getLogger(__name__)

OFFLOAD_FROM = 8  # events in a batch from which the worker seals it (it saves the loop 20 µs at 8, 110 at 37)
OFFLOAD_UPTO = 256
"""Events in a batch past which it is sealed here again. Such batches come from bulk appends (an
import, a burst of commands in one process), where the event loop has nothing else to do and
nobody asks for receipts: the round trip of their rows costs more than sealing them here, and the
worker's receipts would take the core the batch writer commits on (group-committed appends of
512-event batches ran 12 % slower through the worker)."""
ANSWER_WITHIN = 2.0  # seconds a worker has to seal a batch before it is killed (and the batch sealed here)
RESTART_AFTER = 5.0  # seconds after a worker failed before another is started
START_WITHIN = 10.0  # seconds a new worker has to be ready, beyond ANSWER_WITHIN
_READY = b"ready\n"  # what a worker says once it can seal

SealParts = tuple[int, tuple[bytes, ...], list[Row], str]
"""A worker's first answer to a batch: the frontier after it (size, hashes), the nodes it
completes, and the signed checkpoint."""
Sealed = tuple[SealParts, "asyncio.Future[list[bytes]]"]
"""The batch's seal, and each of its events' receipts in JSON, which the worker writes while the
batch commits."""


class SealWorker:
    """This process's end of the worker: one request at a time. Nothing runs until ``start``
    (``serve`` calls it before it listens); from then on a worker that failed is started again."""

    def __init__(
        self, signer: NoteSigner, key: Ed25519PrivateKey, answer_within: float = ANSWER_WITHIN
    ) -> None:
        self._key, self._origin = key, signer.origin  # told to each worker as it starts
        self._answer_within = answer_within
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._wanted = False  # started once: kept running (started again after a failure)
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._killed: set[asyncio.Future[int]] = set()  # failed workers, until they are reaped
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        return None if self._process is None else self._process.pid

    async def seal(self, before: Frontier, events: Sequence[StoredEvent]) -> Sealed | None:
        """The batch sealed by the worker, and its receipts to come; None when it has no worker
        ready (or this one failed now): the caller seals the batch itself."""
        if not OFFLOAD_FROM <= len(events) <= OFFLOAD_UPTO or self._closed:
            return None
        process = self._process
        if process is not None and process.returncode is not None:
            self._fail(f"it ended with {process.returncode}")
            process = None
        if process is None:
            if self._wanted:
                self._start_soon()
            return None
        if self._lock.locked():  # the last batch's receipts are still coming: seal this one here
            return None
        await self._lock.acquire()  # released once this batch's receipts are read
        try:
            async with asyncio.timeout(self._answer_within):
                parts = await self._exchange(process, before, events)
        except BaseException as exc:  # out of step with the worker: it goes, whatever happened
            self._lock.release()
            self._fail(_why(exc))
            if isinstance(exc, Exception):
                return None
            raise
        receipts = asyncio.ensure_future(self._receipts(process, len(events)))
        receipts.add_done_callback(_seen)
        return parts, receipts

    async def _exchange(
        self, process: asyncio.subprocess.Process, before: Frontier, events: Sequence[StoredEvent]
    ) -> SealParts:
        assert process.stdin is not None
        process.stdin.write(frame((before.size, before.hashes, [tuple(e) for e in events])))
        await process.stdin.drain()
        parts = cast(SealParts, await self._reply(process))
        if parts[0] != before.size + len(events):
            raise RuntimeError("the worker sealed another batch")
        return parts

    async def _receipts(self, process: asyncio.subprocess.Process, count: int) -> list[bytes]:
        try:
            async with asyncio.timeout(self._answer_within):
                receipts = cast(list[bytes], await self._reply(process))
            if len(receipts) != count:
                raise RuntimeError("the worker wrote the receipts of another batch")
        except BaseException as exc:
            self._fail(_why(exc))
            raise
        finally:
            self._lock.release()
        return receipts

    async def _reply(self, process: asyncio.subprocess.Process) -> object:
        assert process.stdout is not None
        ok, value = cast(tuple[bool, object], await receive(process.stdout))
        if not ok:
            raise RuntimeError(str(value))
        return value

    async def start(self, ready: bool = True) -> None:
        """Start the worker now; with ``ready``, wait until it can seal (``serve`` does not wait:
        until the worker is ready, batches are sealed in the server)."""
        self._wanted = True
        if self._process is None and self._starting is None and not self._closed:
            self._starting = asyncio.ensure_future(self._start())
        if ready and self._starting is not None:
            await asyncio.wait((self._starting,))

    def _start_soon(self) -> None:
        if self._starting is not None or time.monotonic() - self._failed_at < RESTART_AFTER:
            return
        self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        process = None
        try:
            process = await asyncio.create_subprocess_exec(
                *helper_command("ledger.sealing"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(frame((self._key.private_bytes_raw(), self._origin)))
            await process.stdin.drain()
            async with asyncio.timeout(self._answer_within + START_WITHIN):
                said = await process.stdout.readexactly(len(_READY))
            if said != _READY:
                raise ConnectionError(f"it said {said!r}")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self._failed_at = time.monotonic()
            log.warning("the seal worker cannot start (%s); batches are sealed in the server", exc)
            if process is not None:
                await _end(process)
            return
        finally:
            self._starting = None
        if self._closed:
            await _end(process)
        else:
            self._process = process

    def _fail(self, why: str) -> None:
        process, self._process = self._process, None
        self._failed_at = time.monotonic()
        log.warning("the seal worker failed (%s); batches are sealed in the server for now", why)
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        # reaped in the background, and by ``close`` at the latest: nothing of it outlives the loop
        reaped = asyncio.ensure_future(process.wait())
        self._killed.add(reaped)
        reaped.add_done_callback(self._killed.discard)

    async def close(self) -> None:
        """End the worker (it is killed if it does not end by itself within a second)."""
        self._closed = True
        if self._starting is not None:
            await asyncio.wait((self._starting,))
        async with self._lock:
            process, self._process = self._process, None
            if process is not None:
                await _end(process)
        if self._killed:
            await asyncio.wait(self._killed)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close its input, which ends it; kill it if it has not ended within a second."""
    if process.stdin is not None:
        process.stdin.close()
    await reap(process, 1.0)


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Seal batches until the input ends."""
    from ledger.tree import seal_batch  # the tree starts this process: imported here, not above

    hello = read_frame(requests)
    if hello is None:
        return
    seed, origin = cast(tuple[bytes, str], hello)
    signer = NoteSigner(origin, Ed25519PrivateKey.from_private_bytes(seed))
    replies.write(_READY)
    replies.flush()
    while (request := read_frame(requests)) is not None:
        size, hashes, rows = cast(tuple[int, tuple[bytes, ...], list[tuple[object, ...]]], request)
        try:
            seal = seal_batch(signer, Frontier(size, hashes), StoredEvent.from_rows(rows))
            _reply(replies, (True, (seal.after.size, seal.after.hashes, seal.rows, seal.note)))
        except Exception as exc:  # the server seals this batch itself
            _reply(replies, (False, repr(exc)))
            continue
        try:  # while the server commits the batch
            receipts: tuple[bool, object] = (True, seal.receipts_json)
        except Exception as exc:  # the server writes them itself
            receipts = (False, repr(exc))
        _reply(replies, receipts)


def _reply(replies: BinaryIO, message: tuple[bool, object]) -> None:
    replies.write(frame(message))
    replies.flush()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _seen(receipts: asyncio.Future[list[bytes]]) -> None:
    """Mark a failed receipts future's error as seen: nobody may ask for a receipt of the batch
    (its receipts are then written in the server, from the seal)."""
    if not receipts.cancelled():
        receipts.exception()


def main(argv: list[str]) -> int:
    """Seal the batches of the server that started this process, on standard input and output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = helper_streams()
    with contextlib.suppress(BrokenPipeError):  # the server is gone: nobody is left to answer
        serve(requests, replies)
    return 0
