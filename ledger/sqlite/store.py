"""The SQLite store: the ledger in one file, read through connections of this process, written
through the batch writer process (``client``) and, for a rebuild's tables, a thread of this one.

Triggers abort any UPDATE or DELETE on ``events`` and any insert that is not the next link of the
chain. They are defence in depth only; the hash chain and the audit are what make tampering evident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from ledger.errors import LedgerError, NotALedgerError, StoreUnavailableError
from ledger.sqlite.client import BATCH_WRITER_ATTEMPTS, BatchWriter, BatchWriterGone, BatchWriterHung
from ledger.sqlite.schema import (
    check_or_create,
    check_or_create_patiently,
    create_table,
    lookup_sql,
    seek_sql,
    shape_matches,
    write_statement,
)
from ledger.sqlite.steps import SELECT_EVENTS, Connection, Statement, head_of, translate, writer_connection
from ledger.store import (
    EMPTY_WRITES,
    BodyRow,
    EventStore,
    Head,
    ShardRow,
    StoredEvent,
    TableRewrite,
)
from ledger.tables import Row, TableSpec, TableWrites

T = TypeVar("T")
log = logging.getLogger(__name__)

READ_CHUNK = 4096
LOOKUP_KEYS = 256  # keys a lookup asks for in one query
CHECKPOINT_INTERVAL = 0.5  # seconds between passive WAL checkpoints
SHADOW = "__rebuild"  # a rebuilt table's name until it is swapped in

_SELECT_BODIES = (
    "SELECT e.seq, e.body, e.hash, p.body FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)
_SELECT_SHARD = (
    "SELECT e.seq, e.body, e.hash, p.body, e.stream"
    " FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)
# A range of the (stream, version) index, a chunk at a time in its order: the unary + keeps SQLite
# from walking the whole log in seq order instead, as it did for a bound on seq.
_SELECT_STREAMS = (
    f"{SELECT_EVENTS} WHERE (e.stream, e.version) > (?, ?) AND e.stream < ? AND +e.seq <= ?"
    f" ORDER BY e.stream, e.version LIMIT {READ_CHUNK}"
)


def _above(prefix: str) -> str | bytes:
    """The least value above every name that starts with ``prefix``, so that those names are one
    range of the index: the prefix without its trailing U+10FFFF, its last character one higher.
    With nothing left, no text is above them all, but any blob is (SQLite sorts text first)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return b""
    above = ord(stem[-1]) + 1
    return stem[:-1] + chr(0xE000 if above == 0xD800 else above)  # no text holds a surrogate


_ERASE = "DELETE FROM private_data WHERE event_id IN (SELECT id FROM events WHERE stream = ?)"


@cache
def _write_sql(spec: TableSpec) -> str:
    return write_statement(spec, [])[0]


def _uri(path: Path) -> str:
    """A ``file:`` URI for ``path`` (``?``, ``#`` and ``%`` in names must not reach SQLite raw)."""
    return "file:" + urllib.parse.quote(str(path.resolve()))


def _read_only_uri(path: Path) -> tuple[str, bool]:
    """How to read a ledger without writing to it: the URI, and whether its connections may open
    the file for writing (and so must be made query-only).

    SQLite reads a WAL ledger through a ``-wal`` and a ``-shm`` file beside it, and a ``mode=ro``
    connection that finds none creates them and can never remove them. So a ledger nobody has open
    (no WAL, or an empty one) that this process could write is opened the way its writers open it,
    with every connection query-only: the last connection to close removes the two files, as
    SQLite does for its writers, and a service that starts meanwhile shares them safely. Anything
    else (a WAL with commits in it, a file or directory this process cannot write) is ``mode=ro``.
    """
    wal = path.with_name(path.name + "-wal")
    idle = not wal.exists() or wal.stat().st_size == 0
    if idle and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return _uri(path), True
    return f"{_uri(path)}?mode=ro", False


