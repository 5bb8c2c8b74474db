"""The PostgreSQL layout: the log's tables and triggers, the ledger's mark, and the projection
tables' DDL, upserts and shape, each derived from its ``TableSpec``."""

from __future__ import annotations

from ledger.tables import TableSpec

APPLICATION = "vote-ledger"
SCHEMA_VERSION = 1
APPEND_LOCK = 0x564C4447  # the advisory lock every append and table rewrite holds ("VLDG")
CHANNEL = "vote_ledger"  # NOTIFY after each append: a wake-up, never the data

# Streams sort by code point (COLLATE "C"), so that a prefix is one range of the index.
SCHEMA = f"""
CREATE TABLE ledger_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE events (
    seq       bigint PRIMARY KEY,
    id        text   NOT NULL UNIQUE,
    type      text   NOT NULL,
    stream    text   COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    body      bytea  NOT NULL,
    prev_hash bytea  NOT NULL,
    hash      bytea  NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE private_data (
    event_id text  PRIMARY KEY,
    salt     bytea NOT NULL,
    body     bytea NOT NULL
);
CREATE TABLE write_probe (id integer PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION vote_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'integrity_constraint_violation'; END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION vote_ledger_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION vote_ledger_append_only();
CREATE FUNCTION vote_ledger_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(max(seq), 0) + 1 FROM events)
       OR NEW.prev_hash IS DISTINCT FROM
          COALESCE((SELECT hash FROM events WHERE seq = NEW.seq - 1), '\\x{"00" * 32}'::bytea) THEN
        RAISE EXCEPTION 'events must extend the chain at its head'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_chain BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION vote_ledger_chain();
INSERT INTO ledger_meta VALUES ('application', '{APPLICATION}'), ('schema_version', '{SCHEMA_VERSION}');
"""

_TYPES = {str: "text", int: "bigint", bytes: "bytea"}


def quoted(name: str) -> str:
    """An identifier as PostgreSQL reads it exactly (``user`` is a reserved word there)."""
    return f'"{name}"'


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(map(quoted, names))


SHADOW = "vote_ledger_rebuild"  # the schema where a rebuild builds tables before swapping them in


def create_table(spec: TableSpec, if_not_exists: bool = True, schema: str | None = None) -> str:
    """The CREATE TABLE statement for ``spec`` (in ``schema``: a rebuild's shadow)."""
    columns = [
        f"{quoted(c.name)} {_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}{' UNIQUE' if c.unique else ''}"
        for c in spec.columns
    ]
    constraints = [f"PRIMARY KEY ({_names(spec.key_names)})"]
    constraints += [f"UNIQUE ({_names(group)})" for group in spec.unique]
    guard = "IF NOT EXISTS " if if_not_exists else ""
    name = quoted(spec.name) if schema is None else f"{quoted(schema)}.{quoted(spec.name)}"
    return f"CREATE TABLE {guard}{name} ({', '.join(columns + constraints)})"


def write_sql(spec: TableSpec) -> str:
    """The statement that writes one row: an upsert on the key, or (``replace`` off) an insert
    that fails on a taken key. Any other constraint a row breaks fails the write either way."""
    names = spec.names
    values = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    sql = f"INSERT INTO {quoted(spec.name)} ({_names(names)}) VALUES ({values})"
    if spec.replace:
        rest = [quoted(n) for n in names[spec.key :]]
        action = "DO UPDATE SET " + ", ".join(f"{n} = EXCLUDED.{n}" for n in rest) if rest else "DO NOTHING"
        sql += f" ON CONFLICT ({_names(spec.key_names)}) {action}"
    return sql


def select_rows(spec: TableSpec, schema: str | None = None) -> str:
    name = quoted(spec.name) if schema is None else f"{quoted(schema)}.{quoted(spec.name)}"
    return f"SELECT * FROM {name} ORDER BY {_names(spec.key_names)}"


def lookup_sql(spec: TableSpec) -> str:
    """The query for the rows with any of the keys bound as one array per key column."""
    key = _names(spec.key_names)
    arrays = ", ".join(f"${i}::{_TYPES[c.type]}[]" for i, c in enumerate(spec.columns[: spec.key], 1))
    return (
        f"SELECT t.* FROM {quoted(spec.name)} t JOIN unnest({arrays}) AS k({key}) USING ({key}) "
        f"ORDER BY {key}"
    )


def seek_sql(spec: TableSpec, before: bool) -> str:
    """The query for the first row whose key is at or after the bound key (``before``: the last
    at or before it)."""
    key = _names(spec.key_names)
    order = ", ".join(f"{quoted(n)} DESC" for n in spec.key_names) if before else key
    bound = ", ".join(f"${i}::{_TYPES[c.type]}" for i, c in enumerate(spec.columns[: spec.key], 1))
    if spec.key > 1:  # a row comparison, which one index range answers
        key, bound = f"({key})", f"({bound})"
    where = f"{key} {'<=' if before else '>='} {bound}"
    return f"SELECT * FROM {quoted(spec.name)} WHERE {where} ORDER BY {order} LIMIT 1"


COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
INDEXES = """
SELECT i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL,
       array(SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]))
FROM pg_index i WHERE i.indrelid = to_regclass($1)
"""
TRIGGERS = "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal"


def expected_columns(spec: TableSpec) -> list[tuple[str, str, bool]]:
    """What ``COLUMNS`` reads of a table laid out by ``create_table(spec)``."""
    key = spec.key_names
    return [(c.name, _TYPES[c.type], not c.nullable or c.name in key) for c in spec.columns]


def expected_uniques(spec: TableSpec) -> set[frozenset[str]]:
    return {frozenset(group) for group in spec.uniques}
