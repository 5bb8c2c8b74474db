"""The vote ledger as the API sees it: a state kept in step with the log, and a group-commit writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import msgspec

from ledger.errors import CorruptEventError, LedgerError, StoreUnavailableError
from ledger.events import POLL_STREAMS, ballot_stream, user_stream
from ledger.store import EventStore, fold_reads
from ledger.tree import Inclusion, LogTree, Receipt, Signing
from ledger.writer import GroupCommitWriter
from projections.commands import Command, Decider, Pending, Result
from projections.model import User
from projections.state import LedgerState, PrivateFields, collector_paused
from projections.tables import POSITION, TABLES

log = logging.getLogger(__name__)
PROBE_REUSE = 1.0  # seconds a health probe's outcome is reused
FRESHNESS = 0.001  # seconds: how stale a read may be with respect to other processes' appends
READ_WAIT = 0.5  # seconds a read waits for the store to answer before answering from memory


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: the ``at`` recorded with each vote."""
    return time.time_ns() // 1_000_000


Progress = Callable[[int, int], None]


async def replay(
    store: EventStore, upto: int | None = None, progress: Progress | None = None
) -> LedgerState:
    """A fresh fold of the log (up to ``upto``), reporting progress as ``(done, total)``."""
    total = upto if upto is not None else (await store.head()).seq
    state = LedgerState()
    with collector_paused():
        async for rows in fold_reads(store).read_bodies(upto=upto):
            state.fold_rows(rows)
            if progress:
                progress(state.head_seq, total)
    return state


StoreOpener = Callable[[], Awaitable[EventStore]]
"""Opens the store again, read-only, in another process (so it must pickle)."""

T = TypeVar("T")


class Apart(Generic[T]):
    """A job running in a second process (``in_second_process``)."""

    def __init__(self, future: asyncio.Future[T], what: str) -> None:
        self._future = future
        self._what = what

    async def result(self) -> T:
        """The job's result; a process that died is a LedgerError, not a traceback."""
        try:
            return await self._future
        except BrokenProcessPool as exc:
            raise LedgerError(f"the second process of the {self._what} stopped: {exc}") from exc


@contextlib.contextmanager
def in_second_process(
    what: str, reopen: StoreOpener, job: Callable[[EventStore], Awaitable[T]]
) -> Iterator[Apart[T]]:
    """Run ``job`` on the store, opened again in a spawned process (so ``job`` must pickle), while
    the block does this process's half of the work.

    Leaving the block waits for the process; if the block raised, the job's result is no longer
    wanted and is cancelled first.
    """
    with ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        future = asyncio.get_running_loop().run_in_executor(pool, _run_apart, reopen, job)
        try:
            yield Apart(future, what)
        except BaseException:
            future.cancel()
            raise


def _run_apart(reopen: StoreOpener, job: Callable[[EventStore], Awaitable[T]]) -> T:
    return asyncio.run(_with_store(reopen, job))


def _end_with_parent(parent: int) -> None:
    """End this second process once ``parent``, the process that started it, has gone (killed,
    say): it would otherwise wait for a job for ever, on a pipe whose ends it holds itself."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _with_store(reopen: StoreOpener, job: Callable[[EventStore], Awaitable[T]]) -> T:
    store = await reopen()
    try:
        with collector_paused():  # bulk work: millions of objects, no cycles
            return await job(store)
    finally:
        await store.close()


_STATE = msgspec.msgpack.Decoder(LedgerState)


@contextlib.asynccontextmanager
async def fold_in_two(
    store: EventStore, reopen: StoreOpener, progress: Progress | None = None
) -> AsyncIterator[Halves]:
    """Fold the log up to its head on two cores: a second process folds one half of the users
    while this one folds the other (``Halves.own``), each with every poll's events, and the two
    folds merge into one (``Halves.merged``). Between the two steps this process is free for
    other work while the second half comes in.

    The second fold comes back as msgpack, which costs a tenth of what pickling the state would.
    Neither half sees the other's positions, so the merge counts them: a missing event fails
    there, as it fails ``replay``.
    """
    total = (await store.head()).seq
    job = partial(_encoded_shard, upto=total, index=1)
    with in_second_process("fold", reopen, job) as theirs, collector_paused():
        yield Halves(store, total, theirs, progress)


@dataclass(frozen=True)
class Halves:
    """The two halves of a fold in two processes (``fold_in_two``)."""

    store: EventStore
    total: int
    theirs: Apart[bytes]
    progress: Progress | None

    async def own(self) -> LedgerState:
        """This process's half."""
        return await _fold_shard(self.store, self.total, 0, self.progress)

    async def merged(self, state: LedgerState) -> LedgerState:
        """``state`` (this process's half) with the second process's half added in, once it comes."""
        state.merge_shard(_STATE.decode(await self.theirs.result()))
        folded = sum(state.events_by_type.values())
        if folded != self.total:  # positions are unique and none is past the head: none is missing
            raise CorruptEventError(
                f"the log's head is at seq {self.total}, but {folded} events lie up to it: run the audit"
            )
        if self.progress:
            self.progress(self.total, self.total)
        return state


