"""The SQLite layout: the log's tables and triggers, a file's marks, and the projection tables'
DDL, upserts and shape, each derived from its ``TableSpec``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ledger.errors import NotALedgerError, SchemaTooNewError
from ledger.sqlite.steps import Statement, statements_of
from ledger.tables import Row, TableSpec

APPLICATION_ID = 0x564C4447  # "VLDG": marks a file as a vote-ledger database
SCHEMA_VERSION = 1

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

_TYPES = {str: "TEXT", int: "INTEGER", bytes: "BLOB"}


def create_table(spec: TableSpec, name: str | None = None, if_not_exists: bool = True) -> str:
    """The CREATE TABLE statement for ``spec`` (under another ``name``: a rebuild's shadow)."""
    columns = [
        f"{c.name} {_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}{' UNIQUE' if c.unique else ''}"
        for c in spec.columns
    ]
    constraints = [f"PRIMARY KEY ({', '.join(spec.key_names)})"]
    constraints += [f"UNIQUE ({', '.join(group)})" for group in spec.unique]
    guard = "IF NOT EXISTS " if if_not_exists else ""
    rowid = " WITHOUT ROWID" if spec.key > 1 else ""  # a composite key is the table's own order
    return f"CREATE TABLE {guard}{name or spec.name} ({', '.join(columns + constraints)}){rowid};"


def write_statement(spec: TableSpec, rows: list[Row], name: str | None = None) -> Statement:
    """The statement that writes ``rows``: an upsert on the key, or (``replace`` off) an insert
    that fails on a taken key. Any other constraint a row breaks fails the write either way."""
    names = spec.names
    sql = f"INSERT INTO {name or spec.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    if spec.replace:
        rest = names[spec.key :]
        action = (
            "DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in rest) if rest else "DO NOTHING"
        )
        sql += f" ON CONFLICT ({', '.join(spec.key_names)}) {action}"
    return sql, rows


def lookup_sql(spec: TableSpec, count: int) -> str:
    """The query for the rows with any of ``count`` keys, each bound as the key's columns in turn.

    One equality per key column, the keys OR-ed: SQLite answers that with one search of the
    primary key per key (a row-value ``IN (VALUES ...)`` would scan the whole table)."""
    one = "(" + " AND ".join(f"{name} = ?" for name in spec.key_names) + ")"
    order = ", ".join(spec.key_names)
    return f"SELECT * FROM {spec.name} WHERE {' OR '.join([one] * count)} ORDER BY {order}"


def seek_sql(spec: TableSpec, before: bool) -> str:
    """The query for the first row whose key is at or after a key (``before``: the last at or
    before it), the key bound as its columns."""
    key = ", ".join(spec.key_names)
    order = ", ".join(f"{n} DESC" for n in spec.key_names) if before else key
    bound = ", ".join("?" * spec.key)
    where = f"({key}) {'<=' if before else '>='} ({bound})"
    return f"SELECT * FROM {spec.name} WHERE {where} ORDER BY {order} LIMIT 1"


def shape_matches(conn: sqlite3.Connection, spec: TableSpec) -> bool:
    """Whether the table is laid out as ``create_table(spec)`` lays it out: the same columns,
    types, nullability and key, the same unique constraints, and no index or trigger of its own."""
    columns = conn.execute(f"PRAGMA table_xinfo({spec.name})").fetchall()
    if not columns:
        return False
    key = spec.key_names
    have = [(name, kind.upper(), bool(notnull) or pk > 0, pk) for _, name, kind, notnull, _, pk, _ in columns]
    want = [
        (c.name, _TYPES[c.type], not c.nullable or c.name in key, _position(key, c.name))
        for c in spec.columns
    ]
    if have != want:
        return False
    uniques = {frozenset(key)}
    for _, index, unique, origin, partial in conn.execute(f"PRAGMA index_list({spec.name})").fetchall():
        if origin not in ("u", "pk") or not unique or partial:
            return False
        uniques.add(frozenset(r[2] for r in conn.execute(f"PRAGMA index_info({index})").fetchall()))
    triggers = conn.execute(  # SQLite's names ignore case: a table "Users" is the table users
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND lower(tbl_name) = lower(?)",
        (spec.name,),
    ).fetchone()[0]
    return triggers == 0 and uniques == {frozenset(group) for group in spec.uniques}


def _position(key: tuple[str, ...], name: str) -> int:
    """A column's place in the key, from 1, as SQLite reports it (0: not in the key)."""
    return key.index(name) + 1 if name in key else 0


def check_or_create_patiently(conn: sqlite3.Connection, path: Path, create: bool, timeout_ms: int) -> None:
    """``check_or_create``, retried while other processes hold the locks it needs.

    Switching a new file to WAL takes an exclusive lock, for which SQLite's busy handler is not
    always called (it would risk a deadlock), so processes creating one ledger together retry here.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            check_or_create(conn, path, create)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def check_or_create(conn: sqlite3.Connection, path: Path, create: bool) -> None:
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
