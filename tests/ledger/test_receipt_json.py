"""The receipt a vote is answered with comes as JSON from its batch's seal
(``LogTree.receipt_json``), which writes every receipt of the batch at the first ask: byte for
byte what msgspec writes of the same ``Receipt``, for every event of batches of many sizes after
trees of many sizes; and from the store once the batch is no longer recent."""

from __future__ import annotations

import random

import msgspec
import pytest

from ledger.memory import MemoryEventStore
from ledger.merkle import Frontier
from ledger.store import Head, StoredEvent
from ledger.tree import RECENT_SEALS, LogTree, TreeError
from ledger.verify import leaf_hash
from tests.ledger.signed_log import signer

# stored bodies are canonical JSON: quotes, backslashes and text beyond ASCII are what a JSON
# string of them has to escape or keep
BODIES = [
    b'{"candidate_id":2,"poll_id":"frontend-leader","user_id":"u_01"}',
    '{"name":"김민준 — \\"Min\\"","path":"C:\\\\votes","note":"\u00e9\u2028"}'.encode(),
    b'{}',
]


def events(after: int, count: int, rng: random.Random) -> list[StoredEvent]:
    return [
        StoredEvent(seq, f"e{seq}", "VoteCast", f"s{seq}", 1, rng.choice(BODIES), bytes(32), bytes(32))
        for seq in range(after + 1, after + count + 1)
    ]


async def test_a_receipt_written_from_its_seal_is_what_msgspec_writes_of_it() -> None:
    rng = random.Random(8785)
    store = MemoryEventStore.open(create=True)
    for before in (0, 1, 2, 3, 5, 7, 8, 13, 63, 64, 100, 255, 1000):
        start, _ = Frontier.EMPTY.extend([leaf_hash(rng.randbytes(8)) for _ in range(before)])
        tree = LogTree(store, signer(), start)
        size = before
        for count in (1, 2, 3, 8, 31, 40):
            batch = events(size, count, rng)
            seal = await tree.seal(Head(size, bytes(32)), batch)
            tree.sealed(seal)
            assert "receipts_json" not in vars(seal)  # nothing written before it is asked for
            await tree.receipt_json(batch[-1].seq)
            assert len(vars(seal)["receipts_json"]) == count  # the whole batch at the first ask
            for event in batch:
                written = await tree.receipt_json(event.seq)
                assert written == msgspec.json.encode(seal.receipt(event.seq)), (before, count, event.seq)
                assert written == msgspec.json.encode(await tree.receipt(event.seq))
            size += count


async def test_a_receipt_of_a_batch_no_longer_recent_is_read_from_the_store() -> None:
    store = MemoryEventStore.open(create=True)
    tree = LogTree(store, signer(), Frontier.EMPTY)
    seal = await tree.seal(Head(0, bytes(32)), events(0, 1, random.Random(1)))
    tree.sealed(seal)
    written = await tree.receipt_json(1)
    for count in range(RECENT_SEALS):  # sealed but never stored: the first batch is forgotten
        tree.sealed(await tree.seal(Head(count + 1, bytes(32)), events(count + 1, 1, random.Random(2))))
    with pytest.raises(TreeError, match="no checkpoint covers seq 1"):  # so the store was asked
        await tree.receipt_json(1)
    assert written == msgspec.json.encode(seal.receipt(1))
