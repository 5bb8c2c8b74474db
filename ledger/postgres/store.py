"""The PostgreSQL store, over ``asyncpg``: the ledger in one database that several nodes share.

Every append takes a transaction-scoped advisory lock, reads the head, and inserts after it, so
``seq`` is gapless in commit order and no reader can see a later position before an earlier one.
A batch's events, its private data and its projection rows commit in that one transaction, with
``synchronous_commit`` as the server has it (on, by default). Each commit NOTIFYs the other nodes;
a notification only wakes them up: they re-read the log from their own position, and without any
notification they look at the head at least every ``POLL_INTERVAL`` anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ledger.errors import (
    ConcurrencyError,
    CorruptEventError,
    LedgerError,
    NotALedgerError,
    SchemaTooNewError,
    StoreUnavailableError,
)
from ledger.postgres.schema import (
    APPEND_LOCK,
    APPLICATION,
    CHANNEL,
    COLUMNS,
    INDEXES,
    SCHEMA,
    SCHEMA_VERSION,
    SHADOW,
    TRIGGERS,
    create_table,
    expected_columns,
    expected_uniques,
    lookup_sql,
    quoted,
    seek_sql,
    select_rows,
    write_sql,
)
from ledger.store import EMPTY_WRITES, GENESIS_HASH, EventStore, Head, StoredEvent, TableRewrite
from ledger.tables import Row, TableSpec, TableWrites

T = TypeVar("T")
log = logging.getLogger(__name__)

READ_CHUNK = 4096
POLL_INTERVAL = 0.1  # seconds: the longest a node goes without looking at the head
RECONNECT_INTERVAL = 1.0  # seconds between attempts to listen again after losing the connection
POOL_SIZE = 4

_SELECT = (
    "SELECT e.seq, e.id, e.type, e.stream, e.version, e.body, e.prev_hash, e.hash, p.salt, p.body"
    " FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)
_READ = f"{_SELECT} WHERE e.seq > $1 AND e.seq <= $2 ORDER BY e.seq LIMIT {READ_CHUNK}"
_READ_STREAMS = (
    f"{_SELECT} WHERE (e.stream, e.version) > ($1, $2) AND e.stream < $3 AND e.seq <= $4"
    f" ORDER BY e.stream, e.version LIMIT {READ_CHUNK}"
)
_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
_INSERT_EVENTS = (
    "INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],"
    " $6::bytea[], $7::bytea[], $8::bytea[])"
)
_INSERT_PRIVATE = (
    "INSERT INTO private_data (event_id, salt, body)"
    " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])"
)
_ERASE = "DELETE FROM private_data WHERE event_id IN (SELECT id FROM events WHERE stream = ANY($1::text[]))"
_MAX_SEQ = 2**63 - 1
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.OperatorInterventionError,
)


def redacted(url: str) -> str:
    """The URL without its password, as messages name the ledger."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _above(prefix: str) -> str:
    """The least text above every name that starts with ``prefix`` (code point order)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return "\U0010ffff" * 64  # nothing this ledger names a stream sorts past it
    above = ord(stem[-1]) + 1
    return stem[:-1] + chr(0xE000 if above == 0xD800 else above)


def _columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as columns, for ``unnest``: one statement for any number of rows."""
    return [list(column) for column in zip(*rows, strict=True)]


def _reason(exc: BaseException) -> str:
    """What went wrong, in words (a timeout's own message is empty)."""
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    return str(exc) or exc.__class__.__name__


def _head(row: Any) -> Head:
    return Head(row[0], row[1]) if row is not None else Head(0, GENESIS_HASH)


def _events(records: Sequence[Any]) -> list[StoredEvent]:
    return StoredEvent.from_rows(map(tuple, records))  # bytea comes as bytes


