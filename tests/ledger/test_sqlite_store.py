"""The SQLite store: the contract, plus what only a SQLite file can show."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import ledger.sqlite.client
import ledger.sqlite.store
from ledger.chain import chain, link
from ledger.errors import NotALedgerError, SchemaTooNewError, StoreUnavailableError
from ledger.sqlite.schema import (
    APPLICATION_ID,
    SCHEMA,
    SCHEMA_VERSION,
    create_table,
    lookup_sql,
    seek_sql,
    shape_matches,
)
from ledger.sqlite.steps import BATCH_CACHE_KIB, statements_of, writer_connection
from ledger.sqlite.store import _SELECT_STREAMS, SqliteEventStore
from ledger.store import EventStore, Head, StoredEvent, fold_reads
from ledger.tables import Column, TableSpec
from ledger.tree import CHECKPOINTS, TREE
from tests.ledger.contract import SEEN, EventStoreContract
from tests.ledger.helpers import (
    append,
    assert_chain,
    batch_writers,
    poll_event,
    read_all,
    read_streams,
    until_ended,
    user_event,
    user_events,
)


def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


class TestSqliteEventStore(EventStoreContract):
    async def create_store(self, tmp_path: Path) -> EventStore:
        return await SqliteEventStore.open(ledger_file(tmp_path), create=True)

    async def open_again(self, tmp_path: Path, readonly: bool = False) -> EventStore:
        return await SqliteEventStore.open(ledger_file(tmp_path), readonly=readonly)


async def make_ledger(tmp_path: Path, events: int = 3) -> Path:
    """A closed ledger file holding ``events`` registrations."""
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        if events:
            await append(store, user_events(events))
    finally:
        await store.close()
    return path


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# --- append-only ----------------------------------------------------------------------------


async def test_events_cannot_be_updated(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET body = x'00' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET type = type")


async def test_events_cannot_be_deleted(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events")
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def raw_row(seq: int, prev_hash: bytes, stream: str = "poll:forged") -> tuple[object, ...]:
    event = poll_event(stream.removeprefix("poll:"), max(seq, 1))  # a valid body, whatever the seq
    return (seq, event.event_id, event.type, event.stream, event.version, event.body, prev_hash,
            link(prev_hash, event.body))


INSERT = "INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)"


@pytest.mark.parametrize(
    ("seq", "prev_from"),
    [(5, 3), (3, 2), (1, None), (4, 2), (4, None), (0, None), (-1, None)],
    ids=["gap", "reused-seq", "reused-first", "wrong-prev", "zero-prev", "seq-zero", "negative-seq"],
)
async def test_an_insert_that_does_not_extend_the_chain_is_refused(
    tmp_path: Path, seq: int, prev_from: int | None
) -> None:
    path = await make_ledger(tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        hashes = dict(conn.execute("SELECT seq, hash FROM events"))
        prev = hashes[prev_from] if prev_from else bytes(32)
        with pytest.raises(sqlite3.IntegrityError, match="extend the chain"):
            conn.execute(INSERT, raw_row(seq, prev))


async def test_an_insert_that_extends_the_chain_is_accepted(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        (head,) = conn.execute("SELECT hash FROM events WHERE seq = 3").fetchone()
        with conn:
            conn.execute(INSERT, raw_row(4, head))
    store = await SqliteEventStore.open(path)
    try:
        assert_chain(await read_all(store))
    finally:
        await store.close()


# --- opening files --------------------------------------------------------------------------


async def test_opening_a_missing_path_without_create_fails_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    with pytest.raises(NotALedgerError):
        await SqliteEventStore.open(path)
    with pytest.raises(NotALedgerError):
        await SqliteEventStore.open(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


async def test_create_makes_missing_directories_and_a_marked_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    store = await SqliteEventStore.open(path, create=True)
    await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("create", [False, True])
async def test_opening_a_text_file_fails_and_leaves_it_byte_identical(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the votes you are looking for\n" * 200)
    before = fingerprint(path)

    with pytest.raises(NotALedgerError):
        await SqliteEventStore.open(path, create=create)

    assert fingerprint(path) == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("create", [False, True])
async def test_opening_another_applications_database_fails_and_leaves_it_alone(
    tmp_path: Path, create: bool
) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
    before = fingerprint(path)

    with pytest.raises(NotALedgerError):
        await SqliteEventStore.open(path, create=create)

    assert fingerprint(path) == before


async def test_opening_a_ledger_of_a_newer_schema_fails(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 99")
    before = fingerprint(path)

    with pytest.raises(SchemaTooNewError):
        await SqliteEventStore.open(path)
    with pytest.raises(SchemaTooNewError):
        await SqliteEventStore.open(path, create=True, readonly=True)

    assert fingerprint(path) == before


async def test_an_upgraded_ledger_is_refused_by_this_schema(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError):
        await SqliteEventStore.open(path)


async def test_an_empty_file_is_not_a_ledger_unless_create_is_given(tmp_path: Path) -> None:
    path = ledger_file(tmp_path)
    path.touch()
    with pytest.raises(NotALedgerError):
        await SqliteEventStore.open(path)

    store = await SqliteEventStore.open(path, create=True)
    try:
        assert (await append(store, user_events(1)))[0].seq == 1
    finally:
        await store.close()


async def test_a_reopened_ledger_holds_what_was_appended(tmp_path: Path) -> None:
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    appended = await append(store, user_events(4))
    await store.close()

    store = await SqliteEventStore.open(path, create=True)  # create on an existing ledger: no-op
    try:
        assert await read_all(store) == appended
    finally:
        await store.close()


async def test_a_read_only_store_reads_and_never_modifies_the_file(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path, events=5)
    before = fingerprint(path)

    store = await SqliteEventStore.open(path, readonly=True)
    try:
        events = await read_all(store)
        assert await read_streams(store, "user:") == events
        assert (await store.head()).seq == 5
        assert await store.rows(SEEN) == []
        await store.changed()
        async with store.snapshot() as head:  # a read transaction, which writes nothing either
            assert [r[0] async for rows in fold_reads(store).read_shard(0, 1, "poll:") for r in rows] == [
                1, 2, 3, 4, 5,
            ]
        with pytest.raises(StoreUnavailableError):
            await store.append(head, chain(head, user_events(1)))
        with pytest.raises(StoreUnavailableError):
            await store.create_tables([SEEN])
        with pytest.raises(StoreUnavailableError):
            async with store.rewrite_tables():
                pass
        with pytest.raises(StoreUnavailableError):
            await store.probe()
    finally:
        await store.close()

    assert_chain(events)
    assert fingerprint(path) == before


# --- durability settings and locking --------------------------------------------------------


async def test_the_store_uses_wal_and_full_synchronous(tmp_path: Path) -> None:
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        with closing(sqlite3.connect(path)) as fresh:
            assert fresh.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer = store._writer  # the connection that rewrites tables, in a thread of this process
        assert writer is not None
        assert await writer.run(lambda: writer.conn.execute("PRAGMA synchronous").fetchone()) == (2,)
    finally:
        await store.close()
    # the batch writer process makes its connection the same way
    with closing(writer_connection(f"file:{path}", 5000, BATCH_CACHE_KIB)) as batches:
        assert batches.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert batches.execute("PRAGMA busy_timeout").fetchone() == (5000,)
        assert batches.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)


async def test_a_rewrite_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path, events=0)
    store = await SqliteEventStore.open(path)
    try:
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as rival:
            async with store.rewrite_tables():
                # BEGIN IMMEDIATE: the lock is taken before the block writes anything
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    rival.execute("BEGIN IMMEDIATE")
            rival.execute("BEGIN IMMEDIATE")
            rival.execute("ROLLBACK")
    finally:
        await store.close()


async def test_a_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path, events=1)
    store = await SqliteEventStore.open(path, busy_timeout_ms=50)
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as rival:
            rival.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailableError, match="locked"):
                await append(store, user_events(1))
            with pytest.raises(StoreUnavailableError, match="locked"):
                async with store.rewrite_tables():
                    pass
            rival.execute("ROLLBACK")
        assert (await append(store, user_events(1)))[0].seq == 2
    finally:
        await store.close()


# --- reading in chunks ----------------------------------------------------------------------


async def test_a_read_in_the_callers_thread_lets_the_event_loop_run_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server replaying a long log at start-up must still hear SIGTERM (a loop callback)
    monkeypatch.setattr(ledger.sqlite.store, "READ_CHUNK", 3)
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        await append(store, user_events(10))
        read, seen_by_callback = 0, []
        asyncio.get_running_loop().call_soon(lambda: seen_by_callback.append(read))
        async for chunk in store.read_bodies():
            read += len(chunk)
        assert read == 10
        assert seen_by_callback == [3]  # the loop ran after the first chunk, not after the last
    finally:
        await store.close()


@pytest.mark.parametrize("total", [8, 9, 10])
async def test_reads_come_in_chunks_and_miss_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, total: int
) -> None:
    module = ledger.sqlite.store
    monkeypatch.setattr(module, "READ_CHUNK", 3)
    monkeypatch.setattr(module, "_SELECT_STREAMS", _SELECT_STREAMS.replace(" LIMIT 4096", " LIMIT 3"))
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        # a poll stream of several versions between users: pages of a stream read end within it
        events = [user_event() if i % 3 else poll_event("p", i // 3) for i in range(1, total + 1)]
        await append(store, events)
        everything = await read_all(store)
        assert_chain(everything)

        for after, upto in [(0, None), (2, None), (1, 8), (0, 0), (total, None)]:
            for chunks in (
                [chunk async for chunk in store.read(after=after, upto=upto)],
                [chunk async for chunk in store.read_all(after=after, upto=upto)],
            ):
                assert all(1 <= len(chunk) <= 3 for chunk in chunks)
                expected = [e for e in everything if e.seq > after and (upto is None or e.seq <= upto)]
                assert [e for chunk in chunks for e in chunk] == expected
        for prefix, upto in [("", None), ("user:", None), ("poll:p", None), ("poll:p", 7), ("ballot:", None)]:
            chunks = [chunk async for chunk in store.read_streams(prefix, upto=upto)]
            assert all(1 <= len(chunk) <= 3 for chunk in chunks)
            expected = [
                e for e in everything if e.stream.startswith(prefix) and (upto is None or e.seq <= upto)
            ]
            assert [e for chunk in chunks for e in chunk] == expected
    finally:
        await store.close()


async def test_head_and_read_agree_with_another_connection(tmp_path: Path) -> None:
    path = await make_ledger(tmp_path, events=4)
    store = await SqliteEventStore.open(path)
    try:
        with closing(sqlite3.connect(path)) as conn:
            rows = conn.execute("SELECT seq, hash FROM events ORDER BY seq").fetchall()
        assert await store.head() == Head(*rows[-1])
        assert [(e.seq, e.hash) for e in await read_all(store)] == rows
    finally:
        await store.close()



async def test_a_read_cancelled_in_the_readers_thread_leaves_no_old_snapshot_behind(
    tmp_path: Path,
) -> None:
    """The reader's thread finishes a step its caller gave up on: nothing of it may hold the
    next read to the snapshot it began in."""
    path = tmp_path / "ledger.db"
    counter = TableSpec("counter", (Column("n", int), Column("seq", int)))
    store = await SqliteEventStore.open(path, create=True)
    try:
        await store.create_tables([counter])
        await append(store, [], {counter: [(1, 0)]})
        reading = asyncio.ensure_future(store.rows(counter))
        await asyncio.sleep(0)  # its SELECT is handed to the reader's thread
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await asyncio.sleep(0.2)  # and done there
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("UPDATE counter SET seq = 2")

        assert await store.rows(counter) == [(1, 2)]
    finally:
        await store.close()


async def test_a_rewrite_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    path = await make_ledger(tmp_path, events=1)
    # the cancelled rewrite's thread waits out the busy timeout: a short one, so the test is short
    store = await SqliteEventStore.open(path, busy_timeout_ms=1000)
    rival = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        rival.execute("BEGIN IMMEDIATE")  # another process is writing

        async def replace_seen() -> None:
            async with store.rewrite_tables() as rewrite:
                await rewrite.replace(SEEN, [("users", 1)])

        waiting = asyncio.create_task(replace_seen())
        await asyncio.sleep(0.1)  # blocked on the rival's lock, within the busy timeout
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rival.execute("ROLLBACK")

        assert (await append(store, user_events(1)))[0].seq == 2
        assert await store.rows(SEEN) == []
        rival.execute("BEGIN IMMEDIATE")  # and the lock is free for others again
        rival.execute("ROLLBACK")
    finally:
        rival.close()
        await store.close()


# --- the batch writer process ---------------------------------------------------------------


def only_batch_writer() -> int:
    writers = batch_writers(os.getpid())
    assert len(writers) == 1, writers
    return writers[0]


async def commit(store: EventStore, count: int) -> list[StoredEvent]:
    """``count`` registrations committed as one batch at the head; the batch."""
    return await append(store, user_events(count))


async def stalled_batch(
    store: EventStore, writer: int, events: int = 2
) -> tuple[list[StoredEvent], asyncio.Task[Any]]:
    """A batch sent to the batch writer after it was stopped: it waits in the pipe, uncommitted."""
    os.kill(writer, signal.SIGSTOP)
    head = await store.head()
    batch = chain(head, user_events(events))
    committing = asyncio.create_task(store.append(head, batch))
    await asyncio.sleep(0.1)
    return batch, committing


def land(path: Path, batch: list[StoredEvent]) -> None:
    """Write ``batch`` into the log from outside, as a batch writer's COMMIT would have."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executemany(
            "INSERT INTO events (seq, id, type, stream, version, body, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [e[:8] for e in batch],
        )


