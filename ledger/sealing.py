"""Sealing batches into the Merkle tree in a process of the service's own.

Sealing a batch (its leaf hashes, the nodes they complete, the signed checkpoint) and writing
every receipt of it to JSON cost the server's event loop about 9 µs a vote, all of it Python
holding the interpreter lock. A batch of ``OFFLOAD_FROM`` events or more goes instead to this
process, on another core: the event loop pays for two pickles and a pipe round trip, while the
batch's callers wait as they would have anyway. Smaller batches are sealed where they are: the
round trip costs the loop about 60 µs whatever the batch, as much as sealing 4 events here.

The worker gets the checkpoint signing key and origin once, as its first message; then each
request ``(frontier size, frontier hashes, event rows)`` gets ``(True, (size, hashes, rows, note,
receipts))``, the same values ``ledger.tree.seal_batch`` gives in the server (Ed25519 signatures
are deterministic). ``serve`` starts it before it listens (other users of a ledger, at their first
large batch); until it is ready, and whenever it fails or is slow, batches are sealed in the
server: a worker is a speed-up, never a dependency.
Like the batch writer it ignores SIGINT and SIGTERM and ends when its input does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import time
from collections.abc import Sequence
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.merkle import Frontier, Row
from ledger.notes import NoteSigner
from ledger.pipes import FRAME, frame, helper_command, helper_streams, read_frame
from ledger.store import StoredEvent

log = logging.getLogger(__name__)

OFFLOAD_FROM = 8  # events in a batch from which the worker seals it (it saves the loop 20 µs at 8, 110 at 37)
ANSWER_WITHIN = 2.0  # seconds a worker has to seal a batch before it is killed (and the batch sealed here)
RESTART_AFTER = 5.0  # seconds after a worker failed before another is started
START_WITHIN = 10.0  # seconds a new worker has to be ready, beyond ANSWER_WITHIN
_READY = b"ready\n"  # what a worker says once it can seal

SealParts = tuple[int, tuple[bytes, ...], list[Row], str, list[bytes]]
"""What a worker answers: the frontier after the batch (size, hashes), the nodes the batch
completes, the signed checkpoint, and each event's receipt in JSON."""


class SealWorker:
    """This process's end of the worker: one request at a time. ``start`` starts it (``serve``
    does, before it listens); otherwise the first large batch does."""

    def __init__(
        self, signer: NoteSigner, key: Ed25519PrivateKey, answer_within: float = ANSWER_WITHIN
    ) -> None:
        self._hello = frame((key.private_bytes_raw(), signer.origin))
        self._answer_within = answer_within
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        return None if self._process is None else self._process.pid

    async def seal(self, before: Frontier, events: Sequence[StoredEvent]) -> SealParts | None:
        """The batch sealed by the worker; None when it has no worker ready (or this one failed
        now): the caller seals the batch itself."""
        if len(events) < OFFLOAD_FROM or self._closed:
            return None
        process = self._process
        if process is not None and process.returncode is not None:
            self._fail(f"it ended with {process.returncode}")
            process = None
        if process is None:
            self._start_soon()
            return None
        if self._lock.locked():  # a batch sealed meanwhile, of a writer closing: not worth the wait
            return None
        async with self._lock:
            try:
                async with asyncio.timeout(self._answer_within):
                    return await self._exchange(process, before, events)
            except BaseException as exc:  # out of step with the worker: it goes, whatever happened
                self._fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                if isinstance(exc, Exception):
                    return None
                raise

    async def _exchange(
        self, process: asyncio.subprocess.Process, before: Frontier, events: Sequence[StoredEvent]
    ) -> SealParts:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(frame((before.size, before.hashes, [tuple(e) for e in events])))
        await process.stdin.drain()
        (size,) = FRAME.unpack(await process.stdout.readexactly(FRAME.size))
        ok, value = pickle.loads(await process.stdout.readexactly(size))
        if not ok:
            raise RuntimeError(str(value))
        parts = cast(SealParts, value)
        if parts[0] != before.size + len(events) or len(parts[4]) != len(events):
            raise RuntimeError("the worker sealed another batch")
        return parts

    async def start(self) -> None:
        """Start the worker now and wait until it is ready (the service does, before it listens:
        a process started under load takes the event loop and the other core for a moment)."""
        if self._process is None and not self._closed:
            if self._starting is None:
                self._starting = asyncio.ensure_future(self._start())
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
            process.stdin.write(self._hello)
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
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def close(self) -> None:
        """End the worker (it is killed if it does not end by itself within a second)."""
        self._closed = True
        if self._starting is not None:
            await asyncio.wait((self._starting,))
        async with self._lock:
            process, self._process = self._process, None
            if process is not None:
                await _end(process)


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 1.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


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
            reply: tuple[bool, object] = (True, (seal.after.size, seal.after.hashes, seal.rows, seal.note,
                                                 seal.receipts_json))
        except Exception as exc:  # the server seals this batch itself
            reply = (False, repr(exc))
        replies.write(frame(reply))
        replies.flush()


def main(argv: list[str]) -> int:
    """Seal the batches of the server that started this process, on standard input and output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = helper_streams()
    with contextlib.suppress(BrokenPipeError):  # the server is gone: nobody is left to answer
        serve(requests, replies)
    return 0
