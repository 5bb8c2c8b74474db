"""The seal worker (``ledger.sealing``): a real process that seals large batches exactly as the
server would, started by ``start`` (``serve`` calls it), and replaced, never waited on, when it
dies or hangs (the server then seals the batch itself)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import sealing
from ledger.memory import MemoryEventStore
from ledger.merkle import Frontier
from ledger.sealing import OFFLOAD_FROM, OFFLOAD_UPTO, SealWorker
from ledger.store import Head
from ledger.tree import LogTree, seal_batch
from ledger.verify import leaf_hash
from tests.ledger.signed_log import SEED, signer
from tests.ledger.test_receipt_json import events


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive: killed, not yet reaped
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
async def worker() -> AsyncIterator[SealWorker]:
    started = SealWorker(signer(), Ed25519PrivateKey.from_private_bytes(SEED), answer_within=1.0)
    yield started
    await started.close()


async def started(worker: SealWorker) -> int:
    """Start the worker and wait until it runs; its pid."""
    await worker.start()
    return await running(worker)


async def running(worker: SealWorker) -> int:
    """Wait until a worker runs (a started one that failed is started again at the next large
    batch); its pid."""
    for _ in range(500):
        if worker.pid is not None:
            return worker.pid
        await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(0)))
        await asyncio.sleep(0.01)
    raise AssertionError("the seal worker did not start within 5 s")


async def test_the_worker_seals_a_batch_exactly_as_the_server_does(worker: SealWorker) -> None:
    rng = random.Random(9162)
    await started(worker)
    for before in (0, 1, 7, 64, 1000):
        start, _ = Frontier.EMPTY.extend([leaf_hash(rng.randbytes(8)) for _ in range(before)])
        for count in (OFFLOAD_FROM, OFFLOAD_FROM + 1, 40):
            batch = events(before, count, rng)
            sealed = await worker.seal(start, batch)
            assert sealed is not None
            parts, written = sealed
            here = seal_batch(signer(), start, batch)
            assert parts == (here.after.size, here.after.hashes, here.rows, here.note)
            assert await written == here.receipts_json


async def test_start_waits_until_the_worker_is_ready(worker: SealWorker) -> None:
    await worker.start()
    assert worker.pid is not None and alive(worker.pid)
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(7))) is not None


async def test_start_without_ready_returns_before_the_worker_is_ready(worker: SealWorker) -> None:
    await worker.start(ready=False)
    assert worker.pid is None  # its process exists, still importing: batches are sealed here
    for _ in range(500):
        if worker.pid is not None:
            break
        await asyncio.sleep(0.01)
    assert worker.pid is not None and alive(worker.pid)


async def test_a_worker_never_started_seals_nothing_and_none_starts(worker: SealWorker) -> None:
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(1))) is None
    await asyncio.sleep(0.2)
    assert worker.pid is None


async def test_a_small_batch_is_sealed_in_the_server(worker: SealWorker) -> None:
    await worker.start()
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM - 1, random.Random(1))) is None


async def test_a_bulk_batch_is_sealed_in_the_server(worker: SealWorker) -> None:
    await started(worker)
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_UPTO, random.Random(9))) is not None
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_UPTO + 1, random.Random(9))) is None


async def test_a_killed_worker_is_replaced_and_its_batch_sealed_in_the_server(
    worker: SealWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealing, "RESTART_AFTER", 0.0)
    first = await started(worker)
    os.kill(first, signal.SIGKILL)

    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(2))) is None
    second = await running(worker)

    assert second != first
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(3))) is not None


async def test_a_hung_worker_is_killed_at_its_deadline_and_the_batch_sealed_in_the_server(
    worker: SealWorker,
) -> None:
    pid = await started(worker)
    os.kill(pid, signal.SIGSTOP)
    loop = asyncio.get_running_loop()
    began = loop.time()

    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(4))) is None

    assert 0.9 < loop.time() - began < 3.0
    await asyncio.sleep(0.2)
    assert not alive(pid) and worker.pid is None


async def test_closing_ends_the_worker(worker: SealWorker) -> None:
    pid = await started(worker)
    await worker.close()
    assert not alive(pid)
    assert await worker.seal(Frontier.EMPTY, events(0, OFFLOAD_FROM, random.Random(5))) is None
    await asyncio.sleep(0.2)
    assert worker.pid is None  # a closed worker starts no other


async def test_a_tree_with_a_worker_gives_the_same_receipts_as_one_without(worker: SealWorker) -> None:
    rng = random.Random(6962)
    await started(worker)
    by_worker = LogTree(MemoryEventStore.open(create=True), signer(), Frontier.EMPTY, worker)
    by_server = LogTree(MemoryEventStore.open(create=True), signer(), Frontier.EMPTY)
    size = 0
    for count in (OFFLOAD_FROM, 1, 33, OFFLOAD_FROM - 1, 64):
        batch = events(size, count, rng)
        sealed = [await tree.seal(Head(size, bytes(32)), batch) for tree in (by_worker, by_server)]
        for tree, seal in zip((by_worker, by_server), sealed, strict=True):
            tree.sealed(seal)
        assert (sealed[0].written is not None) == (count >= OFFLOAD_FROM)  # the worker's receipts
        assert sealed[0].writes == sealed[1].writes
        for event in batch:
            written = await by_worker.receipt_json(event.seq)
            assert written == await by_server.receipt_json(event.seq)
            assert written == msgspec.json.encode(sealed[0].receipt(event.seq))
        size += count


async def test_receipts_the_worker_did_not_write_before_it_died_are_written_in_the_server(
    worker: SealWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealing, "OFFLOAD_UPTO", 10_000)
    pid = await started(worker)
    tree = LogTree(MemoryEventStore.open(create=True), signer(), Frontier.EMPTY, worker)
    batch = events(0, 5000, random.Random(8))  # its receipts take the worker a while to write

    seal = await tree.seal(Head(0, bytes(32)), batch)
    os.kill(pid, signal.SIGKILL)  # it has sent the seal, not yet the receipts
    tree.sealed(seal)

    assert seal.written is not None
    with pytest.raises(asyncio.IncompleteReadError):  # its output ended
        await seal.written
    for event in (batch[0], batch[2500], batch[-1]):
        assert await tree.receipt_json(event.seq) == msgspec.json.encode(seal.receipt(event.seq))
