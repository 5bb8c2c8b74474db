"""The SQLite backend: WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``, one writer per process.

Triggers abort any UPDATE or DELETE on ``events`` and any insert that is not the next link of the
chain. They are defence in depth only; the hash chain and the audit are what make tampering evident.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from ledger.chain import GENESIS_HASH, link
from ledger.errors import (
    ConcurrencyError,
    LedgerError,
    NotALedgerError,
    SchemaTooNewError,
    StoreUnavailableError,
)
from ledger.store import (
    EventStore,
    Head,
    NewEvent,
    PrivateData,
    Row,
    StoredEvent,
    WriteTransaction,
)

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

_SELECT = (
    "SELECT e.seq, e.id, e.type, e.stream, e.version, e.body, e.prev_hash, e.hash, p.salt, p.body"
    " FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)


def _row_to_event(row: Row) -> StoredEvent:
    private = PrivateData(row[8], row[9]) if row[8] is not None else None
    return StoredEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], private)


def translate(exc: sqlite3.Error, path: Path) -> LedgerError:
    """Map a driver error to the ledger's own error types (the only place that knows sqlite3)."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return ConcurrencyError(message)
    if "not a database" in message or "malformed" in message:
        return NotALedgerError(f"{path} is not a vote-ledger database ({message})")
    return StoreUnavailableError(f"{path}: {message}")


class SqliteWriteTransaction(WriteTransaction):
    """A ``BEGIN IMMEDIATE`` transaction on the store's writer connection."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, head: Head) -> None:
        self._conn = conn
        self._path = path
        self.head = head

    async def read_after(self, seq: int) -> list[StoredEvent]:
        try:
            async with self._conn.execute(f"{_SELECT} WHERE e.seq > ? ORDER BY e.seq", (seq,)) as cur:
                return [_row_to_event(tuple(r)) for r in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise translate(exc, self._path) from exc

    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        stored: list[StoredEvent] = []
        seq, prev = self.head.seq, self.head.hash
        for event in events:
            seq += 1
            digest = link(prev, event.body)
            stored.append(
                StoredEvent(
                    seq, event.event_id, event.type, event.stream, event.version,
                    event.body, prev, digest, event.private,
                )
            )
            prev = digest
        try:
            await self._conn.executemany(
                "INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.seq, e.event_id, e.type, e.stream, e.version, e.body, e.prev_hash, e.hash)
                 for e in stored],
            )
            private = [(e.event_id, e.private.salt, e.private.body) for e in stored if e.private]
            if private:
                await self._conn.executemany(
                    "INSERT INTO private_data (event_id, salt, body) VALUES (?, ?, ?)", private
                )
        except sqlite3.Error as exc:
            raise translate(exc, self._path) from exc
        if stored:
            self.head = Head(seq, prev)
        return stored

    async def execute_many(self, sql: str, rows: Sequence[Row]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc, self._path) from exc

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            async with self._conn.execute(sql, params) as cur:
                return [tuple(r) for r in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise translate(exc, self._path) from exc

    async def execute_script(self, sql: str) -> None:
        try:
            for statement in _statements(sql):
                await self._conn.execute(statement)
        except sqlite3.Error as exc:
            raise translate(exc, self._path) from exc


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (``executescript`` would commit the transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


class SqliteEventStore(EventStore):
    """The event log in one SQLite file."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection | None,
        reader: aiosqlite.Connection,
        probe: sqlite3.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._probe = probe
        self._write_lock = asyncio.Lock()
        self._data_version: int | None = None

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
        uri = f"file:{path.resolve()}?mode=ro" if readonly else f"file:{path.resolve()}"
        connections: list[Any] = []
        try:
            probe = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            connections.append(probe)
            probe.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            _check_or_create(probe, path, exists, create)
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            connections.append(reader)
            writer = None
            if not readonly:
                writer = await aiosqlite.connect(uri, uri=True, isolation_level=None)
                connections.append(writer)
            for conn in (reader, writer):
                if conn is not None:
                    await conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
                    await conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            await _close_all(connections)
            raise translate(exc, path) from exc
        except LedgerError:
            await _close_all(connections)
            raise
        return cls(path, writer, reader, probe)

    async def head(self) -> Head:
        rows = await self.fetch_all("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        return Head(rows[0][0], rows[0][1]) if rows else Head(0, GENESIS_HASH)

    async def read(
        self, after: int = 0, upto: int | None = None, stream_prefix: str | None = None
    ) -> AsyncIterator[list[StoredEvent]]:
        where, params = "e.seq > ?", list[Any]()
        if upto is not None:
            where += " AND e.seq <= ?"
            params.append(upto)
        if stream_prefix is not None:
            # a range on the (stream, version) index: every string that starts with the prefix
            where += " AND e.stream >= ? AND e.stream < ?"
            params += [stream_prefix, stream_prefix + "\U0010ffff"]
        sql = f"{_SELECT} WHERE {where} ORDER BY e.seq LIMIT {READ_CHUNK}"
        while True:
            rows = await self.fetch_all(sql, [after, *params])
            if not rows:
                return
            events = [_row_to_event(r) for r in rows]
            yield events
            after = events[-1].seq
            if len(rows) < READ_CHUNK:
                return

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTransaction]:
        if self._writer is None:
            raise StoreUnavailableError(f"{self.path} is open read-only")
        conn = self._writer
        async with self._write_lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                async with conn.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                ) as cur:
                    row = await cur.fetchone()
            except sqlite3.Error as exc:
                await self._rollback()
                raise translate(exc, self.path) from exc
            head = Head(row[0], row[1]) if row else Head(0, GENESIS_HASH)
            tx = SqliteWriteTransaction(conn, self.path, head)
            try:
                yield tx
            except BaseException:
                await self._rollback()
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback()
                raise translate(exc, self.path) from exc

    async def _rollback(self) -> None:
        assert self._writer is not None
        try:
            if self._writer.in_transaction:
                await self._writer.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection rolls back by itself when the transaction cannot go on

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

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            async with self._reader.execute(sql, params) as cur:
                return [tuple(r) for r in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    async def close(self) -> None:
        await _close_all([self._probe, self._reader, self._writer])


async def _close_all(connections: Sequence[Any]) -> None:
    for conn in connections:
        if conn is None:
            continue
        if isinstance(conn, aiosqlite.Connection):
            await conn.close()
        else:
            conn.close()


def _check_or_create(conn: sqlite3.Connection, path: Path, exists: bool, create: bool) -> None:
    """Refuse files that are not ledgers or are too new; lay out the schema of a new one."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if exists and app_id != APPLICATION_ID:
        if app_id == 0 and version == 0 and not _has_tables(conn) and create:
            exists = False  # an empty SQLite file: lay the ledger out in it
        else:
            raise NotALedgerError(f"{path} is not a vote-ledger database")
    if exists:
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{path} was written by a newer vote-ledger (schema {version}; this one reads "
                f"up to {SCHEMA_VERSION})"
            )
        return
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_tables(conn: sqlite3.Connection) -> bool:
    count: int = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return count > 0