async def next_batch_writer_stopped(after: int) -> int:
    """Stop the batch writer that replaces ``after`` as soon as it appears; its pid."""
    for _ in range(5000):
        writers = [w for w in batch_writers(os.getpid()) if w != after]
        if writers:
            os.kill(writers[0], signal.SIGSTOP)
            return writers[0]
        await asyncio.sleep(0.001)
    raise AssertionError("no new batch writer was started")


async def test_batches_are_committed_in_a_process_that_ends_with_the_store(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        writer = only_batch_writer()
        batch = await commit(store, 3)
        assert await read_all(store) == batch
        assert only_batch_writer() == writer
    finally:
        await store.close()
    await until_ended(writer)


async def test_the_wal_stays_small_while_batches_keep_coming(tmp_path: Path) -> None:
    """Each batch is checkpointed by the batch writer once it is answered, so the next commit
    starts the WAL again from its head instead of extending it without end."""
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        sizes = []
        for _ in range(150):
            await commit(store, 20)
            sizes.append(Path(f"{path}-wal").stat().st_size)
        assert max(sizes) < 256 * 1024, sizes
        assert len(await read_all(store)) == 3000
    finally:
        await store.close()


async def test_the_batch_writer_ignores_a_stop_signal_meant_for_the_server(tmp_path: Path) -> None:
    # Ctrl-C and service managers signal the whole process group; the server's shutdown still
    # commits what is queued, through the same process
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        writer = only_batch_writer()
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(writer, sig)
            await commit(store, 1)
        assert only_batch_writer() == writer
        assert len(await read_all(store)) == 2
    finally:
        await store.close()


def test_the_batch_writer_process_leaves_out_hashing_asyncio_and_dataclasses() -> None:
    # it lives as long as the server, so its memory counts with the server's: OpenSSL's hashing
    # alone would add 3.6 MiB to it, dataclasses (and the inspect module they import) 1.2 MiB
    probe = ("import sys, ledger.sqlite.batch_writer; "
             "print(sorted({'_hashlib', 'asyncio', 'dataclasses'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


async def test_a_batch_writer_killed_while_idle_is_started_again(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        first = only_batch_writer()
        os.kill(first, signal.SIGKILL)
        await until_ended(first)

        batch = await commit(store, 2)

        assert await read_all(store) == batch
        assert only_batch_writer() != first
    finally:
        await store.close()


@pytest.mark.parametrize("landed", [False, True], ids=["before-its-commit", "after-its-commit"])
async def test_a_batch_whose_writer_dies_with_it_is_in_the_log_once(tmp_path: Path, landed: bool) -> None:
    # Before its COMMIT, the batch must be committed by the next writer; after it (and before the
    # answer), the caller must hear "committed", not get its own events back as someone else's.
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        writer = only_batch_writer()
        batch, committing = await stalled_batch(store, writer)
        if landed:
            land(path, batch)
        os.kill(writer, signal.SIGKILL)

        assert await committing == []

        assert await read_all(store) == batch
    finally:
        await store.close()


async def test_a_batch_is_settled_by_the_log_after_each_writer_that_dies_with_it(tmp_path: Path) -> None:
    # the first writer dies before its COMMIT, the second after it: the caller hears "committed"
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        first = only_batch_writer()
        batch, committing = await stalled_batch(store, first)
        os.kill(first, signal.SIGKILL)
        second = await next_batch_writer_stopped(first)
        land(path, batch)
        os.kill(second, signal.SIGKILL)

        assert await committing == []

        assert await read_all(store) == batch
    finally:
        await store.close()


@pytest.mark.parametrize(("landed", "events"), [(False, 2), (True, 2), (False, 1000)],
                         ids=["before-its-commit", "after-its-commit", "larger-than-the-pipe"])
async def test_a_batch_writer_that_does_not_answer_in_time_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landed: bool, events: int
) -> None:
    # A stopped (or hung) writer would hold every later batch back: after the busy timeout and
    # its patience it is killed, the log settles its batch, and the next batch gets a new writer.
    # A batch larger than the pipe and the transport's buffer never finishes being sent.
    monkeypatch.setattr(ledger.sqlite.client, "BATCH_WRITER_PATIENCE", 0.4)
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True, busy_timeout_ms=100)
    try:
        writer = only_batch_writer()
        batch, committing = await stalled_batch(store, writer, events)
        if landed:
            land(path, batch)

        answered, _ = await asyncio.wait([committing], timeout=5)

        assert answered, "the stopped batch writer held its batch back"
        if landed:
            assert committing.result() == []
        else:
            with pytest.raises(StoreUnavailableError, match=r"did not answer within 0\.5 s"):
                committing.result()
        await until_ended(writer)
        later = await commit(store, 1)
        assert await read_all(store) == (batch if landed else []) + later
    finally:
        with contextlib.suppress(ProcessLookupError):  # let a writer that was not killed finish
            os.kill(writer, signal.SIGCONT)
        await store.close()


async def test_a_batch_writer_that_cannot_start_fails_the_open_then_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ledger_file(tmp_path)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, and ends without a word
    with pytest.raises(StoreUnavailableError, match="batch writer"):
        await SqliteEventStore.open(path, create=True)
    monkeypatch.undo()

    store = await SqliteEventStore.open(path)
    try:
        await store.probe()  # a write through the batch writer's connection
        writer = only_batch_writer()
        monkeypatch.setattr(sys, "executable", "/bin/false")
        os.kill(writer, signal.SIGKILL)
        await until_ended(writer)
        with pytest.raises(StoreUnavailableError, match="batch writer"):
            await store.probe()
    finally:
        monkeypatch.undo()
        await store.close()


async def test_a_caller_cancelled_mid_batch_leaves_the_writer_in_step(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    try:
        writer = only_batch_writer()
        batch, committing = await stalled_batch(store, writer)
        committing.cancel()
        os.kill(writer, signal.SIGCONT)
        with pytest.raises(asyncio.CancelledError):
            await committing

        assert await read_all(store) == batch  # a cancelled caller's batch still commits
        later = await commit(store, 1)
        assert await read_all(store) == batch + later
        assert only_batch_writer() == writer
    finally:
        await store.close()


# --- reads by key ---------------------------------------------------------------------------


def stream_index(conn: sqlite3.Connection) -> str:
    """The name of the index SQLite made for ``UNIQUE (stream, version)``."""
    for _, name, _, _, _ in conn.execute("PRAGMA index_list(events)"):
        if [row[2] for row in conn.execute(f"PRAGMA index_info({name})")] == ["stream", "version"]:
            return str(name)
    raise AssertionError("events has no (stream, version) index")


@pytest.mark.parametrize("analyzed", [False, True])
async def test_a_stream_read_is_a_range_of_the_stream_index_not_a_walk_of_the_log(
    tmp_path: Path, analyzed: bool
) -> None:
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        await append(store, [*user_events(3000), *(poll_event("p", v) for v in range(1, 200))])
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        if analyzed:  # the planner's statistics of a real log: no rescue from a missing ANALYZE
            conn.execute("ANALYZE")
        index = stream_index(conn)
        reads = [("user:abc", -1, "user:abd", 2**63 - 1), ("poll:p", 40, "poll:q", 1500), ("", -1, b"", 10)]
        for params in reads:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_SELECT_STREAMS}", params)]

            search = f"SEARCH e USING INDEX {index} ((stream,version)>(?,?)"
            assert any(step.startswith(search) for step in plan), plan
            assert not any(step.startswith("SCAN e") or "INTEGER PRIMARY KEY" in step for step in plan), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan  # in the index's order as it is


async def test_reads_by_key_of_a_table_search_its_key_and_never_scan_it(tmp_path: Path) -> None:
    path = ledger_file(tmp_path)
    store = await SqliteEventStore.open(path, create=True)
    try:
        await store.create_tables([TREE, CHECKPOINTS])
        nodes = sorted(
            ((idx + 1) << level, level, bytes(32)) for level in range(1, 8) for idx in range(4000 >> level)
        )
        await append(store, [], {TREE: nodes, CHECKPOINTS: [(n, "note") for n in range(1, 2000)]})
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("ANALYZE")
        queries = [
            (lookup_sql(TREE, 3), (6, 1, 32, 3, 256, 7)),
            (lookup_sql(CHECKPOINTS, 2), (5, 900)),
            (seek_sql(CHECKPOINTS, False), (70,)),
            (seek_sql(CHECKPOINTS, True), (70,)),
            (seek_sql(TREE, True), (1 << 40, 0)),
        ]
        for sql, params in queries:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            assert any(step.startswith("SEARCH") for step in plan), (sql, plan)
            assert not any(step.startswith("SCAN") for step in plan), (sql, plan)


async def test_a_snapshot_does_not_hold_other_writers_back(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(ledger_file(tmp_path), create=True)
    other = await SqliteEventStore.open(ledger_file(tmp_path))
    try:
        await store.create_tables([SEEN])
        first = await append(store, user_events(2), {SEEN: [("users", 2)]})
        async with store.snapshot() as head:
            theirs = await asyncio.wait_for(append(other, user_events(1), {SEEN: [("users", 3)]}), 20)

            assert await other.head() == Head(3, theirs[0].hash)
            assert head == await store.head() == Head(2, first[-1].hash)
            assert await read_all(store) == first
            assert await store.rows(SEEN) == [("users", 2)]
        assert await read_all(store) == first + theirs
        assert await store.rows(SEEN) == [("users", 3)]
    finally:
        await other.close()
        await store.close()


# --- the layout of projection tables --------------------------------------------------------

LAYOUT = TableSpec(
    "layout",
    (Column("user_id", str), Column("email", str, nullable=True, unique=True),
     Column("team", str, nullable=True), Column("number", int), Column("hash", bytes)),
    unique=(("team", "number"),),
    seq_column="number",
)
PAIRS = TableSpec("pairs", (Column("poll", str), Column("user", str), Column("seq", int)), key=2)


def fresh_ledger_schema() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in statements_of(SCHEMA):
        conn.execute(statement)
    return conn


@pytest.mark.parametrize("spec", [LAYOUT, PAIRS, SEEN], ids=lambda spec: spec.name)
def test_shape_matches_a_table_made_by_create_table(spec: TableSpec) -> None:
    with closing(fresh_ledger_schema()) as conn:
        assert not shape_matches(conn, spec)  # not there yet
        conn.execute(create_table(spec))
        assert shape_matches(conn, spec)
        conn.execute(create_table(spec))  # IF NOT EXISTS: a no-op
        assert shape_matches(conn, spec)


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE INDEX layout_by_team ON layout (team)",
        "CREATE UNIQUE INDEX layout_by_hash ON layout (hash)",
        "CREATE UNIQUE INDEX layout_by_user ON layout (user_id) WHERE email IS NOT NULL",
        "CREATE TRIGGER layout_audit AFTER INSERT ON layout BEGIN SELECT 1; END",
        "CREATE TRIGGER layout_shout BEFORE DELETE ON LAYOUT BEGIN SELECT RAISE(ABORT, 'no'); END",
    ],
    ids=["an-index", "a-unique-index", "a-partial-index", "a-trigger", "a-trigger-on-the-name-in-capitals"],
)
def test_shape_matches_refuses_a_table_with_an_index_or_trigger_of_its_own(ddl: str) -> None:
    with closing(fresh_ledger_schema()) as conn:
        conn.execute(create_table(LAYOUT))
        conn.execute(ddl)

        assert not shape_matches(conn, LAYOUT)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (" UNIQUE, team", ", team"),  # the email's UNIQUE
        (", UNIQUE (team, number)", ""),
        (", UNIQUE (team, number)", ", UNIQUE (team)"),
        ("PRIMARY KEY (user_id)", "UNIQUE (user_id)"),
        ("number INTEGER NOT NULL", "number INTEGER"),
        ("number INTEGER NOT NULL", "number TEXT NOT NULL"),
        ("hash BLOB NOT NULL", "hash TEXT NOT NULL"),
        ("hash BLOB NOT NULL", "hash NOT NULL"),
        ("email TEXT", "email BLOB"),
        ("team TEXT", "team TEXT NOT NULL"),
        ("hash BLOB NOT NULL, ", "hash BLOB NOT NULL, extra INTEGER, "),
        ("hash BLOB NOT NULL, ", ""),
        ("hash BLOB", "digest BLOB"),
    ],
    ids=["no-unique-column", "no-unique-group", "another-unique-group", "no-primary-key", "nullable",
         "another-integer-type", "another-blob-type", "no-type", "another-text-type", "not-nullable",
         "an-extra-column", "a-missing-column", "a-renamed-column"],
)
def test_shape_matches_refuses_a_table_with_another_column_or_constraint(old: str, new: str) -> None:
    ddl = create_table(LAYOUT)
    assert old in ddl, ddl
    with closing(fresh_ledger_schema()) as conn:
        conn.execute(ddl.replace(old, new))

        assert not shape_matches(conn, LAYOUT)


def test_shape_matches_refuses_a_composite_key_in_another_order() -> None:
    with closing(fresh_ledger_schema()) as conn:
        conn.execute(create_table(PAIRS).replace("PRIMARY KEY (poll, user)", "PRIMARY KEY (user, poll)"))

        assert not shape_matches(conn, PAIRS)
