"""The store interface: what every backend (SQLite now, PostgreSQL later) provides.

A store keeps the ``events`` table, the private-data table beside it, and runs the write
transactions in which projections are updated inline. Nothing above this interface sees a driver.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, NamedTuple

GENESIS_HASH = bytes(32)
"""The hash before the first event."""


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


Row = tuple[Any, ...]
BodyRow = tuple[int, bytes, bytes, bytes | None]
"""An event as a fold reads it: ``(seq, body, hash, private body or None)``."""
ShardRow = tuple[int, bytes, bytes, bytes | None, str]
"""An event as a fold of one shard reads it: a ``BodyRow`` and the row's stream column."""
Statement = tuple[str, Sequence[Row]]  # SQL with ``?`` placeholders, run once per row


class WriteTransaction(abc.ABC):
    """One exclusive write transaction: nobody else appends until it commits or rolls back."""

    head: Head
    """The head of the log inside this transaction (moves with each append)."""

    @abc.abstractmethod
    async def read_after(self, seq: int) -> list[StoredEvent]:
        """Events committed after ``seq`` (by any writer), in order."""

    @abc.abstractmethod
    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Append after the current head, chaining hashes; raises ConcurrencyError on conflict."""

    @abc.abstractmethod
    async def execute_many(self, sql: str, rows: Sequence[Row]) -> None:
        """Run a projection statement (``?`` placeholders) once per row, in this transaction."""

    @abc.abstractmethod
    async def execute_script(self, sql: str) -> None:
        """Run projection DDL (shadow tables, swaps) inside this transaction."""

    @abc.abstractmethod
    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Read projection rows as this transaction sees them."""


class EventStore(abc.ABC):
    """An append-only, hash-chained event log."""

    @abc.abstractmethod
    async def head(self) -> Head:
        """The current head of the log."""

    @abc.abstractmethod
    def read(
        self, after: int = 0, upto: int | None = None, stream_prefix: str | None = None,
        *, inline: bool = False,
    ) -> AsyncIterator[list[StoredEvent]]:
        """Events with ``after < seq <= upto`` in order, in chunks; optionally one stream prefix.

        ``inline`` reads each chunk in the caller's thread, holding up the event loop while it
        does: for bulk reads with nothing else to serve (a replay before serving, the audit, the
        tools), which it makes faster. Only inline reads see a ``snapshot``.
        """

    @abc.abstractmethod
    def read_bodies(
        self, after: int = 0, upto: int | None = None, *, inline: bool = False
    ) -> AsyncIterator[list[BodyRow]]:
        """What a fold of the log needs of each event with ``after < seq <= upto``, in order, in
        chunks: its seq, body, hash and private body. The other columns repeat what the body says
        (the audit checks that they do), and a replay reads a million rows faster without them.
        ``inline`` as for ``read``."""

    @abc.abstractmethod
    def read_shard(
        self, index: int, count: int, shared: str, upto: int | None = None
    ) -> AsyncIterator[list[ShardRow]]:
        """``read_bodies(upto=upto, inline=True)`` for shard ``index`` of ``count``, each row with
        its stream column, so that ``count`` processes can each fold a part of the log.

        Every shard holds the rows of the streams whose names start with ``shared``; each other
        row is in exactly one shard: the code point of its stream's last character (0 for an
        empty name) modulo ``count``. Streams ending with the same character are in one shard.
        """

    @abc.abstractmethod
    async def commit_batch(
        self, head: Head, events: Sequence[StoredEvent], statements: Sequence[Statement]
    ) -> list[StoredEvent]:
        """Append ``events`` (made by ``chain(head, ...)``) and run ``statements``, in one durable
        transaction, if the log still ends at ``head``. Returns ``[]`` when committed; otherwise
        appends nothing and returns the events others appended after ``head``, to catch up with.
        """

    @abc.abstractmethod
    async def probe(self) -> None:
        """Durably commit a tiny write beside the log; StoreUnavailableError if that fails."""

    @abc.abstractmethod
    def write(self) -> AbstractAsyncContextManager[WriteTransaction]:
        """An exclusive write transaction, committed durably when the block exits cleanly."""

    @abc.abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[Head]:
        """Within this block, inline reads (``read``, ``read_bodies`` and ``fetch_all`` with
        ``inline=True``) all see the store as of one moment, whose head it gives."""

    @abc.abstractmethod
    async def changed(self) -> bool:
        """Whether anyone may have committed since the last call (cheap; used to catch up)."""

    @abc.abstractmethod
    async def execute_script(self, sql: str) -> None:
        """Create projection tables and indexes (idempotent DDL)."""

    @abc.abstractmethod
    async def fetch_all(
        self, sql: str, params: Sequence[Any] = (), *, inline: bool = False
    ) -> list[Row]:
        """Read rows from the projection tables (``inline`` as for ``read``)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connections."""