def _create_private(path: Path) -> None:
    """Create a new ledger file readable by its owner only: SQLite gives its ``-wal`` and ``-shm``
    the database file's mode, so they are 0600 too, whatever the umask."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


class _Writer(Connection):
    """A writer connection driven from a thread of this process (multi-step write transactions).

    Every call runs a whole step in that thread, so a step costs one hop between the event loop
    and the thread, not one per statement.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the writer thread; driver errors come back as ledger errors.

        A cancelled caller still waits for the thread to finish the step it started, so that the
        connection is never left mid-step behind its back.
        """
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await future
            raise
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def close(self) -> None:
        self._executor.submit(self.conn.close).result()
        self._executor.shutdown(wait=True)


class SqliteEventStore(EventStore):
    """The event log in one SQLite file. Besides the contract it offers ``FoldReads``: bulk reads
    in the caller's thread, which hold up the event loop but read a million events far faster."""

    def __init__(
        self,
        path: Path,
        writer: _Writer | None,
        reader: aiosqlite.Connection,
        probe: sqlite3.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._probe = probe
        self._write_lock = asyncio.Lock()
        self._data_version: int | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._batches: BatchWriter | None = None
        self._snapshots = 0

    @classmethod
    async def open(
        cls, path: str | Path, *, create: bool = False, readonly: bool = False,
        busy_timeout_ms: int = 5000,
    ) -> SqliteEventStore:
        """Open a ledger file; ``create`` makes a new one where none exists.

        Without ``create`` a missing file is a NotALedgerError and nothing is created; a new file
        is created 0600. ``readonly`` never writes to the file and leaves no file behind (audit:
        see ``_read_only_uri``).
        """
        path = Path(path)
        create = create and not readonly
        exists = path.exists() and path.stat().st_size > 0
        if not exists and not create:
            raise NotALedgerError(f"{path}: no ledger at this path")
        if path.exists() and not path.is_file():
            raise NotALedgerError(f"{path} is not a file")
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
        uri, query_only = _read_only_uri(path) if readonly else (_uri(path), False)
        connections: list[Any] = []
        try:
            try:
                probe = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                connections.append(probe)
                probe.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
                if query_only:
                    probe.execute("PRAGMA query_only = 1")
                check_or_create_patiently(probe, path, create, busy_timeout_ms)
            except sqlite3.OperationalError:
                wal = path.with_name(path.name + "-wal")
                if not readonly or query_only or (wal.exists() and wal.stat().st_size > 0):
                    raise
                # On read-only media SQLite cannot make the WAL index it reads through; a file
                # nobody can write, with no WAL beside it, is safe to read as immutable. (With a
                # WAL, immutable would silently ignore its commits: that is an error instead.)
                await _close_all(connections)
                connections.clear()
                uri += "&immutable=1"
                probe = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                connections.append(probe)
                check_or_create(probe, path, create)
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            connections.append(reader)
            await reader.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            if query_only:
                await reader.execute("PRAGMA query_only = 1")
            writer = batches = None
            if not readonly:
                conn = writer_connection(uri, busy_timeout_ms)
                connections.append(conn)
                writer = _Writer(conn, path)
                batches = BatchWriter(uri, path, busy_timeout_ms)
                await batches.start()
        except sqlite3.Error as exc:
            await _close_all(connections)
            raise translate(exc, path) from exc
        except LedgerError:
            await _close_all(connections)
            raise
        store = cls(path, writer, reader, probe)
        if writer is not None:
            store._batches = batches
            store._checkpointer = asyncio.create_task(store._checkpoints(), name="ledger-checkpoints")
        return store

    async def head(self) -> Head:
        # one indexed lookup that takes no lock in WAL mode: cheap enough to run inline
        try:
            return head_of(self._probe)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    async def read(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        async for rows in self._chunks(SELECT_EVENTS, after, upto, False):
            yield StoredEvent.from_rows(rows)

    async def read_streams(self, prefix: str, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        found: list[StoredEvent] = []
        stream, version, end = prefix, -1, _above(prefix)
        bound = upto if upto is not None else 2**63 - 1
        while True:
            rows = await self._fetch(_SELECT_STREAMS, (stream, version, end, bound))
            found += StoredEvent.from_rows(rows)
            if len(rows) < READ_CHUNK:
                break
            stream, version = rows[-1][3], rows[-1][4]
        found.sort(key=lambda e: e.seq)
        for start in range(0, len(found), READ_CHUNK):
            yield found[start : start + READ_CHUNK]

    async def read_all(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        async for rows in self._chunks(SELECT_EVENTS, after, upto, True):
            yield StoredEvent.from_rows(rows)

    async def read_bodies(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[BodyRow]]:
        async for rows in self._chunks(_SELECT_BODIES, after, upto, True):
            yield cast(list[BodyRow], rows)

    async def read_shard(
        self, index: int, count: int, shared: str, upto: int | None = None
    ) -> AsyncIterator[list[ShardRow]]:
        if not 0 <= index < count:
            raise ValueError(f"no shard {index} of {count}")
        # a scan of every row: the filter (``shard_of`` in SQL) costs far less here than a row in Python
        shard = (
            "(substr(e.stream, 1, ?) = ? OR coalesce(unicode(substr(e.stream, -1)), 0) % ? = ?)",
            (len(shared), shared, count, index),
        )
        async for rows in self._chunks(_SELECT_SHARD, 0, upto, True, shard):
            yield cast(list[ShardRow], rows)

    async def _chunks(
        self, select: str, after: int, upto: int | None, inline: bool, *conditions: tuple[str, Any]
    ) -> AsyncIterator[list[Row]]:
        """The rows of ``select`` (``seq`` first) in seq order, a chunk at a time, that meet every
        condition (SQL and its parameters).

        Inline (and always within a snapshot), through the probe connection in this thread.
        Otherwise in the reader's thread, the next chunk read while the caller works on this one;
        that frees the event loop, but costs more in all, since the two threads take turns at the
        GIL for every row.
        """
        where, params = "e.seq > ?", list[Any]()
        if upto is not None:
            where += " AND e.seq <= ?"
            params.append(upto)
        for condition, values in conditions:
            where += f" AND {condition}"
            params += values
        sql = f"{select} WHERE {where} ORDER BY e.seq LIMIT {READ_CHUNK}"
        if inline or self._snapshots:
            while True:
                try:
                    rows = self._probe.execute(sql, [after, *params]).fetchall()
                except sqlite3.Error as exc:
                    raise translate(exc, self.path) from exc
                if not rows:
                    return
                yield rows
                if len(rows) < READ_CHUNK:
                    return
                after = rows[-1][0]
                await asyncio.sleep(0)  # let the loop run between chunks: signals, timeouts
        rows = await self._fetch(sql, [after, *params])
        while rows:
            # read the next chunk in the reader's thread while the caller folds this one
            ahead = None
            if len(rows) == READ_CHUNK:
                ahead = asyncio.ensure_future(self._fetch(sql, [rows[-1][0], *params]))
            try:
                yield rows
            finally:
                if ahead is not None and not ahead.done():
                    await asyncio.wait([ahead])
            rows = await ahead if ahead is not None else []

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        statements: list[Statement] = [(_write_sql(spec), rows) for spec, rows in writes.items() if rows]
        if erase:  # secure_delete zeroes the rows' bytes in the file; the WAL is wiped after
            statements.append((_ERASE, [(stream,) for stream in erase]))
        writer, batches = self._writable(), self._batch_writer()
        async with self._write_lock:
            attempts = BATCH_WRITER_ATTEMPTS
            while True:
                try:
                    return await batches.commit_batch(head, events, statements, wipe=bool(erase))
                except BatchWriterGone as gone:
                    # It ended mid-request: whether the batch committed first is for the log to say.
                    if events and await writer.run(writer.hash_at, events[-1].seq) == events[-1].hash:
                        return []
                    attempts -= 1
                    # after a hang the callers have waited long enough: another would hang as long
                    if not attempts or isinstance(gone, BatchWriterHung):
                        raise

    async def probe(self) -> None:
        batches = self._batch_writer()
        async with self._write_lock:
            await batches.probe()

    def _writable(self) -> _Writer:
        if self._writer is None:
            raise StoreUnavailableError(f"{self.path} is open read-only")
        return self._writer

    def _batch_writer(self) -> BatchWriter:
        if self._batches is None:
            raise StoreUnavailableError(f"{self.path} is open read-only, or closed")
        return self._batches

    async def changed(self) -> bool:
        # PRAGMA data_version costs a few microseconds and takes no lock, so it runs inline.
        try:
            version = self._probe.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        changed: bool = version != self._data_version
        self._data_version = version
        return changed

    async def create_tables(self, specs: Sequence[TableSpec]) -> None:
        async with self._transaction() as writer:
            await writer.run(writer.script, "\n".join(create_table(spec) for spec in specs))

    async def rows(self, spec: TableSpec) -> list[Row]:
        return await self._fetch(*_select_rows(spec))

    async def lookup(self, spec: TableSpec, keys: Sequence[Row]) -> list[Row]:
        # SQLite's parser nests OR-ed terms one level each, to a depth of 1,000 at most
        unique = list(dict.fromkeys(map(tuple, keys)))
        found: list[Row] = []
        for start in range(0, len(unique), LOOKUP_KEYS):
            chunk = unique[start:start + LOOKUP_KEYS]
            found += await self._fetch(lookup_sql(spec, len(chunk)), [v for key in chunk for v in key])
        return found if len(unique) <= LOOKUP_KEYS else sorted(found, key=lambda row: tuple(row[:spec.key]))

    async def seek(self, spec: TableSpec, key: Row, before: bool = False) -> Row | None:
        rows = await self._fetch(seek_sql(spec, before), key)
        return rows[0] if rows else None

    @asynccontextmanager
    async def rewrite_tables(self) -> AsyncIterator[TableRewrite]:
        async with self._transaction() as writer:
            yield _SqliteRewrite(writer, await writer.run(writer.head))

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Writer]:
        """A ``BEGIN IMMEDIATE`` transaction on the writer thread's connection, committed durably
        when the block exits cleanly."""
        writer = self._writable()
        async with self._write_lock:
            try:
                await writer.run(writer.begin)
            except asyncio.CancelledError:
                await writer.run(writer.rollback)  # the BEGIN may have gone through meanwhile
                raise
            try:
                yield writer
            except BaseException:
                await writer.run(writer.rollback)
                raise
            await writer.run(writer.commit)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Head]:
        # a read transaction on the probe connection, which every read goes through meanwhile:
        # WAL gives it one consistent view from its first read (the head) until it ends
        try:
            self._probe.execute("BEGIN")
            head = head_of(self._probe)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._probe.execute("ROLLBACK")
            raise translate(exc, self.path) from exc
        self._snapshots += 1
        try:
            yield head
        finally:
            self._snapshots -= 1
            with contextlib.suppress(sqlite3.Error):
                self._probe.execute("COMMIT")

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Rows of a query: in the reader's thread, or inline within a snapshot."""
        try:
            if self._snapshots:
                return self._probe.execute(sql, params).fetchall()
            # one step in the reader's thread: no cursor outlives it, whatever happens to the
            # caller, so no statement is left open to hold the next read to an old snapshot
            rows = await self._reader.execute_fetchall(sql, params)
            return cast(list[Row], rows)  # tuples: the reader has no row factory
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []  # a projection table never created has no rows
            raise translate(exc, self.path) from exc

    async def _checkpoints(self) -> None:
        """Copy the WAL back into the database file from a connection of its own, every so often.

        SQLite's automatic checkpoint would run inside whichever commit crosses the threshold and
        make that batch's callers wait for it; a passive checkpoint here never blocks the writer.
        Under a steady stream of batches it never finishes either: the batch writer checkpoints
        after answering each batch, and this one covers the rest (the thread's writes, a pause).
        """
        uri = _uri(self.path)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-checkpoint") as pool:
            conn = await loop.run_in_executor(
                pool, lambda: sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            )
            try:
                while True:
                    await asyncio.sleep(CHECKPOINT_INTERVAL)
                    try:
                        await loop.run_in_executor(pool, conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error as exc:
                        log.warning("checkpoint of %s failed: %s", self.path, exc)
            finally:
                await asyncio.shield(loop.run_in_executor(pool, conn.close))

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._batches is not None:
            async with self._write_lock:  # after the batch in hand, if any
                await self._batches.close()
            self._batches = None
        if self._writer is not None:
            with contextlib.suppress(LedgerError):  # a tidy-up: the next opener checkpoints anyway
                await self._writer.run(self._writer.conn.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
            await asyncio.get_running_loop().run_in_executor(None, self._writer.close)
            self._writer = None
        await _close_all([self._probe, self._reader])


async def _close_all(connections: Sequence[Any]) -> None:
    for conn in connections:
        if conn is None:
            continue
        if isinstance(conn, aiosqlite.Connection):
            await conn.close()
        else:
            conn.close()


def _select_rows(spec: TableSpec, name: str | None = None) -> tuple[str, tuple[()]]:
    return f"SELECT * FROM {name or spec.name} ORDER BY {', '.join(spec.key_names)}", ()


class _SqliteRewrite(TableRewrite):
    """Replaces tables within the writer thread's ``BEGIN IMMEDIATE`` transaction: each is built
    as a shadow table, then swapped in by name; all of them commit at once."""

    def __init__(self, writer: _Writer, head: Head) -> None:
        self._writer = writer
        self.head = head

    async def read_after(self, seq: int) -> list[StoredEvent]:
        return await self._writer.run(self._writer.read_after, seq)

    async def rows(self, spec: TableSpec) -> list[Row]:
        writer = self._writer
        try:
            return await writer.run(writer.fetch_all, *_select_rows(spec))
        except StoreUnavailableError as exc:
            if "no such table" in str(exc):
                return []
            raise

    async def misshapen(self, specs: Sequence[TableSpec]) -> set[str]:
        conn = self._writer.conn
        return await self._writer.run(lambda: {s.name for s in specs if not shape_matches(conn, s)})

    async def replace(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        shadow = spec.name + SHADOW
        writer = self._writer
        fresh = f"DROP TABLE IF EXISTS {shadow};\n{create_table(spec, shadow, False)}"
        await writer.run(writer.script, fresh)
        await writer.run(writer.execute, [write_statement(spec, list(rows), shadow)])
        swap = f"DROP TABLE IF EXISTS {spec.name};\nALTER TABLE {shadow} RENAME TO {spec.name};"
        await writer.run(writer.script, swap)
