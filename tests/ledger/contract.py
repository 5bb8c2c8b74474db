"""The contract every event store backend keeps.

Subclass ``EventStoreContract`` once per backend as ``Test<Backend>EventStore`` and override
``create_store`` and ``open_again``; pytest collects only the subclasses (the ``eventsourcing``
library's pattern of one abstract test case run against every backend).
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ledger.chain import chain, link
from ledger.codec import canonical
from ledger.errors import ConcurrencyError, CorruptEventError
from ledger.store import GENESIS_HASH, EventStore, Head, PrivateData
from tests.ledger.helpers import append, assert_chain, poll_event, read_all, user_event, user_events

SEEN = "CREATE TABLE IF NOT EXISTS seen (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
INSERT_SEEN = "INSERT OR REPLACE INTO seen VALUES (?, ?)"


class Boom(Exception):
    """Raised inside a write transaction to make it roll back."""


class EventStoreContract(abc.ABC):
    """Cases every backend must pass. Each test gets a fresh, empty store."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path) -> EventStore:
        """A new, empty store whose data lives under ``tmp_path``."""

    @abc.abstractmethod
    async def open_again(self, tmp_path: Path) -> EventStore:
        """A second store on the same data as ``create_store(tmp_path)`` (as another process would)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = await self.create_store(tmp_path)
        try:
            yield store
        finally:
            await store.close()

    @pytest.fixture
    async def other(self, store: EventStore, tmp_path: Path) -> AsyncIterator[EventStore]:
        other = await self.open_again(tmp_path)
        try:
            yield other
        finally:
            await other.close()

    # --- the head and the chain -------------------------------------------------------------

    async def test_an_empty_log_has_its_head_at_seq_zero_with_the_zero_hash(self, store: EventStore) -> None:
        assert await store.head() == Head(0, bytes(32))
        assert await read_all(store) == []

    async def test_appends_are_numbered_from_one_without_gaps(self, store: EventStore) -> None:
        for size in (1, 3, 1, 5):
            await append(store, user_events(size))

        events = await read_all(store)

        assert [e.seq for e in events] == list(range(1, 11))
        assert await store.head() == Head(10, events[-1].hash)

    async def test_each_event_links_to_the_hash_before_it(self, store: EventStore) -> None:
        first = await append(store, user_events(2))
        second = await append(store, user_events(3))

        assert first[0].prev_hash == GENESIS_HASH
        assert first[0].hash == link(GENESIS_HASH, first[0].body)
        assert second[0].prev_hash == first[-1].hash
        assert_chain(await read_all(store))

    async def test_append_returns_the_rows_that_read_returns(self, store: EventStore) -> None:
        new = user_events(3)

        appended = await append(store, new)

        assert await read_all(store) == appended
        assert [(e.event_id, e.type, e.stream, e.version, e.body) for e in appended] == [
            (n.event_id, n.type, n.stream, n.version, n.body) for n in new
        ]

    async def test_the_transaction_head_moves_with_each_append(self, store: EventStore) -> None:
        async with store.write() as tx:
            assert tx.head == Head(0, GENESIS_HASH)
            first = await tx.append(user_events(2))
            assert tx.head == Head(2, first[-1].hash)
            second = await tx.append(user_events(1))
            assert second[0].seq == 3
            assert second[0].prev_hash == first[-1].hash
            assert tx.head == Head(3, second[0].hash)
        assert await store.head() == Head(3, second[0].hash)

    async def test_appending_nothing_changes_nothing(self, store: EventStore) -> None:
        async with store.write() as tx:
            assert await tx.append([]) == []
        assert await store.head() == Head(0, GENESIS_HASH)

    # --- reading ----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("after", "upto", "expected"),
        [(0, None, range(1, 11)), (4, None, range(5, 11)), (0, 6, range(1, 7)), (3, 7, range(4, 8)),
         (10, None, range(0)), (5, 5, range(0)), (7, 3, range(0)), (0, 0, range(0)), (9, 99, range(10, 11))],
    )
    async def test_read_honours_after_and_upto(
        self, store: EventStore, after: int, upto: int | None, expected: range
    ) -> None:
        await append(store, user_events(10))

        events = await read_all(store, after=after, upto=upto)

        assert [e.seq for e in events] == list(expected)

    async def test_read_keeps_to_one_stream_prefix(self, store: EventStore) -> None:
        await append(store, [user_event("a"), poll_event("p1", 1), user_event("b")])
        await append(store, [poll_event("p1", 2), poll_event("p2", 1), poll_event("p1", 3)])

        polls = await read_all(store, stream_prefix="poll:")
        p1 = await read_all(store, stream_prefix="poll:p1")
        users_after_1 = await read_all(store, after=1, stream_prefix="user:")
        p1_upto_4 = await read_all(store, upto=4, stream_prefix="poll:p1")

        assert [e.seq for e in polls] == [2, 4, 5, 6]
        assert [(e.seq, e.version) for e in p1] == [(2, 1), (4, 2), (6, 3)]
        assert [e.stream for e in users_after_1] == ["user:b"]
        assert [e.seq for e in p1_upto_4] == [2, 4]
        assert await read_all(store, stream_prefix="ballot:") == []

    async def test_read_returns_every_event_in_order_across_chunks(self, store: EventStore) -> None:
        # more events than any backend's read chunk (the SQLite store reads 4096 at a time)
        await append(store, user_events(5000))

        everything = await read_all(store)
        middle = await read_all(store, after=4000, upto=4500)
        users = await read_all(store, after=10, stream_prefix="user:")

        assert_chain(everything)
        assert len(everything) == 5000
        assert [e.seq for e in middle] == list(range(4001, 4501))
        assert [e.seq for e in users] == list(range(11, 5001))

    @pytest.mark.parametrize("count", [1, 2, 3])
    async def test_shards_share_the_shared_streams_and_split_the_others_by_their_last_character(
        self, store: EventStore, count: int
    ) -> None:
        ids = [*"0123456789abcdef", "ü", "名", "🗳", "ab", "ba"]
        await append(store, [user_event(f"user-{i}") for i in ids[:10]] + [poll_event("p1", 1)])
        await append(store, [user_event(f"user-{i}") for i in ids[10:]] + [poll_event("p2", 1)])
        everything = [(e.seq, e.body, e.hash, e.private_body, e.stream) for e in await read_all(store)]

        shards = [
            [row async for rows in store.read_shard(index, count, "poll:") for row in rows]
            for index in range(count)
        ]
        upto_12 = [row async for rows in store.read_shard(0, count, "poll:", upto=12) for row in rows]

        polls = [row for row in everything if row[4].startswith("poll:")]
        for index, shard in enumerate(shards):
            assert shard == sorted(shard)
            assert shard == [
                row for row in everything if row in polls or ord(row[4][-1]) % count == index
            ]
        assert upto_12 == [row for row in shards[0] if row[0] <= 12]
        assert sorted(row for shard in shards for row in shard if row not in polls) == [
            row for row in everything if row not in polls
        ]

    async def test_a_shard_out_of_range_is_refused(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="no shard 2 of 2"):
            [rows async for rows in store.read_shard(2, 2, "poll:")]

    async def test_shards_read_every_event_across_chunks(self, store: EventStore) -> None:
        await append(store, user_events(5000))

        shards = [[row async for rows in store.read_shard(i, 2, "poll:") for row in rows] for i in (0, 1)]

        assert sorted(row[0] for shard in shards for row in shard) == list(range(1, 5001))
        assert min(len(shard) for shard in shards) > 2000  # random ids end in either half evenly


    async def test_a_taken_stream_version_raises_and_appends_nothing(self, store: EventStore) -> None:
        kept = await append(store, [poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            async with store.write() as tx:
                await tx.append([poll_event("q", 1), user_event(), poll_event("p", 1)])

        assert await read_all(store) == kept
        assert await store.head() == Head(1, kept[0].hash)

    async def test_a_stream_version_taken_twice_in_one_append_raises(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError):
            await append(store, [poll_event("p", 1), poll_event("p", 1)])
        assert await store.head() == Head(0, GENESIS_HASH)

    async def test_a_taken_event_id_raises_and_appends_nothing(self, store: EventStore) -> None:
        first = poll_event("p", 1)
        await append(store, [first])

        with pytest.raises(ConcurrencyError):
            await append(store, [poll_event("q", 1)._replace(event_id=first.event_id)])

        assert [e.event_id for e in await read_all(store)] == [first.event_id]

    async def test_the_chain_continues_after_a_conflict(self, store: EventStore) -> None:
        await append(store, [poll_event("p", 1)])
        with pytest.raises(ConcurrencyError):
            await append(store, [poll_event("p", 1)])

        await append(store, [poll_event("p", 2)])

        events = await read_all(store)
        assert_chain(events)
        assert [(e.seq, e.version) for e in events] == [(1, 1), (2, 2)]

    async def test_an_exception_inside_the_write_block_rolls_everything_back(self, store: EventStore) -> None:
        kept = await append(store, user_events(2))

        with pytest.raises(Boom):
            async with store.write() as tx:
                await tx.append(user_events(3))
                raise Boom

        assert await read_all(store) == kept
        later = await append(store, user_events(1))
        assert later[0].seq == 3
        assert_chain(await read_all(store))

    async def test_a_cancelled_write_block_rolls_back(self, store: EventStore) -> None:
        appended = asyncio.Event()

        async def write_forever() -> None:
            async with store.write() as tx:
                await tx.append(user_events(2))
                appended.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(write_forever())
        await appended.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await store.head() == Head(0, GENESIS_HASH)
        assert (await append(store, user_events(1)))[0].seq == 1

    # --- group commit: one batch, appended only at the head it was decided on ------------------

    async def test_a_batch_decided_at_the_head_is_appended_with_its_statements(
        self, store: EventStore
    ) -> None:
        await store.execute_script(SEEN)
        head = await store.head()
        batch = chain(head, user_events(3))

        assert await store.commit_batch(head, batch, [(INSERT_SEEN, [("users", 3), ("polls", 0)])]) == []

        assert await read_all(store) == batch
        assert sorted(await store.fetch_all("SELECT name, seq FROM seen")) == [("polls", 0), ("users", 3)]
        assert await store.head() == Head(3, batch[-1].hash)
        later = chain(await store.head(), user_events(1))
        assert await store.commit_batch(await store.head(), later, []) == []
        assert_chain(await read_all(store))

    async def test_a_batch_decided_behind_the_head_appends_nothing_and_returns_what_it_missed(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.execute_script(SEEN)
        stale = await store.head()
        theirs = await append(other, user_events(2))

        missed = await store.commit_batch(stale, chain(stale, user_events(1)), [(INSERT_SEEN, [("x", 1)])])

        assert missed == theirs
        assert await read_all(store) == theirs
        assert await store.fetch_all("SELECT * FROM seen") == []
        head = await store.head()
        assert await store.commit_batch(head, chain(head, user_events(1)), []) == []
        assert_chain(await read_all(store))

    async def test_a_batch_decided_beyond_the_head_is_refused_as_a_lost_log(self, store: EventStore) -> None:
        await append(store, user_events(1))
        ahead = Head(5, bytes(range(32)))

        with pytest.raises(CorruptEventError):
            await store.commit_batch(ahead, chain(ahead, user_events(1)), [])

        assert (await store.head()).seq == 1

    async def test_a_batch_decided_on_another_history_is_refused(self, store: EventStore) -> None:
        (first,) = await append(store, user_events(1))
        forked = Head(1, bytes(range(32)))  # same position, different hash

        with pytest.raises(CorruptEventError):
            await store.commit_batch(forked, chain(forked, user_events(1)), [])

        assert await read_all(store) == [first]

    async def test_a_conflicting_batch_appends_nothing_and_runs_no_statements(
        self, store: EventStore
    ) -> None:
        await store.execute_script(SEEN)
        kept = await append(store, [poll_event("p", 1)])
        head = await store.head()
        batch = chain(head, [poll_event("q", 1), user_event(), poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            await store.commit_batch(head, batch, [(INSERT_SEEN, [("polls", 4)])])

        assert await read_all(store) == kept
        assert await store.fetch_all("SELECT * FROM seen") == []
        assert await store.commit_batch(head, chain(head, [poll_event("p", 2)]), []) == []

    async def test_a_failing_statement_takes_its_batch_down_with_it(self, store: EventStore) -> None:
        await store.execute_script(SEEN)
        head = await store.head()

        with pytest.raises(ConcurrencyError):  # NOT NULL violated
            await store.commit_batch(head, chain(head, user_events(2)), [(INSERT_SEEN, [("users", None)])])

        assert await store.head() == Head(0, bytes(32))

    async def test_batches_through_two_stores_at_once_never_fork_the_chain(
        self, store: EventStore, other: EventStore
    ) -> None:
        async def committer(target: EventStore) -> int:
            retries = 0
            for _ in range(20):
                while True:
                    head = await target.head()
                    if not await target.commit_batch(head, chain(head, user_events(3)), []):
                        break
                    retries += 1
                await asyncio.sleep(0)
            return retries

        await asyncio.gather(committer(store), committer(other))

        events = await read_all(store)
        assert len(events) == 120
        assert_chain(events)

    # --- snapshots --------------------------------------------------------------------------

    async def test_a_snapshot_gives_its_head_and_its_inline_reads_see_nothing_after_it(
        self, store: EventStore, other: EventStore
    ) -> None:
        first = await append(store, user_events(3))
        async with store.snapshot() as head:
            await append(other, user_events(2))
            assert head == Head(first[-1].seq, first[-1].hash)
            assert [e.seq async for chunk in store.read(inline=True) for e in chunk] == [1, 2, 3]
            assert [r[0] async for rows in store.read_bodies(inline=True) for r in rows] == [1, 2, 3]
            assert await store.fetch_all("SELECT count(*) FROM events", inline=True) == [(3,)]
        assert len(await read_all(store)) == 5

    # --- private data -----------------------------------------------------------------------

    async def test_private_data_round_trips_beside_its_event(self, store: EventStore) -> None:
        private = PrivateData(os.urandom(16), canonical({"email": "ada@example.org", "name": "Ada"}))
        await append(store, [user_event("a", private), user_event("b")])

        with_private, without = await read_all(store)

        assert with_private.private == private
        assert without.private is None

    async def test_private_data_rolls_back_with_its_event(self, store: EventStore) -> None:
        private = PrivateData(b"salt", b"{}")
        with pytest.raises(ConcurrencyError):
            await append(store, [user_event("a", private), poll_event("p", 1), poll_event("p", 1)])

        event = user_event("a", private)
        await append(store, [event])
        (stored,) = await read_all(store)
        assert (stored.event_id, stored.private) == (event.event_id, private)

    # --- inline projections -----------------------------------------------------------------

    async def test_projection_rows_commit_and_roll_back_with_the_events(self, store: EventStore) -> None:
        await store.execute_script(SEEN)
        await store.execute_script(SEEN)  # idempotent

        async with store.write() as tx:
            (event,) = await tx.append(user_events(1))
            await tx.execute_many("INSERT INTO seen VALUES (?, ?)", [("users", event.seq)])
        with pytest.raises(Boom):
            async with store.write() as tx:
                await tx.append(user_events(1))
                await tx.execute_many("INSERT OR REPLACE INTO seen VALUES (?, ?)", [("users", 2)])
                raise Boom

        assert await store.fetch_all("SELECT name, seq FROM seen") == [("users", 1)]
        assert (await store.head()).seq == 1

    async def test_a_transaction_reads_its_own_rows_before_others_can(self, store: EventStore) -> None:
        await store.execute_script(SEEN)

        async with store.write() as tx:
            await tx.execute_many("INSERT INTO seen VALUES (?, ?)", [("users", 1), ("polls", 2)])
            assert sorted(await tx.fetch_all("SELECT name, seq FROM seen WHERE seq > ?", [0])) == [
                ("polls", 2), ("users", 1),
            ]
            assert await store.fetch_all("SELECT name FROM seen") == []

        assert len(await store.fetch_all("SELECT name FROM seen")) == 2

    # --- other writers ----------------------------------------------------------------------

    async def test_write_transactions_of_one_store_take_turns(self, store: EventStore) -> None:
        async def writer(count: int) -> None:
            for _ in range(count):
                async with store.write() as tx:
                    await asyncio.sleep(0)
                    await tx.append(user_events(1))

        await asyncio.gather(writer(10), writer(10), writer(10))

        events = await read_all(store)
        assert len(events) == 30
        assert_chain(events)

    async def test_changed_reports_appends_made_through_another_store(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.changed()  # the first call may say anything: it sets the baseline
        assert await store.changed() is False

        await append(other, user_events(1))

        assert await store.changed() is True
        assert await store.changed() is False

    async def test_a_write_transaction_starts_from_what_another_store_appended(
        self, store: EventStore, other: EventStore
    ) -> None:
        theirs = await append(other, user_events(2))

        async with store.write() as tx:
            assert tx.head == Head(2, theirs[-1].hash)
            assert await tx.read_after(0) == theirs
            assert await tx.read_after(1) == theirs[1:]
            mine = await tx.append(user_events(1))

        assert mine[0].prev_hash == theirs[-1].hash
        assert_chain(await read_all(other))

    async def test_two_stores_writing_at_once_share_one_gapless_chain(
        self, store: EventStore, other: EventStore
    ) -> None:
        async def writer(target: EventStore) -> None:
            for _ in range(15):
                await append(target, user_events(2))
                await asyncio.sleep(0)

        await asyncio.gather(writer(store), writer(other))

        events = await read_all(store)
        assert len(events) == 60
        assert_chain(events)
        assert await read_all(other) == events

    async def test_the_same_stream_version_through_two_stores_is_taken_once(
        self, store: EventStore, other: EventStore
    ) -> None:
        await append(store, [poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            await append(other, [poll_event("p", 1)])

        assert [e.stream for e in await read_all(other)] == ["poll:p"]