class PostgresEventStore(EventStore):
    """The event log in one PostgreSQL database."""

    def __init__(self, url: str, pool: asyncpg.Pool, readonly: bool, timeout: float) -> None:
        self.url = url
        self.label = redacted(url)
        self._pool = pool
        self._readonly = readonly
        self._timeout = timeout
        self._snapshot: asyncpg.Connection | None = None
        self._listener: asyncpg.Connection | None = None
        self._notified = True
        self._looked = float("-inf")
        self._listen_tried = float("-inf")
        self._relisten: asyncio.Future[None] | None = None  # listening again, in the background
        self._deaf = False  # the last attempt to listen failed
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, *, create: bool = False, readonly: bool = False, busy_timeout_ms: int = 5000
    ) -> PostgresEventStore:
        """Connect to the database at ``url``; ``create`` lays out the ledger in a database that
        has none (a node that finds one joins it). Without ``create`` an empty database is a
        NotALedgerError; ``readonly`` never writes."""
        timeout = busy_timeout_ms / 1000
        settings = {"default_transaction_read_only": "on"} if readonly else {}
        # No floor of idle connections (min_size 0): asyncpg keeps one with a task of its own that,
        # while the server is away, logs a traceback at every retry. Connections are made on use.
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=POOL_SIZE, timeout=timeout, command_timeout=timeout + 10,
            server_settings={"application_name": APPLICATION, **settings},
        )
        store = cls(url, pool, readonly, timeout)
        try:
            try:
                async with pool.acquire(timeout=timeout):
                    pass
            except asyncpg.InvalidCatalogNameError as exc:
                raise NotALedgerError(f"{redacted(url)}: no such database ({exc})") from exc
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                raise StoreUnavailableError(f"{redacted(url)}: cannot connect: {_reason(exc)}") from exc
            await store._check_or_create(create and not readonly)
        except BaseException:
            pool.terminate()
            raise
        if not readonly:
            await store._listen()
        return store

    async def _check_or_create(self, create: bool) -> None:
        async with self._connection() as conn, conn.transaction():
            if create:  # nodes starting together lay the ledger out once
                await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            marked = await conn.fetchval("SELECT to_regclass('ledger_meta') IS NOT NULL")
            if not marked:
                if await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
                    raise NotALedgerError(f"{self.label} holds an events table that is not a vote-ledger's")
                if not create:
                    raise NotALedgerError(f"{self.label}: no ledger in this database")
                await conn.execute(SCHEMA)
                return
            meta = dict(await conn.fetch("SELECT key, value FROM ledger_meta"))
            if meta.get("application") != APPLICATION:
                raise NotALedgerError(f"{self.label} is not a vote-ledger database")
            if int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"{self.label} was written by a newer vote-ledger (schema {meta['schema_version']}; "
                    f"this one reads up to {SCHEMA_VERSION})"
                )

    # --- connections and errors -----------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The snapshot's connection inside a snapshot, else one from the pool; driver errors come
        out as ledger errors."""
        if self._closed:
            raise StoreUnavailableError(f"{self.label} is closed")
        try:
            if self._snapshot is not None:
                yield self._snapshot
                return
            async with self._pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except LedgerError:
            raise
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConcurrencyError(f"{self.label}: {exc}") from exc
        except asyncpg.UndefinedTableError as exc:
            raise NotALedgerError(f"{self.label}: {exc}") from exc
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise StoreUnavailableError(f"{self.label}: {_reason(exc)}") from exc

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await fn(conn)

    def _writable(self) -> None:
        if self._readonly:
            raise StoreUnavailableError(f"{self.label} is open read-only")

    # --- the log ---------------------------------------------------------------------------------

    async def head(self) -> Head:
        return _head(await self._run(lambda conn: conn.fetchrow(_HEAD)))

    async def read(self, after: int = 0, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        bound = _MAX_SEQ if upto is None else upto
        while True:
            async with self._connection() as conn:
                records = await conn.fetch(_READ, after, bound)
            if not records:
                return
            yield _events(records)
            if len(records) < READ_CHUNK:
                return
            after = records[-1][0]

    async def read_streams(self, prefix: str, upto: int | None = None) -> AsyncIterator[list[StoredEvent]]:
        found: list[StoredEvent] = []
        stream, version, end = prefix, -1, _above(prefix)
        bound = _MAX_SEQ if upto is None else upto
        while True:
            async with self._connection() as conn:
                records = await conn.fetch(_READ_STREAMS, stream, version, end, bound)
            found += _events(records)
            if len(records) < READ_CHUNK:
                break
            stream, version = records[-1][3], records[-1][4]
        found.sort(key=lambda e: e.seq)
        for start in range(0, len(found), READ_CHUNK):
            yield found[start : start + READ_CHUNK]

    async def append(
        self, head: Head, events: Sequence[StoredEvent], writes: TableWrites = EMPTY_WRITES,
        erase: Sequence[str] = (),
    ) -> list[StoredEvent]:
        self._writable()
        try:
            async with self._connection() as conn:
                foreign = await self._append(conn, head, events, writes, erase)
        except StoreUnavailableError:
            # the connection went mid-commit: whether the batch landed first is for the log to say
            if events and await self._landed(events[-1]):
                return []
            raise
        if erase and not foreign:
            await self._vacuum(["private_data", *(quoted(spec.name) for spec in writes)])
        return foreign

    async def _vacuum(self, tables: list[str]) -> None:
        """Reclaim the dead row versions an erasure left in ``tables`` (VACUUM cannot run in a
        transaction). What it cannot reach, PostgreSQL's WAL, its archives and backups, the README
        says."""
        try:
            async with self._connection() as conn:
                await conn.execute(f"VACUUM {', '.join(tables)}")
        except LedgerError as exc:
            log.warning("%s: VACUUM after an erasure failed: %s", self.label, exc)

    async def _append(
        self, conn: asyncpg.Connection, head: Head, events: Sequence[StoredEvent], writes: TableWrites,
        erase: Sequence[str],
    ) -> list[StoredEvent]:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            current = _head(await conn.fetchrow(_HEAD))
            if current != head:
                foreign = _events(await conn.fetch(_READ, head.seq, _MAX_SEQ))
                # the first event after a head the log holds links to that head's hash
                if current.seq < head.seq or not foreign or foreign[0].prev_hash != head.hash:
                    raise CorruptEventError(
                        f"the log ends at seq {current.seq} and does not hold the head this batch was "
                        f"decided at (seq {head.seq}): the log lost events; run the audit"
                    )
                return foreign
            if events:  # one statement for the batch's events, one for their private data
                await conn.execute(_INSERT_EVENTS, *_columns(e[:8] for e in events))
                private = [(e.event_id, e.private_salt, e.private_body) for e in events
                           if e.private_salt is not None]
                if private:
                    await conn.execute(_INSERT_PRIVATE, *_columns(private))
            for spec, rows in writes.items():
                if rows:
                    await conn.executemany(write_sql(spec), rows)
            if erase:
                await conn.execute(_ERASE, list(erase))
            if events:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(events[-1].seq))
        return []

    async def _landed(self, last: StoredEvent) -> bool:
        """Whether ``last`` is in the log (False when that cannot be told now)."""
        with contextlib.suppress(LedgerError):
            async with self._connection() as conn:
                digest = await conn.fetchval("SELECT hash FROM events WHERE seq = $1", last.seq)
            return bool(digest == last.hash)
        return False

    async def probe(self) -> None:
        self._writable()
        await self._run(lambda conn: conn.execute(
            "INSERT INTO write_probe VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n",
            time.time_ns(),
        ))

    # --- other nodes -----------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Listen for other nodes' commits on a connection of its own (best effort: without it,
        ``changed`` says yes at every call until it listens again)."""
        self._listen_tried = time.monotonic()
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(
                self.url, timeout=self._timeout, server_settings={"application_name": APPLICATION}
            )
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_lost)
        except BaseException as exc:  # a cancelled attempt (the store closing) leaves no connection
            if conn is not None:
                conn.terminate()
            if not isinstance(exc, (*_UNAVAILABLE, asyncpg.PostgresError)):
                raise
            if not self._deaf:  # once per outage: it is tried again every RECONNECT_INTERVAL
                log.warning("%s: cannot listen for other nodes' commits (%s); looking at the log's "
                            "head at every request until it can", self.label, _reason(exc))
            self._deaf = True
            return
        if self._deaf:
            log.warning("%s: listening for other nodes' commits again", self.label)
        self._deaf = False
        self._listener = conn
        self._notified = True  # anything committed while nobody listened

    def _on_notify(self, *_: object) -> None:
        self._notified = True

    def _on_lost(self, *_: object) -> None:
        self._listener = None

    async def changed(self) -> bool:
        now = time.monotonic()
        if self._listener is None or self._listener.is_closed():
            self._listener = None
            trying = self._relisten is not None and not self._relisten.done()
            due = now - self._listen_tried > RECONNECT_INTERVAL
            if due and not (self._readonly or self._closed or trying):
                # in the background: ``changed`` never waits on the network
                self._relisten = asyncio.ensure_future(self._listen())
            return True
        if self._notified or now - self._looked > POLL_INTERVAL:
            self._notified, self._looked = False, now
            return True
        return False

    # --- projection tables -----------------------------------------------------------------------

    async def create_tables(self, specs: Sequence[TableSpec]) -> None:
        self._writable()
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            for spec in specs:
                await conn.execute(create_table(spec))

    async def rows(self, spec: TableSpec) -> list[Row]:
        return await self._table_rows(lambda conn: conn.fetch(select_rows(spec)))

    async def lookup(self, spec: TableSpec, keys: Sequence[Row]) -> list[Row]:
        if not keys:
            return []
        unique = dict.fromkeys(map(tuple, keys))  # a join would give a key asked twice twice
        columns = [list(column) for column in zip(*unique, strict=True)]
        return await self._table_rows(lambda conn: conn.fetch(lookup_sql(spec), *columns))

    async def seek(self, spec: TableSpec, key: Row, before: bool = False) -> Row | None:
        rows = await self._table_rows(lambda conn: conn.fetch(seek_sql(spec, before), *key))
        return rows[0] if rows else None

    async def _table_rows(self, fetch: Callable[[asyncpg.Connection], Awaitable[list[Any]]]) -> list[Row]:
        try:
            records = await self._run(fetch)
        except NotALedgerError:
            return []  # a table never created has no rows
        return [tuple(r) for r in records]

    @asynccontextmanager
    async def rewrite_tables(self) -> AsyncIterator[TableRewrite]:
        self._writable()
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            rewrite = _PostgresRewrite(conn, _head(await conn.fetchrow(_HEAD)))
            yield rewrite
            await rewrite.swap()
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, "tables")

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Head]:
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            head = _head(await conn.fetchrow(_HEAD))
            self._snapshot = conn
            try:
                yield head
            finally:
                self._snapshot = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._relisten is not None:
            self._relisten.cancel()
            await asyncio.wait((self._relisten,))
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=self._timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(), self._timeout)
        self._pool.terminate()


