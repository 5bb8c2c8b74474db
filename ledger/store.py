"""The store interface: what every backend provides, in events and typed rows.

A store keeps the log, the private data beside it, and the projection tables written in the same
transaction as the events. Nothing above this interface sees a driver or a statement: backends own
their queries, and ``ledger.open.open_store`` chooses one from a URL.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:  # the batch writer process imports this module and must stay small
    from ledger.tables import Row, TableSpec, TableWrites

GENESIS_HASH = bytes(32)
"""The hash before the first event."""
EMPTY_WRITES: TableWrites = MappingProxyType({})
"""No projection rows."""


class PrivateData(NamedTuple):
    """Personal data kept beside the log: the salt and canonical bytes its commitment covers."""

    salt: bytes
    body: bytes


class NewEvent(NamedTuple):
    """An event ready to append: its id, stream, stream version and canonical body."""

    event_id: str
    type: str
    stream: str
    version: int
    body: bytes
    private: PrivateData | None = None


class StoredEvent(NamedTuple):
    """A row of the log, with its private data where that still exists.

    A named tuple whose fields are the columns as read, so that a replay turns each row it reads
    into one with a single call in C (``from_rows``), not a call of Python code per row.
    """

    seq: int
    event_id: str
    type: str
    stream: str
    version: int
    body: bytes
    prev_hash: bytes
    hash: bytes
    private_salt: bytes | None = None
    private_body: bytes | None = None

    @property
    def private(self) -> PrivateData | None:
        """The private data kept beside the event, if any."""
        if self.private_salt is None or self.private_body is None:
            return None
        return PrivateData(self.private_salt, self.private_body)

    @classmethod
    def from_rows(cls, rows: Iterable[Row]) -> list[StoredEvent]:
        """Rows of exactly these columns, in this order, as events."""
        return list(map(partial(tuple.__new__, cls), rows))


class Head(NamedTuple):
    """The last position of the log and its hash (``seq`` 0 and 32 zero bytes when empty)."""

    seq: int
    hash: bytes


BodyRow = tuple[int, bytes, bytes, bytes | None]
"""An event as a fold reads it: ``(seq, body, hash, private body or None)``."""
ShardRow = tuple[int, bytes, bytes, bytes | None, str]
"""An event as a fold of one shard reads it: a ``BodyRow`` and the event's stream."""


