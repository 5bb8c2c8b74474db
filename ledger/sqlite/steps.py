"""A writer connection's steps, in plain ``sqlite3``: the store's thread and the batch writer
process both run them, each step whole (a batch, a statement list) in one call.

It imports nothing asynchronous, so that the batch writer process stays small.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.errors import (
    ConcurrencyError,
    CorruptEventError,
    LedgerError,
    NotALedgerError,
    StoreUnavailableError,
)
from ledger.store import GENESIS_HASH, Head, StoredEvent

Row = tuple[Any, ...]  # as ``ledger.tables.Row``, which this process does not import
Statement = tuple[str, Sequence[Row]]
"""SQL with ``?`` placeholders and the rows to run it for: what the batch writer is sent."""

WRITER_CACHE_KIB = 16 * 1024  # a multi-step writer's page cache: a rebuild's tables stay in memory
BATCH_CACHE_KIB = 2 * 1024
"""The batch writer's page cache (SQLite's default size). At 16 MiB it grew by 20 MiB under votes
on a 1M-event ledger. At 4 MiB, and again at 2, its CPU per vote was the same as at the size
before, within the noise of alternating runs."""
SELECT_EVENTS = (
    "SELECT e.seq, e.id, e.type, e.stream, e.version, e.body, e.prev_hash, e.hash, p.salt, p.body"
    " FROM events e LEFT JOIN private_data p ON p.event_id = e.id"
)


def head_of(conn: sqlite3.Connection) -> Head:
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return Head(row[0], row[1]) if row else Head(0, GENESIS_HASH)


def translate(exc: sqlite3.Error, path: Path) -> LedgerError:
    """Map a driver error to the ledger's own error types."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return ConcurrencyError(message)
    if "not a database" in message or "malformed" in message:
        return NotALedgerError(f"{path} is not a vote-ledger database ({message})")
    return StoreUnavailableError(f"{path}: {message}")


def writer_connection(
    uri: str, busy_timeout_ms: int, cache_kib: int = WRITER_CACHE_KIB
) -> sqlite3.Connection:
    """A connection set up to write the log: FULL sync, a page cache, no checkpoints of its own."""
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute("PRAGMA synchronous = FULL")
        # deleted content is overwritten with zeros, so that an erasure leaves nothing to recover
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        # checkpoints run beside the writers (SqliteEventStore._checkpoints) or between batches
        # (ledger.sqlite.batch_writer), never inside a commit
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


_VALUES = re.compile(r"^(INSERT .*? VALUES )(\([?, ]+\))(.*)$", re.DOTALL | re.IGNORECASE)


def _split_values(sql: str) -> tuple[str, str | None, str]:
    """``INSERT ... VALUES (?, ?)`` split around its one row of placeholders."""
    match = _VALUES.match(sql)
    return (match.group(1), match.group(2), match.group(3)) if match else (sql, None, "")


def statements_of(script: str) -> list[str]:
    """Split a DDL script into statements (``executescript`` would commit the transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


class Connection:
    """A writer connection's steps, each run whole (a batch, a statement list) by whoever holds it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.max_variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self.busy_timeout_ms: int = conn.execute("PRAGMA busy_timeout").fetchone()[0]

    def head(self) -> Head:
        return head_of(self.conn)

    def hash_at(self, seq: int) -> bytes | None:
        """The hash of the event at ``seq``, if the log has one there."""
        row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def begin(self) -> Head:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            return self.head()
        except BaseException:
            self.rollback()
            raise

    def read_after(self, seq: int) -> list[StoredEvent]:
        rows = self.conn.execute(f"{SELECT_EVENTS} WHERE e.seq > ? ORDER BY e.seq", (seq,)).fetchall()
        return StoredEvent.from_rows(rows)

    def insert(self, events: Sequence[StoredEvent]) -> None:
        self.execute([
            ("INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             [(e.seq, e.event_id, e.type, e.stream, e.version, e.body, e.prev_hash, e.hash) for e in events]),
            ("INSERT INTO private_data (event_id, salt, body) VALUES (?, ?, ?)",
             [(e.event_id, e.private_salt, e.private_body) for e in events if e.private_salt is not None]),
        ])

    def execute(self, statements: Sequence[Statement]) -> None:
        """Run each statement for its rows, many rows per call.

        A multi-row ``VALUES`` list makes one call into SQLite where ``executemany`` makes one per
        row, and each call lets go of the interpreter lock and takes it back: in a thread of a busy
        server, that cost far more than the insert itself.
        """
        for sql, rows in statements:
            if not rows:
                continue
            head, values, tail = _split_values(sql)
            if values is None:
                self.conn.executemany(sql, rows)
                continue
            step = max(1, self.max_variables // values.count("?"))
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                self.conn.execute(
                    head + ", ".join([values] * len(chunk)) + tail,
                    [value for row in chunk for value in row],
                )

    def script(self, sql: str) -> None:
        for statement in statements_of(sql):
            self.conn.execute(statement)

    def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back by itself when a transaction cannot go on

    def checkpoint(self) -> None:
        """Copy the WAL back into the database file, waiting for nobody: a checkpoint already
        running, or a reader on an older snapshot, leaves the rest for a later one. A failure
        here is the next write's to report."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def wipe_wal(self) -> None:
        """Copy the whole WAL back into the database file and truncate it to nothing, so that no
        older version of a page (erased data, say) is left in it. It waits for readers on older
        snapshots, up to the busy timeout; a WAL still in use then is the next erasure's to wipe."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy or time.monotonic() > deadline:
                return
            time.sleep(0.005)

    def probe(self) -> None:
        """A tiny durable write beside the log: it fails when the disk or the file cannot take one."""
        self.begin()
        try:
            self.conn.execute("CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY, n INTEGER)")
            self.conn.execute("INSERT OR REPLACE INTO write_probe VALUES (1, random())")
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def commit_batch(
        self, head: Head, events: Sequence[StoredEvent], statements: Sequence[Statement]
    ) -> list[StoredEvent]:
        current = self.begin()
        try:
            if current != head:
                foreign = self.read_after(head.seq)
                self.rollback()
                # the first event after a head the log holds links to that head's hash
                if current.seq < head.seq or not foreign or foreign[0].prev_hash != head.hash:
                    raise CorruptEventError(
                        f"the log ends at seq {current.seq} and does not hold the head this batch was "
                        f"decided at (seq {head.seq}): the log lost events; run the audit"
                    )
                return foreign
            self.insert(events)
            self.execute(statements)
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return []