class _PostgresRewrite(TableRewrite):
    """Replaces tables within one transaction holding the append lock: each is built in the
    ``SHADOW`` schema while readers go on reading the live one, and all are swapped in at the end,
    just before the commit (their indexes keep their names as they move)."""

    def __init__(self, conn: asyncpg.Connection, head: Head) -> None:
        self._conn = conn
        self.head = head
        self._replaced: dict[str, TableSpec] = {}  # by name: the tables built here so far

    async def read_after(self, seq: int) -> list[StoredEvent]:
        return _events(await self._conn.fetch(f"{_SELECT} WHERE e.seq > $1 ORDER BY e.seq", seq))

    def _where(self, spec: TableSpec) -> tuple[str | None, str]:
        """The schema of the table this rewrite sees under ``spec``'s name, and its full name."""
        if spec.name in self._replaced:
            return SHADOW, f"{quoted(SHADOW)}.{quoted(spec.name)}"
        return None, quoted(spec.name)

    async def rows(self, spec: TableSpec) -> list[Row]:
        schema, name = self._where(spec)
        if not await self._conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return []
        return [tuple(r) for r in await self._conn.fetch(select_rows(spec, schema))]

    async def misshapen(self, specs: Sequence[TableSpec]) -> set[str]:
        found = set()
        for spec in specs:
            _, name = self._where(spec)
            columns = [tuple(r) for r in await self._conn.fetch(COLUMNS, name)]
            indexes = await self._conn.fetch(INDEXES, name)
            triggers = await self._conn.fetchval(TRIGGERS, name)
            uniques = {frozenset(names) for plain, names in indexes if plain}
            if (columns != expected_columns(spec) or triggers or not all(plain for plain, _ in indexes)
                    or uniques != expected_uniques(spec)):
                found.add(spec.name)
        return found

    async def replace(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        conn = self._conn
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(SHADOW)}")
        await conn.execute(f"DROP TABLE IF EXISTS {quoted(SHADOW)}.{quoted(spec.name)}")
        await conn.execute(create_table(spec, if_not_exists=False, schema=SHADOW))
        if rows:
            await conn.copy_records_to_table(
                spec.name, records=list(rows), columns=list(spec.names), schema_name=SHADOW
            )
        self._replaced[spec.name] = spec

    async def swap(self) -> None:
        """Move every table built here into place, in place of the live one."""
        live = await self._conn.fetchval("SELECT current_schema()")
        for name in map(quoted, self._replaced):
            await self._conn.execute(f"DROP TABLE IF EXISTS {name}")
            await self._conn.execute(f"ALTER TABLE {quoted(SHADOW)}.{name} SET SCHEMA {quoted(live)}")