class TableRewrite(abc.ABC):
    """An exclusive transaction that replaces projection tables: nobody appends until it ends.

    Replaced tables take their new rows all at once, when the block exits cleanly."""

    head: Head
    """The head of the log inside this transaction."""

    @abc.abstractmethod
    async def read_after(self, seq: int) -> list[StoredEvent]:
        """Events committed after ``seq`` (by any writer), in order."""

    @abc.abstractmethod
    async def rows(self, spec: TableSpec) -> list[Row]:
        """The table's rows as this transaction sees them, in key order."""

    @abc.abstractmethod
    async def misshapen(self, specs: Sequence[TableSpec]) -> set[str]:
        """The names of the tables not laid out as their specs say (another column, a missing
        constraint, an index or trigger of someone else's): replacing them lays them out anew."""

    @abc.abstractmethod
    async def replace(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        """Build the table afresh, as its spec lays it out, holding exactly ``rows``."""


class EventStore(abc.ABC):
    """An append-only, hash-chained event log, and the projection tables written with it.

    Every backend keeps this contract (``tests/ledger/contract.py`` runs on each). How a backend
    reads fast, batches, or spreads work over processes is its own business: a backend may also
    offer ``FoldReads``, and ``fold_reads`` gives every store that shape.
    """

    @abc.abstractmethod
    async def head(self) -> Head:
        """The current head of the log."""

    @abc.abstractmethod
    def read(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        """Events with ``after < seq <= upto`` in order, in chunks."""

    @abc.abstractmethod
    def read_streams(self, prefix: str, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        """The events of every stream whose name starts with ``prefix`` (up to ``upto``), in
        order, in chunks: a read by key, whose cost does not grow with the rest of the log."""

    @abc.abstractmethod
    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        """Append ``events`` (made by ``chain(head, ...)``) and write the projection rows, in one
        durable transaction, if the log still ends at ``head``. Returns ``[]`` when committed;
        otherwise appends nothing and returns the events others appended after ``head``.

        ``erase`` names streams whose events' private data is destroyed in that same transaction
        (an erasure): gone from every file of the backend, as far as it can reach, once this
        returns. The events themselves stay.

        A taken stream version or event id, or a row that breaks its table's constraints, is a
        ConcurrencyError, and nothing of the batch is written. A ``head`` the log never had (past
        its end, or on another history) is a CorruptEventError."""

    @abc.abstractmethod
    async def probe(self) -> None:
        """Durably commit a tiny write beside the log; StoreUnavailableError if that fails."""

    @abc.abstractmethod
    async def changed(self) -> bool:
        """Whether anyone may have committed since the last call: answered from what the backend
        already knows, never waiting on I/O (the service asks it inline before its reads)."""

    @abc.abstractmethod
    async def create_tables(self, specs: Sequence[TableSpec]) -> None:
        """Create the projection tables that do not exist yet (existing ones are left alone)."""

    @abc.abstractmethod
    async def rows(self, spec: TableSpec) -> list[Row]:
        """Every row of a projection table, in key order."""

    @abc.abstractmethod
    async def lookup(self, spec: TableSpec, keys: Sequence[Row]) -> list[Row]:
        """The rows of a table with any of these keys (those that exist), in key order: a read by
        key, whose cost does not grow with the table."""

    @abc.abstractmethod
    async def seek(self, spec: TableSpec, key: Row, before: bool = False) -> Row | None:
        """The first row of a table whose key is at or after ``key`` in key order (``before``: the
        last at or before it), or None: a read by key."""

    @abc.abstractmethod
    def rewrite_tables(self) -> AbstractAsyncContextManager[TableRewrite]:
        """An exclusive transaction to replace projection tables (the rebuild)."""

    @abc.abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[Head]:
        """Within this block, every read of this store (the log, the tables, ``FoldReads``) sees
        the store as of one moment, whose head it gives. Nothing is written from it meanwhile."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connections."""


@runtime_checkable
class FoldReads(Protocol):
    """Bulk reads for folding a whole log, which a backend may offer in a faster form.

    They may hold up the event loop while they read (the backends that offer them read in the
    caller's thread): for a replay before serving, the audit, the tools."""

    def read_all(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        """``EventStore.read``, as fast as the backend reads."""

    def read_bodies(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[BodyRow]]:
        """What a fold needs of each event with ``after < seq <= upto``, in order, in chunks."""

    def read_shard(
        self, index: int, count: int, shared: str, upto: int | None = None
    ) -> AsyncIterator[list[ShardRow]]:
        """``read_bodies(upto=upto)`` for shard ``index`` of ``count``, each row with its stream,
        so that ``count`` processes can each fold a part of the log.

        Every shard holds the events of the streams whose names start with ``shared``; each other
        event is in exactly one shard, ``shard_of(stream, count)``."""


def shard_of(stream: str, count: int) -> int:
    """The shard of an event outside the shared streams: the code point of its stream's last
    character (0 for an empty name) modulo ``count``, so a user's streams stay in one shard."""
    return (ord(stream[-1]) if stream else 0) % count


def fold_reads(store: EventStore) -> FoldReads:
    """The store's own ``FoldReads`` where it has them, else the same reads made of ``read``."""
    return store if isinstance(store, FoldReads) else _PlainFoldReads(store)


class _PlainFoldReads:
    """``FoldReads`` for a backend with no faster form of them."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def read_all(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        return self._store.read(after, upto)

    async def read_bodies(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[BodyRow]]:
        async for chunk in self._store.read(after, upto):
            yield [(e.seq, e.body, e.hash, e.private_body) for e in chunk]

    async def read_shard(
        self, index: int, count: int, shared: str, upto: int | None = None
    ) -> AsyncIterator[list[ShardRow]]:
        if not 0 <= index < count:
            raise ValueError(f"no shard {index} of {count}")
        async for chunk in self._store.read(0, upto):
            yield [
                (e.seq, e.body, e.hash, e.private_body, e.stream) for e in chunk
                if e.stream.startswith(shared) or shard_of(e.stream, count) == index
            ]
