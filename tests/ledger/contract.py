"""The contract every event store backend keeps, in events and typed rows: no SQL.

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
from ledger.errors import ConcurrencyError, CorruptEventError, StoreUnavailableError
from ledger.store import GENESIS_HASH, EventStore, Head, PrivateData, StoredEvent, fold_reads, shard_of
from ledger.tables import Column, Row, TableSpec
from tests.ledger.helpers import (
    answered_inline,
    append,
    append_retrying,
    assert_chain,
    poll_event,
    read_all,
    read_streams,
    stream_event,
    user_event,
    user_events,
)

SEEN = TableSpec("seen", (Column("name", str), Column("seq", int)))
"""A projection's positions: a row per name, replaced by each newer one."""
ACCOUNTS = TableSpec(
    "accounts",
    (Column("user_id", str), Column("email", str, nullable=True, unique=True),
     Column("team", str, nullable=True), Column("number", int), Column("seq", int)),
    unique=(("team", "number"),),
    replace=False,
)
"""Rows that must not collide: a taken key, email or (team, number) fails the write."""
BALLOTS = TableSpec(
    "ballots", (Column("poll", str), Column("user", str), Column("count", int), Column("seq", int)), key=2
)
"""A table whose key is two columns."""
READ_CHUNK = 4096  # the largest read chunk of any backend: the long reads go past it


async def changed_soon(store: EventStore) -> bool:
    """Whether ``store.changed()`` says yes within a second: a commit made elsewhere (another
    node's) may reach a backend a moment after it, and a backend may say yes when unsure."""
    for _ in range(100):
        if await store.changed():
            return True
        await asyncio.sleep(0.01)
    return False


class Boom(Exception):
    """Raised inside a rewrite to make it roll back."""


async def shard(store: EventStore, index: int, count: int, shared: str, upto: int | None = None) -> list[Row]:
    return [row async for rows in fold_reads(store).read_shard(index, count, shared, upto) for row in rows]


def account(
    user_id: str, email: str | None, team: str | None = None, number: int | None = 0, seq: int = 1
) -> Row:
    return (user_id, email, team, number, seq)