async def _encoded_shard(store: EventStore, upto: int, index: int) -> bytes:
    return msgspec.msgpack.encode(await _fold_shard(store, upto, index))


async def _fold_shard(
    store: EventStore, upto: int, index: int, progress: Progress | None = None
) -> LedgerState:
    state = LedgerState()
    async for rows in fold_reads(store).read_shard(index, 2, POLL_STREAMS, upto):
        state.fold_shard_rows(rows)
        if progress:
            progress(state.head_seq, upto)
    return state


def _outcome_read(check: asyncio.Future[None]) -> None:
    """Mark a finished check's error as seen: a reader that stopped waiting for it no longer will
    (the next check meets the same error again)."""
    if not check.cancelled():
        check.exception()


class VoteLedger:
    """Reads answer from ``state``; every command goes through the one group-commit writer."""

    def __init__(
        self, store: EventStore, state: LedgerState, clock: Callable[[], int], max_batch: int,
        tree: LogTree,
    ) -> None:
        self.store = store
        self.state = state
        self.tree = tree
        self.clock = clock
        self._checked = float("-inf")
        self._catching_up: asyncio.Future[None] | None = None
        self._probe: asyncio.Future[None] | None = None
        self._probed = float("-inf")
        self._unreachable = False
        self._stalled: asyncio.Future[None] | None = None  # a check that outlasted READ_WAIT
        self._check: asyncio.Future[None] | None = None  # the check the reads of the moment share
        self._behind = False  # the store said others appended, and no check has followed since
        self._writer: GroupCommitWriter[Command, Result, Pending] = GroupCommitWriter(
            store, Decider(state, clock), max_batch, tree
        )

    @classmethod
    async def open(
        cls, store: EventStore, signing: Signing, clock: Callable[[], int] = wall_clock_ms,
        max_batch: int = 512,
    ) -> VoteLedger:
        """Replay the log into memory, open its Merkle tree and start the writer."""
        await store.create_tables(TABLES)
        tree = await LogTree.open(store, signing)
        await store.changed()  # the baseline: whatever commits from here on is caught up later
        # the projections' position is read first: the log can only have grown since
        position = max((seq for _, seq, _ in await store.rows(POSITION)), default=0)
        state = await replay(store)
        if position > state.head_seq:
            raise CorruptEventError(
                f"the projections are at seq {position} but the log ends at {state.head_seq}: "
                "the log lost events; run the audit"
            )
        ledger = cls(store, state, clock, max_batch, tree)
        ledger._writer.start()
        return ledger

    def fresh(self, max_staleness: float) -> bool:
        """Whether the last check for other processes' appends is recent enough to skip ``refresh``
        (never while a check that found some is following the log: reads wait for it)."""
        if self._catching_up is not None or (self._check is not None and not self._check.done()):
            return False
        return time.monotonic() - self._checked < max_staleness

    async def refresh(self, max_staleness: float = 0.0) -> None:
        """Catch up with appends made by other processes (a cheap check when there are none).

        The log's head is compared first: the commits of this process's own writer are folded in
        by the writer itself, so they are not read back. With ``max_staleness`` the check is
        skipped when the last one is more recent than that (the service uses ``FRESHNESS``).
        """
        if await self._nothing_new(max_staleness):
            return
        await self._follow()

    async def refresh_or_stay(self, max_staleness: float) -> None:
        """``refresh``, but while the store cannot be read the state in memory answers: reads go
        on from the projections as they last were. An outage is logged once, when it begins.

        Whether anyone else appended is asked inline (``EventStore.changed`` waits on no I/O), so
        the usual check makes no task and waits for nothing. Past that, a store that does not
        answer at all (a server behind a network that drops packets) is waited for ``READ_WAIT``
        at most: the check goes on by itself, the state in memory answers, and until the check
        ends every read answers from memory without starting another. Reads that arrive while a
        check is under way wait for that one: one check serves every read of its moment.
        """
        stalled = self._stalled
        if stalled is not None:
            if not stalled.done():
                return
            self._stalled = None
        check = self._check
        if check is None or check.done():
            if await self._nothing_new(max_staleness):
                return
            check = self._check = asyncio.ensure_future(self._bounded_follow())
        await asyncio.shield(check)

    async def _nothing_new(self, max_staleness: float) -> bool:
        """Whether the state is known to be current: checked within ``max_staleness``, or the store
        says nobody else appended since the last check. Once it says they may have, the answer
        stays no until a check has followed the log to its head (one that failed is tried again,
        once ``max_staleness`` has passed)."""
        if self.fresh(max_staleness):
            return True
        if self._catching_up is not None:
            return False
        self._checked = time.monotonic()
        if not self._behind:
            self._behind = await self.store.changed()
        return not self._behind

    async def _follow(self) -> None:
        """Read the log's head and fold in what others appended up to it."""
        if self._catching_up is not None:  # another request is folding: its answer is ours
            await asyncio.shield(self._catching_up)
            return
        head = await self.store.head()
        if head.seq > self.state.head_seq and not self._writer.is_own(head):
            self._catching_up = asyncio.ensure_future(self._catch_up())
            try:
                await asyncio.shield(self._catching_up)
            finally:
                self._catching_up = None
        self._behind = False

    async def _bounded_follow(self) -> None:
        check = asyncio.ensure_future(self._follow())
        check.add_done_callback(_outcome_read)  # whether or not anyone is still waiting for it
        done, _ = await asyncio.wait((check,), timeout=READ_WAIT)
        if not done:  # it goes on; the next read after it ends starts a check of its own
            self._stalled = check
            self._unreachable_now(f"no answer in {READ_WAIT} s")
            return
        try:
            check.result()
        except StoreUnavailableError as exc:
            self._unreachable_now(str(exc))
            return
        if self._unreachable:
            log.warning("the ledger can be read again; answers are fresh again")
            self._unreachable = False

    def _unreachable_now(self, why: str) -> None:
        if not self._unreachable:
            log.warning("the ledger cannot be read (%s); answering from memory until it can", why)
        self._unreachable = True

    async def _catch_up(self) -> None:
        async for chunk in self.store.read(after=self.state.head_seq):
            self.state.catch_up(chunk)

    async def password_hash(self, user: User) -> str | None:
        """The user's password hash, read from the private data of their registration (a read by
        key: it costs the same on a log of any length)."""
        stream = user_stream(user.user_id)
        async for chunk in self.store.read_streams(stream, upto=user.seq):
            for event in chunk:
                if event.stream == stream and event.private_body is not None:
                    return PrivateFields.from_body(event.private_body).password_hash
        return None

    async def vote_seqs(self, user_id: str) -> list[int]:
        """The positions of every vote the user cast, in order (reads by key, one per poll)."""
        seqs: list[int] = []
        for poll_id in self.state.polls:
            if (poll_id, user_id) not in self.state.ballots:
                continue
            stream = ballot_stream(poll_id, user_id)
            async for chunk in self.store.read_streams(stream, upto=self.state.head_seq):
                seqs += [event.seq for event in chunk if event.stream == stream]
        return sorted(seqs)

    async def receipt(self, seq: int) -> Receipt:
        """The receipt of the event at ``seq``: the same answer every time it is asked."""
        return await self.tree.receipt(seq)

    async def receipt_json(self, seq: int) -> bytes:
        """``receipt(seq)`` as JSON, as the vote routes answer it."""
        return await self.tree.receipt_json(seq)

    async def inclusion(self, seq: int, size: int) -> Inclusion:
        """Proof that the event at ``seq`` is in the tree of ``size`` leaves (``seq <= size <=``
        the head)."""
        return await self.tree.inclusion(seq, size)

    async def consistency(self, old: int, new: int) -> list[bytes]:
        """Proof that the tree of ``new`` leaves extends the tree of ``old`` (``0 < old <= new``)."""
        return await self.tree.consistency(old, new)

    async def checkpoint(self, size: int | None = None) -> str | None:
        """The signed checkpoint of ``size`` leaves (None: the latest), if one was signed."""
        return await self.tree.checkpoint(size)

    def log_key(self) -> tuple[str, str]:
        """The origin the checkpoints name, and the note verifier key that checks them."""
        return self.tree.signer.origin, self.tree.signer.verifier_key

    async def execute(self, command: Command) -> Result:
        """Decide and durably commit one command; raises its DomainError if refused."""
        return await self._writer.submit(command)

    async def check_writable(self) -> None:
        """Commit a tiny write; raises StoreUnavailableError when the ledger cannot take one.

        A successful probe serves every caller for ``PROBE_REUSE`` seconds, and one in flight
        serves every caller arriving meanwhile, so health checks cannot crowd the writer out; after
        a failure the next call probes again, so recovery shows at once.
        """
        probe = self._probe
        if probe is None or (
            probe.done() and (probe.exception() is not None or time.monotonic() - self._probed > PROBE_REUSE)
        ):
            self._probed = time.monotonic()
            probe = self._probe = asyncio.ensure_future(self.store.probe())
        await asyncio.shield(probe)

    async def start_seal_worker(self) -> None:
        """Start the process that seals large batches (``ledger.sealing``), which gets ready in the
        background; a ledger that never starts it seals every batch itself."""
        await self.tree.start_worker()

    async def close(self) -> None:
        """Commit or refuse everything queued, then release the store."""
        await self._writer.close()
        await self.tree.close()
        await self.store.close()
