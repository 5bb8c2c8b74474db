"""The SQLite backend: WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``, one writer per process.

A store writes through two connections, one at a time under one lock: group-commit batches go to
a process of its own (``ledger.batch_writer``), whose SQLite work never waits for this process's
interpreter lock, and multi-step write transactions (a rebuild's tables, a migration) run in a
thread, where their rows need no copying between processes.

Triggers abort any UPDATE or DELETE on ``events`` and any insert that is not the next link of the
chain. They are defence in depth only; the hash chain and the audit are what make tampering evident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import site
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from ledger.batch_writer import FRAME, frame
from ledger.chain import chain
from ledger.errors import (
    LedgerError,
    NotALedgerError,
    SchemaTooNewError,
    StoreUnavailableError,
)
from ledger.sqlite_steps import (
    SELECT_EVENTS,
    Connection,
    head_of,
    statements_of,
    translate,
    writer_connection,
)
from ledger.store import (
    BodyRow,
    EventStore,
    Head,
    NewEvent,
    Row,
    ShardRow,
    Statement,
    StoredEvent,
    WriteTransaction,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

APPLICATION_ID = 0x564C4447  # "VLDG": marks a file as a vote-ledger database
SCHEMA_VERSION = 1
READ_CHUNK = 4096

SCHEMA = """
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    id        TEXT    NOT NULL UNIQUE,
    type      TEXT    NOT NULL,
    stream    TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE private_data (
    event_id TEXT PRIMARY KEY,
    salt     BLOB NOT NULL,
    body     BLOB NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_chain BEFORE INSERT ON events
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM events WHERE seq = NEW.seq - 1), zeroblob(32))
BEGIN SELECT RAISE(ABORT, 'events must extend the chain at its head'); END;
"""

_SELECT_BODIES = (
    "SELECT e.seq, e.body, e.hash, p.body FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)
_SELECT_SHARD = (
    "SELECT e.seq, e.body, e.hash, p.body, e.stream"
    " FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)


def _uri(path: Path) -> str:
    """A ``file:`` URI for ``path`` (``?``, ``#`` and ``%`` in names must not reach SQLite raw)."""
    return "file:" + urllib.parse.quote(str(path.resolve()))


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


class _BatchWriterGone(StoreUnavailableError):
    """The batch writer process ended before it answered."""


class _BatchWriterHung(_BatchWriterGone):
    """The batch writer process did not answer in time, and was killed."""


class _BatchWriter:
    """This process's end of ``ledger.batch_writer``: the connection that commits group-commit batches.

    One request at a time. A process that has ended is started again at the next request; one that
    does not answer within the busy timeout and ``BATCH_WRITER_PATIENCE`` more is killed.
    """

    def __init__(self, uri: str, path: Path, busy_timeout_ms: int) -> None:
        self._args = (uri, str(path), str(busy_timeout_ms))
        self._path = path
        # a request may first wait that long for another process's write lock
        self._answer_within = busy_timeout_ms / 1000 + BATCH_WRITER_PATIENCE
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Start the process and wait until its connection is open (or say why it is not)."""
        try:
            # -P: no working directory on its path, where another ``ledger`` could stand
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-c", _LAUNCH, _CHECKOUT, *self._args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for the server does not reach it
            )
        except OSError as exc:
            raise StoreUnavailableError(f"{self._path}: the batch writer cannot start: {exc}") from exc
        self._process = process
        try:
            assert process.stdout is not None
            _unwrap(await self._reply(process.stdout))  # its connection opened, or why not
        except BaseException:
            await self._reap(patience=BATCH_WRITER_PATIENCE)
            raise

    async def commit_batch(
        self, head: Head, events: Sequence[StoredEvent], statements: Sequence[Statement]
    ) -> list[StoredEvent]:
        # plain tuples: pickling a named tuple costs a Python call each, three times the whole row
        batch = ("batch", (head.seq, head.hash), [tuple(e) for e in events], list(statements))
        rows = cast(list[Row], await self._request(batch))
        return StoredEvent.from_rows(rows)

    async def probe(self) -> None:
        """A tiny durable write through the process's connection."""
        await self._request(("probe",))

    async def close(self) -> None:
        """Let the process close its connection and end (a process that will not is killed)."""
        async with self._lock:  # after the request in hand, if any
            self._closed = True
            process = self._process
            if process is not None and process.returncode is None and process.stdin is not None:
                with contextlib.suppress(ConnectionError):  # already gone: nothing to tell it
                    process.stdin.write(frame(None))
                    await process.stdin.drain()
            await self._reap(patience=BATCH_WRITER_PATIENCE)

    async def _request(self, message: object) -> object:
        # A cancelled caller does not cut an exchange short: the next one would read its reply.
        exchange = asyncio.ensure_future(self._exchange(frame(message)))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await exchange
            raise

    async def _exchange(self, request: bytes) -> object:
        async with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self._path}: the batch writer is closed")
            try:
                # the deadline covers the whole exchange: a batch larger than the pipe and the
                # transport's buffer waits in drain() for as long as the process does not read
                async with asyncio.timeout(self._answer_within):
                    reply = await self._send_and_answer(request)
            except TimeoutError:
                await self._reap()  # stopped, or hung: its lock goes once it has ended
                raise _BatchWriterHung(
                    f"{self._path}: the batch writer did not answer within {self._answer_within:g} s"
                ) from None
            return _unwrap(reply)

    async def _send_and_answer(self, request: bytes) -> tuple[bool, object]:
        if self._process is None or self._process.returncode is not None:
            await self._reap()
            await self.start()
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(request)
            await process.stdin.drain()
        except ConnectionError as exc:
            raise await self._let_go("process ended") from exc
        return await self._reply(process.stdout)

    async def _reply(self, stdout: asyncio.StreamReader) -> tuple[bool, object]:
        """The next reply; a process that ends first, or answers what cannot be read, is let go."""
        try:
            (size,) = FRAME.unpack(await stdout.readexactly(FRAME.size))
            reply: tuple[bool, object] = pickle.loads(await stdout.readexactly(size))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise await self._let_go("process ended") from exc
        except Exception as exc:  # out of step with it: nothing it says can be trusted any more
            raise await self._let_go(f"answered garbage: {exc!r}") from exc
        return reply

    async def _let_go(self, what: str) -> _BatchWriterGone:
        """Reap the process; the error for its callers (the log settles whether their batch landed)."""
        await self._reap()
        return _BatchWriterGone(f"{self._path}: the batch writer {what}")

    async def _reap(self, patience: float = 0.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), patience)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    process.kill()
                await process.wait()


