"""The in-memory backend: the whole store contract in this process's memory, nothing on disk.

For tests whose point is the rules or the HTTP shapes, and for demos (``--db memory:``). It keeps
every promise of the contract but durability: the ledger ends with the process. ``memory:NAME``
names a ledger that every store this process opens on that name shares, as processes share a file.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from ledger.errors import ConcurrencyError, CorruptEventError, NotALedgerError, StoreUnavailableError
from ledger.store import (
    EMPTY_WRITES,
    GENESIS_HASH,
    EventStore,
    Head,
    StoredEvent,
    TableRewrite,
)
from ledger.tables import Row, TableSpec, TableWrites

READ_CHUNK = 4096
Undo = Callable[[], None]


@dataclass
class _Table:
    """A projection table: rows by key, and an index of each other uniqueness constraint."""

    spec: TableSpec
    rows: dict[Row, Row] = field(default_factory=dict)
    indexes: dict[tuple[int, ...], dict[Row, Row]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.spec.names
        for group in self.spec.uniques[1:]:
            self.indexes[tuple(names.index(n) for n in group)] = {}

    def write(self, row: Row, undo: list[Undo]) -> None:
        """Insert or replace ``row``, recording how to take it back; ConcurrencyError if it may not."""
        spec = self.spec
        problem = spec.check(row)
        if problem is not None:
            raise ConcurrencyError(problem)
        key = spec.key_of(row)
        old = self.rows.get(key)
        if old is not None and not spec.replace:
            raise ConcurrencyError(f"{spec.name}: key {key!r} is taken")
        for positions, index in self.indexes.items():
            values = tuple(row[i] for i in positions)
            if None not in values and index.get(values, key) != key:
                raise ConcurrencyError(f"{spec.name}: {values!r} is taken")
        if old is not None:
            self._unindex(old)
        self.rows[key] = row
        self._index(row)

        def take_back() -> None:
            self._unindex(row)
            if old is None:
                del self.rows[key]
            else:
                self.rows[key] = old
                self._index(old)

        undo.append(take_back)

    def _index(self, row: Row) -> None:
        for positions, index in self.indexes.items():
            values = tuple(row[i] for i in positions)
            if None not in values:
                index[values] = self.spec.key_of(row)

    def _unindex(self, row: Row) -> None:
        for positions, index in self.indexes.items():
            index.pop(tuple(row[i] for i in positions), None)

    def sorted_rows(self) -> list[Row]:
        return [row for _, row in sorted(self.rows.items())]


@dataclass
class _Log:
    """One in-memory ledger: the events, their indexes, the tables, and a lock for exclusive work."""

    events: list[StoredEvent] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    versions: set[tuple[str, int]] = field(default_factory=set)
    streams: dict[str, list[int]] = field(default_factory=dict)  # stream -> its events' seqs
    names: list[str] = field(default_factory=list)  # the streams' names, sorted
    tables: dict[str, _Table] = field(default_factory=dict)
    commits: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def head(self) -> Head:
        last = self.events[-1] if self.events else None
        return Head(last.seq, last.hash) if last else Head(0, GENESIS_HASH)

    def add(self, events: Sequence[StoredEvent]) -> None:
        """Append events already checked against the head and each other."""
        for event in events:
            self.events.append(event)
            self.ids.add(event.event_id)
            self.versions.add((event.stream, event.version))
            seqs = self.streams.get(event.stream)
            if seqs is None:
                seqs = self.streams[event.stream] = []
                bisect.insort(self.names, event.stream)
            seqs.append(event.seq)

    def erase(self, streams: Sequence[str]) -> None:
        """Drop the private data of every event of ``streams``."""
        for stream in streams:
            for seq in self.streams.get(stream, ()):
                event = self.events[seq - 1]
                if event.private_salt is not None or event.private_body is not None:
                    self.events[seq - 1] = event._replace(private_salt=None, private_body=None)


_LEDGERS: dict[str, _Log] = {}
"""The named in-memory ledgers of this process (``memory:NAME``)."""


class MemoryEventStore(EventStore):
    """A store on one in-memory ledger."""

    def __init__(self, log: _Log, label: str, readonly: bool) -> None:
        self._log = log
        self._label = label
        self._readonly = readonly
        self._seen = -1
        self._closed = False

    @classmethod
    def open(cls, name: str = "", *, create: bool = False, readonly: bool = False) -> MemoryEventStore:
        """A store on the ledger called ``name`` (an empty name: a new ledger of its own)."""
        label = f"memory:{name}"
        log = _LEDGERS.get(name) if name else None
        if log is None:
            if not create:
                raise NotALedgerError(f"{label}: no ledger in memory by that name")
            log = _Log()
            if name:
                _LEDGERS[name] = log
        return cls(log, label, readonly)

    @staticmethod
    def forget(name: str) -> None:
        """Drop a named ledger from this process (a test's tidy-up)."""
        _LEDGERS.pop(name, None)

    def _usable(self, writing: bool = False) -> _Log:
        if self._closed:
            raise StoreUnavailableError(f"{self._label} is closed")
        if writing and self._readonly:
            raise StoreUnavailableError(f"{self._label} is open read-only")
        return self._log

    async def head(self) -> Head:
        return self._usable().head

    async def read(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        log = self._usable()
        end = len(log.events) if upto is None else max(after, min(upto, len(log.events)))
        for start in range(max(after, 0), end, READ_CHUNK):
            yield log.events[start : min(start + READ_CHUNK, end)]

    async def read_streams(self, prefix: str, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        log = self._usable()
        names = itertools.takewhile(
            lambda name: name.startswith(prefix),
            itertools.islice(log.names, bisect.bisect_left(log.names, prefix), None),
        )
        seqs = sorted(s for name in names for s in log.streams[name])
        if upto is not None:
            seqs = seqs[: bisect.bisect_right(seqs, upto)]
        for start in range(0, len(seqs), READ_CHUNK):
            yield [log.events[s - 1] for s in seqs[start : start + READ_CHUNK]]

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        log = self._usable(writing=True)
        async with log.lock:  # not during a snapshot or a rewrite
            current = log.head
            if current != head:
                if head.seq > current.seq or (head.seq and log.events[head.seq - 1].hash != head.hash) or (
                    not head.seq and head.hash != GENESIS_HASH
                ):
                    raise CorruptEventError(
                        f"the log ends at seq {current.seq} and does not hold the head this batch was "
                        f"decided at (seq {head.seq}): the log lost events; run the audit"
                    )
                return log.events[head.seq :]
            _check_events(log, head, events)
            undo: list[Undo] = []
            try:
                for spec, rows in writes.items():
                    table = log.tables.get(spec.name)
                    if table is None:
                        raise StoreUnavailableError(f"{self._label}: no table {spec.name}")
                    for row in rows:
                        table.write(tuple(row), undo)
            except BaseException:
                for take_back in reversed(undo):
                    take_back()
                raise
            log.add(events)
            log.erase(erase)
            log.commits += 1
            return []

    async def probe(self) -> None:
        self._usable(writing=True)

    async def changed(self) -> bool:
        commits = self._usable().commits
        changed, self._seen = commits != self._seen, commits
        return changed

    async def create_tables(self, specs: Sequence[TableSpec]) -> None:
        log = self._usable(writing=True)
        for spec in specs:
            if spec.name not in log.tables:
                log.tables[spec.name] = _Table(spec)

    async def rows(self, spec: TableSpec) -> list[Row]:
        table = self._usable().tables.get(spec.name)
        return [] if table is None else table.sorted_rows()

    async def lookup(self, spec: TableSpec, keys: Sequence[Row]) -> list[Row]:
        table = self._usable().tables.get(spec.name)
        if table is None:
            return []
        return sorted(row for row in map(table.rows.get, set(map(tuple, keys))) if row is not None)

    async def seek(self, spec: TableSpec, key: Row, before: bool = False) -> Row | None:
        table = self._usable().tables.get(spec.name)
        wanted = tuple(key)
        keys = [k for k in table.rows if (k <= wanted if before else k >= wanted)] if table else []
        return table.rows[max(keys) if before else min(keys)] if table and keys else None

    @asynccontextmanager
    async def rewrite_tables(self) -> AsyncIterator[TableRewrite]:
        log = self._usable(writing=True)
        async with log.lock:
            rewrite = _MemoryRewrite(log)
            yield rewrite
            log.tables.update(rewrite.replaced)
            log.commits += 1

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Head]:
        log = self._usable()
        async with log.lock:
            yield log.head

    async def close(self) -> None:
        self._closed = True


def _check_events(log: _Log, head: Head, events: Sequence[StoredEvent]) -> None:
    """ConcurrencyError for a taken id or stream version; CorruptEventError for a broken chain."""
    seq, prev = head
    ids: set[str] = set()
    versions: set[tuple[str, int]] = set()
    for event in events:
        seq += 1
        if event.seq != seq or event.prev_hash != prev:
            raise CorruptEventError(f"event {event.seq} does not extend the chain at its head")
        prev = event.hash
        version = (event.stream, event.version)
        if event.event_id in log.ids or event.event_id in ids:
            raise ConcurrencyError(f"event id {event.event_id} is taken")
        if version in log.versions or version in versions:
            raise ConcurrencyError(f"version {event.version} of stream {event.stream} is taken")
        ids.add(event.event_id)
        versions.add(version)


class _MemoryRewrite(TableRewrite):
    def __init__(self, log: _Log) -> None:
        self._log = log
        self.head = log.head
        self.replaced: dict[str, _Table] = {}

    async def read_after(self, seq: int) -> list[StoredEvent]:
        return self._log.events[seq:]

    async def rows(self, spec: TableSpec) -> list[Row]:
        table = self.replaced.get(spec.name) or self._log.tables.get(spec.name)
        return [] if table is None else table.sorted_rows()

    async def misshapen(self, specs: Sequence[TableSpec]) -> set[str]:
        tables = {**self._log.tables, **self.replaced}
        return {s.name for s in specs if s.name not in tables or tables[s.name].spec != s}

    async def replace(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        table, undo = _Table(spec), list[Undo]()
        for row in rows:
            table.write(tuple(row), undo)
        self.replaced[spec.name] = table