class EventStoreContract(abc.ABC):
    """Cases every backend must pass. Each test gets a fresh, empty store."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path) -> EventStore:
        """A new, empty store whose data lives under ``tmp_path``."""

    @abc.abstractmethod
    async def open_again(self, tmp_path: Path, readonly: bool = False) -> EventStore:
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
        assert await read_streams(store, "") == []

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

    async def test_read_returns_the_events_as_they_were_appended(self, store: EventStore) -> None:
        new = user_events(3)

        appended = await append(store, new)

        assert await read_all(store) == appended
        assert [(e.event_id, e.type, e.stream, e.version, e.body) for e in appended] == [
            (n.event_id, n.type, n.stream, n.version, n.body) for n in new
        ]

    async def test_the_head_moves_to_the_last_event_of_each_batch(self, store: EventStore) -> None:
        first = await append(store, user_events(2))
        assert await store.head() == Head(2, first[-1].hash)

        second = await append(store, user_events(1))

        assert (second[0].seq, second[0].prev_hash) == (3, first[-1].hash)
        assert await store.head() == Head(3, second[0].hash)

    async def test_appending_nothing_changes_nothing(self, store: EventStore) -> None:
        assert await append(store, []) == []
        assert await store.head() == Head(0, GENESIS_HASH)
        (event,) = await append(store, user_events(1))

        assert await append(store, []) == []

        assert await store.head() == Head(1, event.hash)
        assert await read_all(store) == [event]

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

    async def test_read_returns_every_event_in_order_across_chunks(self, store: EventStore) -> None:
        await append(store, user_events(READ_CHUNK + 904))

        everything = await read_all(store)
        middle = await read_all(store, after=4000, upto=4500)

        assert_chain(everything)
        assert len(everything) == READ_CHUNK + 904
        assert [e.seq for e in middle] == list(range(4001, 4501))

    # --- reading by stream ------------------------------------------------------------------

    async def test_read_streams_reads_one_stream_or_every_stream_under_a_prefix(
        self, store: EventStore
    ) -> None:
        await append(store, [user_event("a"), poll_event("p1", 1), user_event("b")])
        await append(store, [poll_event("p1", 2), poll_event("p2", 1), poll_event("p1", 3)])
        everything = await read_all(store)

        polls = await read_streams(store, "poll:")
        p1 = await read_streams(store, "poll:p1")
        users = await read_streams(store, "user:")

        assert polls == [e for e in everything if e.stream.startswith("poll:")]
        assert [e.seq for e in polls] == [2, 4, 5, 6]
        assert [(e.seq, e.version) for e in p1] == [(2, 1), (4, 2), (6, 3)]
        assert [(e.seq, e.stream) for e in users] == [(1, "user:a"), (3, "user:b")]
        assert await read_streams(store, "user:b") == [everything[2]]
        assert await read_streams(store, "") == everything
        assert await read_streams(store, "ballot:") == []

    @pytest.mark.parametrize(
        ("upto", "expected"), [(None, [2, 4, 6]), (4, [2, 4]), (5, [2, 4]), (1, []), (0, [])]
    )
    async def test_read_streams_stops_at_upto(
        self, store: EventStore, upto: int | None, expected: list[int]
    ) -> None:
        await append(store, [user_event("a"), poll_event("p1", 1), user_event("b")])
        await append(store, [poll_event("p1", 2), poll_event("p2", 1), poll_event("p1", 3)])

        assert [e.seq for e in await read_streams(store, "poll:p1", upto=upto)] == expected

    async def test_read_streams_returns_no_stream_that_merely_sorts_near_the_prefix(
        self, store: EventStore
    ) -> None:
        inside = ["user:a", "user:a-1", "user:ab", "user:a\U0010ffff", "user:a\U0010ffffz"]
        under = ["user:", "user:`", "user:A", "user:b", "user:b\x01"]  # under "user:", not "user:a"
        near = [*under, "user;", "usera", "user", "poll:user:a", ""]
        await append(store, [stream_event(name) for name in near[:5] + inside + near[5:]])

        found = await read_streams(store, "user:a")

        assert sorted(e.stream for e in found) == sorted(inside)
        assert [e.seq for e in found] == sorted(e.seq for e in found)
        assert [e.stream for e in await read_streams(store, "user:a-1")] == ["user:a-1"]
        assert {e.stream for e in await read_streams(store, "user:")} == {*under, *inside}
        assert [e.stream for e in await read_streams(store, "user:a\U0010ffff")] == inside[3:]
        assert len(await read_streams(store, "")) == len(inside) + len(near)

    async def test_read_streams_returns_events_in_seq_order_across_chunks(self, store: EventStore) -> None:
        # user streams of random names, so their names' order is not the order of the log, and
        # one poll stream threaded through them: every read comes back in seq order regardless
        events, version = [], 0
        for i in range(READ_CHUNK + 904):
            events.append(user_event())
            if i % 2:
                version += 1
                events.append(poll_event("p", version))
        await append(store, events)
        everything = await read_all(store)

        users = await read_streams(store, "user:")
        poll = await read_streams(store, "poll:p")
        upto = await read_streams(store, "user:", upto=len(everything) // 2)

        assert users == [e for e in everything if e.stream.startswith("user:")]
        assert len(users) == READ_CHUNK + 904
        assert [e.version for e in poll] == list(range(1, len(poll) + 1))
        assert poll == [e for e in everything if e.stream == "poll:p"]
        assert upto == [e for e in users if e.seq <= len(everything) // 2]
        assert await read_streams(store, "") == everything

    async def test_read_streams_of_a_stream_with_many_versions_misses_none(self, store: EventStore) -> None:
        await append(store, [poll_event("p", v) for v in range(1, READ_CHUNK + 11)] + [poll_event("q", 1)])

        poll = await read_streams(store, "poll:p")

        assert [(e.seq, e.version) for e in poll] == [(v, v) for v in range(1, READ_CHUNK + 11)]

    # --- bulk reads for folding (FoldReads) -------------------------------------------------

    async def test_fold_reads_yield_the_events_that_read_yields(self, store: EventStore) -> None:
        private = PrivateData(os.urandom(16), canonical({"email": "ada@example.org"}))
        await append(store, [user_event("a", private), poll_event("p", 1), *user_events(3)])
        events = [e async for chunk in store.read() for e in chunk]
        reads = fold_reads(store)

        assert [e async for chunk in reads.read_all() for e in chunk] == events
        assert [e async for chunk in reads.read_all(2, 4) for e in chunk] == events[2:4]
        assert [r async for rows in reads.read_bodies() for r in rows] == [
            (e.seq, e.body, e.hash, e.private_body) for e in events
        ]
        assert [r async for rows in reads.read_bodies(after=3) for r in rows] == [
            (e.seq, e.body, e.hash, e.private_body) for e in events[3:]
        ]
        assert await shard(store, 0, 1, "poll:") == [
            (e.seq, e.body, e.hash, e.private_body, e.stream) for e in events
        ]

    @pytest.mark.parametrize("count", [1, 2, 3])
    async def test_shards_share_the_shared_streams_and_split_the_others_by_their_last_character(
        self, store: EventStore, count: int
    ) -> None:
        ids = [*"0123456789abcdef", "ü", "名", "🗳", "ab", "ba"]
        await append(store, [user_event(f"user-{i}") for i in ids[:10]] + [poll_event("p1", 1)])
        await append(store, [user_event(f"user-{i}") for i in ids[10:]] + [poll_event("p2", 1)])
        await append(store, [stream_event("", 1), stream_event("poll", 1)])
        everything = [(e.seq, e.body, e.hash, e.private_body, e.stream) for e in await read_all(store)]

        shards = [await shard(store, index, count, "poll:") for index in range(count)]
        upto_12 = await shard(store, 0, count, "poll:", upto=12)

        polls = [row for row in everything if row[4].startswith("poll:")]
        for index, rows in enumerate(shards):
            assert rows == sorted(rows)
            assert rows == [row for row in everything if row in polls or shard_of(row[4], count) == index]
        assert upto_12 == [row for row in shards[0] if row[0] <= 12]
        assert sorted(row for rows in shards for row in rows if row not in polls) == [
            row for row in everything if row not in polls
        ]

    async def test_a_shard_of_an_empty_shared_prefix_holds_every_event(self, store: EventStore) -> None:
        await append(store, user_events(5))

        assert [row[0] for row in await shard(store, 1, 3, "")] == [1, 2, 3, 4, 5]

    @pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
    async def test_a_shard_out_of_range_is_refused(self, store: EventStore, index: int, count: int) -> None:
        with pytest.raises(ValueError, match=f"no shard {index} of {count}"):
            await shard(store, index, count, "poll:")

    async def test_shards_read_every_event_across_chunks(self, store: EventStore) -> None:
        await append(store, user_events(READ_CHUNK + 904))

        shards = [await shard(store, i, 2, "poll:") for i in (0, 1)]

        assert sorted(row[0] for rows in shards for row in rows) == list(range(1, READ_CHUNK + 905))
        assert min(len(rows) for rows in shards) > 2000  # random ids end in either half evenly

    # --- conflicts --------------------------------------------------------------------------

    async def test_a_taken_stream_version_raises_and_appends_nothing(self, store: EventStore) -> None:
        kept = await append(store, [poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            await append(store, [poll_event("q", 1), user_event(), poll_event("p", 1)])

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

    async def test_an_event_id_taken_twice_in_one_append_raises(self, store: EventStore) -> None:
        first = poll_event("p", 1)

        with pytest.raises(ConcurrencyError):
            await append(store, [first, poll_event("q", 1)._replace(event_id=first.event_id)])

        assert await store.head() == Head(0, GENESIS_HASH)

    async def test_the_chain_continues_after_a_conflict(self, store: EventStore) -> None:
        await append(store, [poll_event("p", 1)])
        with pytest.raises(ConcurrencyError):
            await append(store, [poll_event("p", 1)])

        await append(store, [poll_event("p", 2)])

        events = await read_all(store)
        assert_chain(events)
        assert [(e.seq, e.version) for e in events] == [(1, 1), (2, 2)]

    # --- a batch is appended only at the head it was decided on --------------------------------

    async def test_a_batch_decided_at_the_head_is_appended_with_its_rows(self, store: EventStore) -> None:
        await store.create_tables([SEEN])
        head = await store.head()
        batch = chain(head, user_events(3))

        assert await store.append(head, batch, {SEEN: [("users", 3), ("polls", 0)]}) == []

        assert await read_all(store) == batch
        assert await store.rows(SEEN) == [("polls", 0), ("users", 3)]
        assert await store.head() == Head(3, batch[-1].hash)
        later = chain(await store.head(), user_events(1))
        assert await store.append(await store.head(), later) == []
        assert_chain(await read_all(store))

    async def test_a_batch_decided_behind_the_head_appends_nothing_and_returns_what_it_missed(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.create_tables([SEEN])
        mine = await append(store, user_events(1))
        stale = await store.head()
        theirs = await append(other, user_events(2))

        missed = await store.append(stale, chain(stale, user_events(1)), {SEEN: [("x", 1)]})

        assert missed == theirs
        assert await read_all(store) == mine + theirs
        assert await store.rows(SEEN) == []
        head = await store.head()
        assert await store.append(head, chain(head, user_events(1))) == []
        assert_chain(await read_all(store))

    async def test_a_batch_decided_on_the_empty_log_returns_everything_once_there_is_a_log(
        self, store: EventStore, other: EventStore
    ) -> None:
        theirs = await append(other, user_events(2))
        genesis = Head(0, GENESIS_HASH)

        assert await store.append(genesis, chain(genesis, user_events(1))) == theirs

    async def test_a_batch_decided_beyond_the_head_is_refused_as_a_lost_log(self, store: EventStore) -> None:
        await append(store, user_events(1))
        ahead = Head(5, bytes(range(32)))

        with pytest.raises(CorruptEventError):
            await store.append(ahead, chain(ahead, user_events(1)))

        assert (await store.head()).seq == 1

    @pytest.mark.parametrize("behind", [0, 1, 2], ids=["at-the-head", "one-behind", "two-behind"])
    async def test_a_batch_decided_on_another_history_is_refused(
        self, store: EventStore, behind: int
    ) -> None:
        kept = await append(store, user_events(3))
        forked = Head(3 - behind, bytes(range(32)))  # a position the log has, with another hash

        with pytest.raises(CorruptEventError):
            await store.append(forked, chain(forked, user_events(1)))

        assert await read_all(store) == kept

    async def test_a_batch_decided_on_another_genesis_is_refused(self, store: EventStore) -> None:
        kept = await append(store, user_events(1))
        forked = Head(0, bytes(range(32)))

        with pytest.raises(CorruptEventError):
            await store.append(forked, chain(forked, user_events(1)))

        assert await read_all(store) == kept

    async def test_a_conflicting_batch_appends_nothing_and_writes_no_rows(self, store: EventStore) -> None:
        await store.create_tables([SEEN])
        kept = await append(store, [poll_event("p", 1)], {SEEN: [("polls", 1)]})
        head = await store.head()
        batch = chain(head, [poll_event("q", 1), user_event(), poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            await store.append(head, batch, {SEEN: [("polls", 4), ("users", 3)]})

        assert await read_all(store) == kept
        assert await store.rows(SEEN) == [("polls", 1)]
        assert await store.append(head, chain(head, [poll_event("p", 2)])) == []

    async def test_batches_through_two_stores_at_once_never_fork_the_chain(
        self, store: EventStore, other: EventStore
    ) -> None:
        async def committer(target: EventStore) -> int:
            retries = 0
            for _ in range(20):
                while True:
                    head = await target.head()
                    if not await target.append(head, chain(head, user_events(3))):
                        break
                    retries += 1
                await asyncio.sleep(0)
            return retries

        await asyncio.gather(committer(store), committer(other))

        events = await read_all(store)
        assert len(events) == 120
        assert_chain(events)

    async def test_two_stores_appending_at_once_share_one_gapless_chain(
        self, store: EventStore, other: EventStore
    ) -> None:
        async def writer(target: EventStore) -> None:
            for _ in range(15):
                await append_retrying(target, user_events(2))
                await asyncio.sleep(0)

        await asyncio.gather(writer(store), writer(other))

        events = await read_all(store)
        assert len(events) == 60
        assert_chain(events)
        assert await read_all(other) == events

    async def test_appends_and_rewrites_through_one_store_take_turns(self, store: EventStore) -> None:
        await store.create_tables([SEEN])

        async def writer(name: str) -> None:
            for count in range(1, 11):
                await append_retrying(store, user_events(1), {SEEN: [(name, count)]})

        async def rewriter() -> None:
            for _ in range(5):
                async with store.rewrite_tables() as rewrite:
                    rows = await rewrite.rows(SEEN)
                    await asyncio.sleep(0)
                    assert await rewrite.read_after(rewrite.head.seq) == []
                    await rewrite.replace(SEEN, rows)

        await asyncio.gather(writer("a"), writer("b"), rewriter(), writer("c"))

        events = await read_all(store)
        assert len(events) == 30
        assert_chain(events)
        assert await store.rows(SEEN) == [("a", 10), ("b", 10), ("c", 10)]

    async def test_the_same_stream_version_through_two_stores_is_taken_once(
        self, store: EventStore, other: EventStore
    ) -> None:
        await append(store, [poll_event("p", 1)])

        with pytest.raises(ConcurrencyError):
            await append(other, [poll_event("p", 1)])

        assert [e.stream for e in await read_all(other)] == ["poll:p"]

    # --- projection rows --------------------------------------------------------------------

    async def test_rows_of_a_table_never_created_are_none(self, store: EventStore) -> None:
        assert await store.rows(SEEN) == []

    async def test_creating_tables_again_keeps_their_rows(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, user_events(1), {SEEN: [("users", 1)], BALLOTS: [("p", "u", 1, 1)]})

        await store.create_tables([SEEN, BALLOTS, ACCOUNTS])
        await store.create_tables([SEEN])

        assert await store.rows(SEEN) == [("users", 1)]
        assert await store.rows(BALLOTS) == [("p", "u", 1, 1)]
        assert await store.rows(ACCOUNTS) == []

    async def test_rows_come_back_in_key_order(self, store: EventStore) -> None:
        await store.create_tables([BALLOTS])
        rows = [
            ("p2", "a", 1, 1), ("p1", "b", 1, 2), ("p1", "a", 2, 3), ("p10", "a", 1, 4), ("p2", "A", 1, 5),
        ]

        await append(store, [], {BALLOTS: rows})

        assert await store.rows(BALLOTS) == sorted(rows)

    async def test_a_lookup_finds_exactly_the_rows_with_the_keys_asked_for(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, [], {
            SEEN: [(f"n{i}", i) for i in range(50)],
            BALLOTS: [("p1", "a", 1, 1), ("p1", "b", 1, 2), ("p2", "a", 2, 3), ("p10", "a", 1, 4)],
        })

        found = await store.lookup(SEEN, [("n7",), ("n42",), ("n7",), ("missing",)])
        assert found == [("n42", 42), ("n7", 7)]
        assert await store.lookup(SEEN, []) == []
        assert await store.lookup(BALLOTS, [("p2", "a"), ("p1", "b"), ("p1", "c"), ("a", "p1")]) == [
            ("p1", "b", 1, 2), ("p2", "a", 2, 3),
        ]
        assert await store.lookup(ACCOUNTS, [("u",)]) == []  # a table never created

    async def test_a_lookup_of_thousands_of_keys_finds_them_all_in_key_order(self, store: EventStore) -> None:
        # as a rebuild's check of the tree's nodes appended while it folded asks
        await store.create_tables([BALLOTS])
        rows = [(f"p{i % 7}", f"u{i:05}", 1, i) for i in range(5000)]
        await append(store, [], {BALLOTS: rows})

        keys = [row[:2] for row in reversed(rows)] + [("p0", "u00000"), ("nobody", "u1")]
        assert await store.lookup(BALLOTS, keys) == sorted(rows)

    async def test_a_seek_finds_the_nearest_row_at_or_past_a_key_either_way(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, [], {
            SEEN: [("b", 2), ("d", 4), ("f", 6)],
            BALLOTS: [("p1", "a", 1, 1), ("p1", "c", 1, 2), ("p2", "a", 2, 3)],
        })

        assert await store.seek(SEEN, ("c",)) == ("d", 4)
        assert await store.seek(SEEN, ("d",)) == ("d", 4)
        assert await store.seek(SEEN, ("g",)) is None
        assert await store.seek(SEEN, ("c",), before=True) == ("b", 2)
        assert await store.seek(SEEN, ("a",), before=True) is None
        assert await store.seek(SEEN, ("zzz",), before=True) == ("f", 6)
        # a key of two columns orders by the first, then the second
        assert await store.seek(BALLOTS, ("p1", "b")) == ("p1", "c", 1, 2)
        assert await store.seek(BALLOTS, ("p1", "d")) == ("p2", "a", 2, 3)
        assert await store.seek(BALLOTS, ("p2", ""), before=True) == ("p1", "c", 1, 2)
        assert await store.seek(ACCOUNTS, ("u",)) is None  # a table never created

    async def test_a_replacing_table_upserts_by_its_key(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, user_events(1), {SEEN: [("users", 1), ("polls", 0)], BALLOTS: [("p", "u", 1, 1)]})

        await append(store, user_events(1), {SEEN: [("users", 2)], BALLOTS: [("p", "u", 2, 2)]})
        await append(store, [], {BALLOTS: [("p", "v", 1, 2)]})
        await append(store, [], {SEEN: [("polls", 5), ("polls", 7)]})  # the later row of a key wins

        assert await store.rows(SEEN) == [("polls", 7), ("users", 2)]
        assert await store.rows(BALLOTS) == [("p", "u", 2, 2), ("p", "v", 1, 2)]

    async def test_projection_rows_commit_with_their_events_and_fail_with_them(
        self, store: EventStore
    ) -> None:
        await store.create_tables([SEEN])
        (event,) = await append(store, user_events(1), {SEEN: [("users", 1)]})

        with pytest.raises(ConcurrencyError):
            taken = [user_event(), poll_event("p", 1), poll_event("p", 1)]
            await append(store, taken, {SEEN: [("users", 4)]})

        assert await store.rows(SEEN) == [("users", 1)]
        assert await store.head() == Head(1, event.hash)

    @pytest.mark.parametrize(
        "bad",
        [account("u3", None, number=None), account("u1", "new@example.org"), account("u3", "ada@example.org"),
         account("u3", None, "red", 1), account("u1", "ada@example.org")],
        ids=["null-in-not-null", "taken-key", "taken-unique-column", "taken-unique-columns", "same-row"],
    )
    async def test_a_failing_row_takes_its_batch_down_with_it(self, store: EventStore, bad: Row) -> None:
        await store.create_tables([ACCOUNTS, SEEN])
        kept = await append(
            store, user_events(1),
            {ACCOUNTS: [account("u1", "ada@example.org", "red", 1), account("u2", None, "blue", 1)]},
        )
        before = await store.rows(ACCOUNTS)

        with pytest.raises(ConcurrencyError):
            await append(store, user_events(2), {SEEN: [("users", 3)], ACCOUNTS: [account("u4", None), bad]})

        assert await read_all(store) == kept
        assert await store.rows(ACCOUNTS) == before
        assert await store.rows(SEEN) == []

    async def test_a_row_colliding_with_another_of_its_own_batch_takes_the_batch_down(
        self, store: EventStore
    ) -> None:
        await store.create_tables([ACCOUNTS])

        for clash in [account("u2", "a@x.org"), account("u1", "b@x.org")]:  # the email, the key
            with pytest.raises(ConcurrencyError):
                await append(store, user_events(1), {ACCOUNTS: [account("u1", "a@x.org"), clash]})

        assert await store.rows(ACCOUNTS) == []
        assert await store.head() == Head(0, GENESIS_HASH)

    async def test_a_unique_column_may_hold_none_in_many_rows(self, store: EventStore) -> None:
        await store.create_tables([ACCOUNTS])
        rows = [account("u1", None), account("u2", None), account("u3", None, None, 1)]
        rows.append(account("u4", None, None, 1))

        await append(store, user_events(1), {ACCOUNTS: rows})

        assert await store.rows(ACCOUNTS) == rows

    async def test_an_upsert_may_not_take_another_rows_unique_value_and_frees_its_own(
        self, store: EventStore
    ) -> None:
        people = TableSpec(
            "people", (Column("user_id", str), Column("email", str, unique=True), Column("seq", int))
        )
        await store.create_tables([people])
        await append(store, [], {people: [("u1", "ada@x.org", 1), ("u2", "bob@x.org", 1)]})

        with pytest.raises(ConcurrencyError):
            await append(store, user_events(1), {people: [("u1", "bob@x.org", 2)]})
        await append(store, [], {people: [("u1", "ada2@x.org", 2)]})
        await append(store, [], {people: [("u3", "ada@x.org", 3)]})

        assert await store.rows(people) == [
            ("u1", "ada2@x.org", 2), ("u2", "bob@x.org", 1), ("u3", "ada@x.org", 3),
        ]
        assert await store.head() == Head(0, GENESIS_HASH)

    # --- rewriting tables -------------------------------------------------------------------

    async def test_a_rewrite_replaces_a_table_with_exactly_its_new_rows(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, user_events(2), {SEEN: [("users", 2), ("polls", 0)], BALLOTS: [("p", "u", 1, 2)]})

        async with store.rewrite_tables() as rewrite:
            await rewrite.replace(SEEN, [("votes", 2), ("users", 1)])

        assert await store.rows(SEEN) == [("users", 1), ("votes", 2)]
        assert await store.rows(BALLOTS) == [("p", "u", 1, 2)]  # a table not replaced stays as it was
        await append(store, [], {SEEN: [("users", 3)]})  # and the new one takes writes as the old did
        assert await store.rows(SEEN) == [("users", 3), ("votes", 2)]

    async def test_a_rewrite_builds_a_table_afresh_in_the_layout_of_its_spec(self, store: EventStore) -> None:
        wider = TableSpec("seen", (Column("name", str), Column("seq", int), Column("hash", bytes)))
        await store.create_tables([SEEN])
        await append(store, [], {SEEN: [("users", 1)]})

        async with store.rewrite_tables() as rewrite:
            assert await rewrite.misshapen([wider, ACCOUNTS]) == {"seen", "accounts"}
            await rewrite.replace(wider, [("users", 1, b"\x01")])
            await rewrite.replace(ACCOUNTS, [account("u1", "a@x.org")])  # one that did not exist

        async with store.rewrite_tables() as rewrite:
            assert await rewrite.misshapen([wider, ACCOUNTS]) == set()
            assert await rewrite.misshapen([SEEN]) == {"seen"}
        assert await store.rows(wider) == [("users", 1, b"\x01")]
        assert await store.rows(ACCOUNTS) == [account("u1", "a@x.org")]
        with pytest.raises(ConcurrencyError):  # its constraints came with it
            await append(store, [], {ACCOUNTS: [account("u2", "a@x.org")]})

    async def test_misshapen_names_each_table_laid_out_by_another_spec(self, store: EventStore) -> None:
        name, email, seq = Column("name", str), Column("email", str, nullable=True), Column("seq", int)
        spec = TableSpec("layout", (name, email, seq))
        others = {
            "another-type": TableSpec("layout", (name, email._replace(type=bytes), seq)),
            "not-null": TableSpec("layout", (name, email._replace(nullable=False), seq)),
            "unique": TableSpec("layout", (name, email._replace(unique=True), seq)),
            "unique-together": TableSpec("layout", (name, email, seq), unique=(("email", "seq"),)),
            "longer-key": TableSpec("layout", (name, email, seq), key=2),
            "extra-column": TableSpec("layout", (name, email, seq, Column("hash", bytes))),
            "fewer-columns": TableSpec("layout", (name, seq)),
            "renamed-column": TableSpec("layout", (name, email._replace(name="mail"), seq)),
        }
        await store.create_tables([spec, SEEN])

        async with store.rewrite_tables() as rewrite:
            assert await rewrite.misshapen([spec, SEEN]) == set()
            for what, other in others.items():
                assert await rewrite.misshapen([other, SEEN]) == {"layout"}, what
            assert await rewrite.misshapen([BALLOTS]) == {"ballots"}  # never created

        for what, other in others.items():  # and the other way round: each made, then checked
            async with store.rewrite_tables() as rewrite:
                await rewrite.replace(other, [])
                assert await rewrite.misshapen([other]) == set(), what
                assert await rewrite.misshapen([spec]) == {"layout"}, what

    async def test_an_exception_inside_a_rewrite_leaves_every_table_as_it_was(
        self, store: EventStore
    ) -> None:
        await store.create_tables([SEEN])
        kept = await append(store, user_events(2), {SEEN: [("users", 2)]})

        with pytest.raises(Boom):
            async with store.rewrite_tables() as rewrite:
                await rewrite.replace(SEEN, [("users", 9), ("polls", 9)])
                await rewrite.replace(ACCOUNTS, [account("u1", "a@x.org")])
                assert await rewrite.rows(SEEN) == [("polls", 9), ("users", 9)]
                raise Boom

        assert await store.rows(SEEN) == [("users", 2)]
        assert await store.rows(ACCOUNTS) == []
        async with store.rewrite_tables() as rewrite:
            assert await rewrite.misshapen([ACCOUNTS]) == {"accounts"}
        later = await append(store, user_events(1), {SEEN: [("users", 3)]})
        assert await read_all(store) == kept + later
        assert await store.rows(SEEN) == [("users", 3)]

    async def test_a_cancelled_rewrite_leaves_every_table_as_it_was(self, store: EventStore) -> None:
        await store.create_tables([SEEN])
        await append(store, [], {SEEN: [("users", 0)]})
        replaced = asyncio.Event()

        async def rewrite_forever() -> None:
            async with store.rewrite_tables() as rewrite:
                await rewrite.replace(SEEN, [("users", 9)])
                replaced.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(rewrite_forever())
        await replaced.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await store.rows(SEEN) == [("users", 0)]
        assert (await append(store, user_events(1), {SEEN: [("users", 1)]}))[0].seq == 1
        assert await store.rows(SEEN) == [("users", 1)]

    async def test_a_rewrite_reads_its_own_rows_before_others_can(self, store: EventStore) -> None:
        await store.create_tables([SEEN, BALLOTS])
        await append(store, [], {SEEN: [("users", 1)], BALLOTS: [("p", "u", 1, 1)]})

        async with store.rewrite_tables() as rewrite:
            await rewrite.replace(SEEN, [("polls", 2), ("users", 2)])
            assert await rewrite.rows(SEEN) == [("polls", 2), ("users", 2)]
            assert await rewrite.rows(BALLOTS) == [("p", "u", 1, 1)]  # live rows of a table not replaced
            assert await rewrite.rows(ACCOUNTS) == []  # a table never created
            assert await store.rows(SEEN) == [("users", 1)]

        assert await store.rows(SEEN) == [("polls", 2), ("users", 2)]

    async def test_a_rewrite_starts_from_what_another_store_appended(
        self, store: EventStore, other: EventStore
    ) -> None:
        theirs = await append(other, user_events(2))

        async with store.rewrite_tables() as rewrite:
            assert rewrite.head == Head(2, theirs[-1].hash)
            assert await rewrite.read_after(0) == theirs
            assert await rewrite.read_after(1) == theirs[1:]
            assert await rewrite.read_after(2) == []

        mine = await append(store, user_events(1))
        assert mine[0].prev_hash == theirs[-1].hash
        assert_chain(await read_all(other))

    async def test_nobody_appends_until_a_rewrite_ends(self, store: EventStore, other: EventStore) -> None:
        await store.create_tables([SEEN])
        before = await append(store, user_events(1))

        async with store.rewrite_tables() as rewrite:
            appends = [asyncio.create_task(append_retrying(s, user_events(1))) for s in (store, other)]
            done, _ = await asyncio.wait(appends, timeout=0.3)
            assert not done
            assert await store.head() == rewrite.head == Head(1, before[0].hash)
            assert await rewrite.read_after(1) == []
            await rewrite.replace(SEEN, [("users", 1)])

        mine, theirs = await asyncio.wait_for(asyncio.gather(*appends), 20)
        events = await read_all(store)
        assert_chain(events)
        assert sorted(e.seq for e in mine + theirs) == [2, 3]
        assert await store.rows(SEEN) == [("users", 1)]

    # --- snapshots --------------------------------------------------------------------------

    async def test_a_snapshot_gives_its_head_and_its_reads_see_nothing_after_it(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.create_tables([SEEN])
        first = await append(store, [*user_events(2), poll_event("p", 1)], {SEEN: [("users", 3)]})

        async with store.snapshot() as head:
            # a backend may hold other writers back until the snapshot ends, or let them commit
            theirs = asyncio.create_task(
                append(other, [user_event(), poll_event("p", 2)], {SEEN: [("users", 5), ("polls", 5)]})
            )
            await asyncio.wait([theirs], timeout=0.3)
            assert head == Head(3, first[-1].hash)
            assert await store.head() == head
            assert await read_all(store) == first
            assert [e.seq async for chunk in store.read(after=1) for e in chunk] == [2, 3]
            assert await read_streams(store, "") == first
            assert await read_streams(store, "poll:p") == first[2:]
            assert await store.rows(SEEN) == [("users", 3)]
            assert [row[0] for row in await shard(store, 0, 2, "poll:")] == [
                e.seq for e in first if e.stream.startswith("poll:") or shard_of(e.stream, 2) == 0
            ]

        await asyncio.wait_for(theirs, 20)
        assert len(await read_all(store)) == 5
        assert len(await read_streams(store, "poll:p")) == 2
        assert await store.rows(SEEN) == [("polls", 5), ("users", 5)]

    # --- private data -----------------------------------------------------------------------

    async def test_private_data_round_trips_beside_its_event(self, store: EventStore) -> None:
        private = PrivateData(os.urandom(16), canonical({"email": "ada@example.org", "name": "Ada"}))
        await append(store, [user_event("a", private), user_event("b")])

        with_private, without = await read_all(store)

        assert with_private.private == private
        assert without.private is None
        assert [e.private for e in await read_streams(store, "user:a")] == [private]

    async def test_an_erasure_destroys_the_private_data_of_its_streams_and_keeps_the_events(
        self, store: EventStore, other: EventStore
    ) -> None:
        ada, bo = (PrivateData(os.urandom(16), canonical({"email": f"{n}@example.org"})) for n in "ab")
        kept = await append(store, [user_event("a", ada), user_event("b", bo)])
        erasure = stream_event("user:a", version=2)

        head = await store.head()
        stored = chain(head, [erasure])
        assert await store.append(head, stored, erase=["user:a", "user:nobody"]) == []

        for reader in (store, other):  # as every store on the ledger reads it from now on
            events = await read_all(reader)
            assert [e.seq for e in events] == [1, 2, 3]
            assert [e.hash for e in events] == [kept[0].hash, kept[1].hash, stored[0].hash]
            assert events[0].private is None and events[1].private == bo
            assert [e.private for e in await read_streams(reader, "user:a")] == [None, None]

    async def test_an_erasure_in_a_batch_that_fails_erases_nothing(self, store: EventStore) -> None:
        ada = PrivateData(os.urandom(16), canonical({"email": "ada@example.org"}))
        await append(store, [user_event("a", ada), poll_event("p", 1)])
        head = await store.head()

        with pytest.raises(ConcurrencyError):  # a taken stream version takes the erasure down too
            await store.append(head, chain(head, [poll_event("p", 1)]), erase=["user:a"])

        assert (await read_all(store))[0].private == ada

    async def test_private_data_rolls_back_with_its_event(self, store: EventStore) -> None:
        private = PrivateData(b"salt", b"{}")
        with pytest.raises(ConcurrencyError):
            await append(store, [user_event("a", private), poll_event("p", 1), poll_event("p", 1)])

        event = user_event("a", private)
        await append(store, [event])
        (stored,) = await read_all(store)
        assert (stored.event_id, stored.private) == (event.event_id, private)

    async def test_private_data_comes_back_with_the_events_a_batch_missed(
        self, store: EventStore, other: EventStore
    ) -> None:
        private = PrivateData(b"salt", b'{"email":"ada@example.org"}')
        stale = await store.head()
        theirs = await append(other, [user_event("a", private)])

        missed: list[StoredEvent] = await store.append(stale, chain(stale, user_events(1)))

        assert missed == theirs
        assert missed[0].private == private

    # --- other stores -----------------------------------------------------------------------

    async def test_changed_reports_commits_made_through_another_store(
        self, store: EventStore, other: EventStore
    ) -> None:
        await store.changed()  # the first call may say anything: it sets the baseline

        await append(other, user_events(1))

        assert await changed_soon(store)

        await other.create_tables([SEEN])
        await store.changed()
        async with other.rewrite_tables() as rewrite:
            await rewrite.replace(SEEN, [("users", 1)])

        assert await changed_soon(store)

    async def test_changed_answers_without_waiting_for_anything(
        self, store: EventStore, other: EventStore
    ) -> None:
        # the service asks it inline before the reads of each new millisecond
        answered_inline(store.changed())
        await append(other, user_events(1))
        for _ in range(100):
            if answered_inline(store.changed()):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("changed() never reported the other store's commit")
        answered_inline(store.changed())

    async def test_a_read_only_store_reads_and_refuses_every_write(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        await store.create_tables([SEEN])
        events = await append(store, user_events(2), {SEEN: [("users", 2)]})
        readonly = await self.open_again(tmp_path, readonly=True)
        try:
            assert await read_all(readonly) == events
            assert await read_streams(readonly, "user:") == events
            assert await readonly.rows(SEEN) == [("users", 2)]
            head = await readonly.head()
            with pytest.raises(StoreUnavailableError):
                await readonly.append(head, chain(head, user_events(1)))
            with pytest.raises(StoreUnavailableError):
                await readonly.probe()
            with pytest.raises(StoreUnavailableError):
                await readonly.create_tables([BALLOTS])
            with pytest.raises(StoreUnavailableError):
                async with readonly.rewrite_tables():
                    pass
        finally:
            await readonly.close()

        assert await read_all(store) == events
        assert await store.rows(BALLOTS) == []
        await store.probe()