def _unwrap(reply: tuple[bool, object]) -> object:
    ok, value = reply
    if not ok:
        raise value if isinstance(value, BaseException) else LedgerError(repr(value))
    return value


class SqliteWriteTransaction(WriteTransaction):
    """A ``BEGIN IMMEDIATE`` transaction on the writer connection (for multi-step writes)."""

    def __init__(self, writer: _Writer, head: Head) -> None:
        self._writer = writer
        self.head = head

    async def read_after(self, seq: int) -> list[StoredEvent]:
        return await self._writer.run(self._writer.read_after, seq)

    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        stored = chain(self.head, events)
        await self._writer.run(self._writer.insert, stored)
        if stored:
            self.head = Head(stored[-1].seq, stored[-1].hash)
        return stored

    async def execute_many(self, sql: str, rows: Sequence[Row]) -> None:
        await self._writer.run(self._writer.execute, [(sql, rows)])

    async def execute_script(self, sql: str) -> None:
        await self._writer.run(self._writer.script, sql)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._writer.run(self._writer.fetch_all, sql, params)


CHECKPOINT_INTERVAL = 0.5  # seconds between passive WAL checkpoints
BATCH_WRITER_PATIENCE = 10.0
"""Seconds a batch writer gets to answer beyond the busy timeout, or to finish once closed, before
it is killed."""
BATCH_WRITER_ATTEMPTS = 3  # batch writers a batch may outlive before its callers hear "unavailable"
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_CHECKOUT = "" if _PACKAGE_ROOT in site.getsitepackages() else _PACKAGE_ROOT
"""Where this package stands when it is not installed: the batch writer imports this very one."""
_LAUNCH = (
    "import sys; sys.path[:0] = [p for p in sys.argv[1:2] if p]; "
    "from ledger.batch_writer import main; sys.exit(main(sys.argv[2:]))"
)


