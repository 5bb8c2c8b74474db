"""The PostgreSQL store: the contract on a database of each test's own, plus what only
PostgreSQL can show (its triggers, its mark, a second node joining)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from ledger.chain import chain
from ledger.errors import NotALedgerError
from ledger.open import open_store
from ledger.store import EventStore
from tests.ledger.contract import EventStoreContract
from tests.ledger.helpers import answered_inline, append, user_events
from tests.postgres import fresh_database, require_postgres


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """The URL of an empty database of this test's own."""
    require_postgres()
    async with fresh_database() as url:
        yield url


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, database: str) -> None:
        self.url = database

    async def create_store(self, tmp_path: Path) -> EventStore:
        return await open_store(self.url, create=True)

    async def open_again(self, tmp_path: Path, readonly: bool = False) -> EventStore:
        return await open_store(self.url, readonly=readonly)


async def test_an_empty_database_is_not_a_ledger_unless_create_is_given(database: str) -> None:
    with pytest.raises(NotALedgerError, match="no ledger in this database"):
        await open_store(database)

    store = await open_store(database, create=True)
    await store.close()
    again = await open_store(database)  # a second node finds the ledger and joins it
    await again.close()


async def test_a_database_with_another_applications_events_table_is_refused(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("CREATE TABLE events (id serial PRIMARY KEY, what text)")
    finally:
        await conn.close()

    with pytest.raises(NotALedgerError, match="not a vote-ledger"):
        await open_store(database, create=True)


@pytest.mark.parametrize("statement", [
    "UPDATE events SET type = 'forged'",
    "DELETE FROM events WHERE seq = 1",
    "TRUNCATE events",
    "INSERT INTO events SELECT seq + 10, id || 'x', type, stream, version + 10, body, prev_hash, hash"
    " FROM events WHERE seq = 1",
])
async def test_the_log_refuses_every_change_but_the_next_link(database: str, statement: str) -> None:
    store = await open_store(database, create=True)
    try:
        await append(store, user_events(2))
        conn = await asyncpg.connect(database)
        try:
            with pytest.raises(asyncpg.IntegrityConstraintViolationError):
                await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM events") == 2
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_nodes_opening_one_new_database_at_once_lay_it_out_once(database: str) -> None:
    import asyncio

    stores = await asyncio.gather(*(open_store(database, create=True) for _ in range(4)))
    try:
        head = await stores[0].head()
        assert await stores[3].append(head, chain(head, user_events(1))) == []
        assert [(await s.head()).seq for s in stores] == [1, 1, 1, 1]
    finally:
        for store in stores:
            await store.close()


_LISTENERS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'vote-ledger' AND query ILIKE 'LISTEN%'
"""


async def test_a_store_whose_listener_was_terminated_answers_changed_at_once_and_listens_again(
    database: str,
) -> None:
    store = await open_store(database, create=True)
    conn = await asyncpg.connect(database)
    try:
        [(pid,)] = await conn.fetch(_LISTENERS)
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        # deaf, it says yes at every call; it listens again in the background, never in changed()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await conn.fetch(_LISTENERS):
            answered_inline(store.changed())
            assert loop.time() < deadline, "the store did not listen again"
            await asyncio.sleep(0.05)
        while answered_inline(store.changed()):  # until it hears that nothing was committed
            assert loop.time() < deadline, "the store listens, yet says yes at every call"
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
        await store.close()
