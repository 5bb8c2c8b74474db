"""Copying a whole log from one store to another, every link of its chain checked on the way.

Only the store contract is used, so any backend copies to any other. The source is read in one
snapshot, twice: once to check the whole chain, so that a broken one leaves the destination as it
was, and once to append, checking again. The private data travels with each event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ledger.chain import link
from ledger.errors import CorruptEventError, LedgerError
from ledger.store import GENESIS_HASH, EventStore, Head, StoredEvent

COPY_BATCH = 4096
"""Events appended to the destination in one transaction."""


class DestinationNotEmptyError(LedgerError):
    """The destination of a copy already holds events."""


async def copy_log(
    source: EventStore, destination: EventStore, progress: Callable[[int, int], None] | None = None,
    batch: int = COPY_BATCH,
) -> Head:
    """Append every event of ``source`` to the empty ``destination``; the head copied.

    CorruptEventError, naming the seq, where the source's chain breaks (a seq out of place, a
    ``prev_hash`` that is not the hash before it, a hash that does not recompute from its body):
    nothing is then appended. DestinationNotEmptyError if the destination holds any event."""
    held = (await destination.head()).seq
    if held:
        raise DestinationNotEmptyError(
            f"the destination already holds events (seq 1 to {held}); a copy goes into an empty ledger"
        )
    async with source.snapshot() as head:
        async for _ in _checked(source, head):
            pass
        at, pending = Head(0, GENESIS_HASH), list[StoredEvent]()
        async for chunk in _checked(source, head):
            pending += chunk
            while len(pending) >= batch or (pending and at.seq + len(pending) == head.seq):
                at = await _append(destination, at, pending[:batch])
                del pending[:batch]
                if progress is not None:
                    progress(at.seq, head.seq)
    return at


async def _checked(source: EventStore, head: Head) -> AsyncIterator[list[StoredEvent]]:
    """The source's events up to ``head``, in chunks, each checked against the chain before it."""
    seq, prev = 0, GENESIS_HASH
    async for chunk in source.read(upto=head.seq):
        for event in chunk:
            seq += 1
            if event.seq != seq:
                raise _broken(seq, f"it is missing (the next event is seq {event.seq})")
            if event.prev_hash != prev:
                raise _broken(seq, "its prev_hash is not the hash of the event before")
            if link(prev, event.body) != event.hash:
                raise _broken(seq, "its hash does not recompute from prev_hash and body")
            prev = event.hash
        yield chunk
    if seq != head.seq:
        raise _broken(seq + 1, f"it is missing (the head is seq {head.seq})")
    if prev != head.hash:
        raise _broken(seq, "its hash is not the head's")


def _broken(seq: int, why: str) -> CorruptEventError:
    return CorruptEventError(f"the source's hash chain breaks at seq {seq}: {why}")


async def _append(destination: EventStore, at: Head, events: list[StoredEvent]) -> Head:
    """Append ``events`` after ``at``; the new head. LedgerError if anyone else appended."""
    others = await destination.append(at, events)
    if others:
        raise LedgerError(f"seq {others[0].seq}: another writer appended to the destination during the copy")
    return Head(events[-1].seq, events[-1].hash)