class SqliteEventStore(EventStore):
    """The event log in one SQLite file."""

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
        self._batches: _BatchWriter | None = None

    @classmethod
    async def open(
        cls, path: str | Path, *, create: bool = False, readonly: bool = False,
        busy_timeout_ms: int = 5000,
    ) -> SqliteEventStore:
        """Open a ledger file; ``create`` makes a new one where none exists.

        Without ``create`` a missing file is a NotALedgerError and nothing is created. ``readonly``
        never writes to the file at all (audit).
        """
        path = Path(path)
        exists = path.exists() and path.stat().st_size > 0
        if not exists and not create:
            raise NotALedgerError(f"{path}: no ledger at this path")
        if path.exists() and not path.is_file():
            raise NotALedgerError(f"{path} is not a file")
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{_uri(path)}?mode=ro" if readonly else _uri(path)
        connections: list[Any] = []
        try:
            try:
                probe = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                connections.append(probe)
                probe.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
                _check_or_create_patiently(probe, path, create, busy_timeout_ms)
            except sqlite3.OperationalError:
                wal = path.with_name(path.name + "-wal")
                if not readonly or (wal.exists() and wal.stat().st_size > 0):
                    raise
                # On read-only media SQLite cannot make the WAL index it reads through; a file
                # nobody can write, with no WAL beside it, is safe to read as immutable. (With a
                # WAL, immutable would silently ignore its commits: that is an error instead.)
                await _close_all(connections)
                connections.clear()
                uri += "&immutable=1"
                probe = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                connections.append(probe)
                _check_or_create(probe, path, create)
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            connections.append(reader)
            await reader.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            writer = batches = None
            if not readonly:
                conn = writer_connection(uri, busy_timeout_ms)
                connections.append(conn)
                writer = _Writer(conn, path)
                batches = _BatchWriter(uri, path, busy_timeout_ms)
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

    async def read(
        self, after: int = 0, upto: int | None = None, stream_prefix: str | None = None,
        *, inline: bool = False,
    ) -> AsyncIterator[list[StoredEvent]]:
        where: list[tuple[str, Any]] = []
        if stream_prefix is not None:
            # a range on the (stream, version) index: every string that starts with the prefix
            where.append(("e.stream >= ? AND e.stream < ?", (stream_prefix, stream_prefix + "\U0010ffff")))
        async for rows in self._chunks(SELECT_EVENTS, after, upto, inline, *where):
            yield StoredEvent.from_rows(rows)

    async def read_bodies(
        self, after: int = 0, upto: int | None = None, *, inline: bool = False
    ) -> AsyncIterator[list[BodyRow]]:
        async for rows in self._chunks(_SELECT_BODIES, after, upto, inline):
            yield cast(list[BodyRow], rows)

    async def read_shard(
        self, index: int, count: int, shared: str, upto: int | None = None
    ) -> AsyncIterator[list[ShardRow]]:
        if not 0 <= index < count:
            raise ValueError(f"no shard {index} of {count}")
        # a scan of every row: the filter costs far less in SQLite than a row does in Python
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

        Inline, through the probe connection in this thread. Otherwise in the reader's thread,
        the next chunk read while the caller works on this one; that frees the event loop, but
        costs more in all, since the two threads take turns at the GIL for every row.
        """
        where, params = "e.seq > ?", list[Any]()
        if upto is not None:
            where += " AND e.seq <= ?"
            params.append(upto)
        for condition, values in conditions:
            where += f" AND {condition}"
            params += values
        sql = f"{select} WHERE {where} ORDER BY e.seq LIMIT {READ_CHUNK}"
        if inline:
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
        rows = await self.fetch_all(sql, [after, *params])
        while rows:
            # read the next chunk in the reader's thread while the caller folds this one
            ahead = None
            if len(rows) == READ_CHUNK:
                ahead = asyncio.ensure_future(self.fetch_all(sql, [rows[-1][0], *params]))
            try:
                yield rows
            finally:
                if ahead is not None and not ahead.done():
                    await asyncio.wait([ahead])
            rows = await ahead if ahead is not None else []

    async def commit_batch(
        self, head: Head, events: Sequence[StoredEvent], statements: Sequence[Statement]
    ) -> list[StoredEvent]:
        writer, batches = self._writable(), self._batch_writer()
        async with self._write_lock:
            attempts = BATCH_WRITER_ATTEMPTS
            while True:
                try:
                    return await batches.commit_batch(head, events, statements)
                except _BatchWriterGone as gone:
                    # It ended mid-request: whether the batch committed first is for the log to say.
                    if events and await writer.run(writer.hash_at, events[-1].seq) == events[-1].hash:
                        return []
                    attempts -= 1
                    # after a hang the callers have waited long enough: another would hang as long
                    if not attempts or isinstance(gone, _BatchWriterHung):
                        raise

    async def probe(self) -> None:
        batches = self._batch_writer()
        async with self._write_lock:
            await batches.probe()

    def _writable(self) -> _Writer:
        if self._writer is None:
            raise StoreUnavailableError(f"{self.path} is open read-only")
        return self._writer

    def _batch_writer(self) -> _BatchWriter:
        if self._batches is None:
            raise StoreUnavailableError(f"{self.path} is open read-only, or closed")
        return self._batches

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTransaction]:
        writer = self._writable()
        async with self._write_lock:
            try:
                head = await writer.run(writer.begin)
            except asyncio.CancelledError:
                await writer.run(writer.rollback)  # the BEGIN may have gone through meanwhile
                raise
            try:
                yield SqliteWriteTransaction(writer, head)
            except BaseException:
                await writer.run(writer.rollback)
                raise
            await writer.run(writer.commit)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Head]:
        # a read transaction on the probe connection, which inline reads go through: WAL gives it
        # one consistent view from its first read (the head) until it ends
        try:
            self._probe.execute("BEGIN")
            head = head_of(self._probe)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._probe.execute("ROLLBACK")
            raise translate(exc, self.path) from exc
        try:
            yield head
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._probe.execute("COMMIT")

    async def changed(self) -> bool:
        # PRAGMA data_version costs a few microseconds and takes no lock, so it runs inline.
        try:
            version = self._probe.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        changed: bool = version != self._data_version
        self._data_version = version
        return changed

    async def execute_script(self, sql: str) -> None:
        async with self.write() as tx:
            await tx.execute_script(sql)

    async def fetch_all(
        self, sql: str, params: Sequence[Any] = (), *, inline: bool = False
    ) -> list[Row]:
        try:
            if inline:
                return self._probe.execute(sql, params).fetchall()
            # one step in the reader's thread: no cursor outlives it, whatever happens to the
            # caller, so no statement is left open to hold the next read to an old snapshot
            rows = await self._reader.execute_fetchall(sql, params)
            return cast(list[Row], rows)  # tuples: the reader has no row factory
        except sqlite3.Error as exc:
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


def _check_or_create_patiently(conn: sqlite3.Connection, path: Path, create: bool, timeout_ms: int) -> None:
    """``_check_or_create``, retried while other processes hold the locks it needs.

    Switching a new file to WAL takes an exclusive lock, for which SQLite's busy handler is not
    always called (it would risk a deadlock), so processes creating one ledger together retry here.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            _check_or_create(conn, path, create)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_or_create(conn: sqlite3.Connection, path: Path, create: bool) -> None:
    """Refuse files that are not ledgers or are too new; lay out the schema of a new one.

    With ``create`` the check runs under the write lock, so processes creating the same new ledger
    at once lay it out exactly once.
    """
    if create:
        conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and version == 0 and not _has_tables(conn):
            if not create:
                raise NotALedgerError(f"{path} is an empty database, not a vote-ledger")
            for statement in statements_of(SCHEMA):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise NotALedgerError(f"{path} is not a vote-ledger database")
        elif version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{path} was written by a newer vote-ledger (schema {version}; this one reads "
                f"up to {SCHEMA_VERSION})"
            )
        if create:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if create:
        conn.execute("PRAGMA journal_mode = WAL")


def _has_tables(conn: sqlite3.Connection) -> bool:
    count: int = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return count > 0
