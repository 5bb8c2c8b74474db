"""PostgreSQL for the tests: the machine's server (``VOTE_LEDGER_TEST_POSTGRES``, by default
127.0.0.1:5432 with trust auth). A test that needs a server of its own, or a whole database (the
store contract, several nodes), gets a database of its own, created and dropped; a test that only
needs a ledger gets a schema of its own in a database this test run creates and drops, which is
twenty times quicker to make.

Where no server answers, the tests that need one are skipped, saying why; with
``VOTE_LEDGER_REQUIRE_POSTGRES=1`` (as ``.ci/run`` sets it) they fail instead.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get("VOTE_LEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("VOTE_LEDGER_REQUIRE_POSTGRES") == "1"


def database_url(name: str, base: str = ADMIN_URL) -> str:
    """The URL of database ``name`` on the server of ``base``."""
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


@cache
def unavailable() -> str | None:
    """Why no PostgreSQL server can be used, or None when one answers."""

    async def probe() -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        await conn.close()

    try:  # in a thread of its own: the caller may be inside a running event loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(probe())).result()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return f"no PostgreSQL server at {ADMIN_URL} ({exc.__class__.__name__}: {exc})"
    return None


def require_postgres() -> None:
    """Skip the calling test (fail it, where PostgreSQL is required) when no server answers."""
    reason = unavailable()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"{reason}, and VOTE_LEDGER_REQUIRE_POSTGRES=1 says it must be there")
    pytest.skip(reason)


_RUN_DATABASE: list[str] = []  # this process's database for the run, once made


def run_database() -> str:
    """The URL of this process's database for the test run: made at its first use, dropped when
    the process ends."""
    if not _RUN_DATABASE:
        name = f"vote_ledger_run_{uuid.uuid4().hex[:16]}"
        _on_server(f'CREATE DATABASE "{name}"')
        atexit.register(_drop_at_exit, name)
        _RUN_DATABASE.append(database_url(name))
    return _RUN_DATABASE[0]


async def _execute(statement: str, url: str = ADMIN_URL) -> None:
    """Run one statement on a connection of its own to ``url``."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _on_server(statement: str) -> None:
    with ThreadPoolExecutor(1) as pool:  # the caller may be inside a running event loop
        pool.submit(lambda: asyncio.run(_execute(statement))).result()


def _drop_at_exit(name: str) -> None:
    asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # no loop runs by now


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """The URL of a ledger in a new, empty schema of the run's database (its ``search_path``);
    the schema is dropped afterwards."""
    base = run_database()
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _execute(f'CREATE SCHEMA "{name}"', base)
    try:
        yield f"{base}?search_path={name}"
    finally:
        await _execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE', base)


@asynccontextmanager
async def fresh_database(base: str = ADMIN_URL) -> AsyncIterator[str]:
    """A new, empty database on the server of ``base``: its URL; dropped afterwards."""
    name = f"vote_ledger_test_{uuid.uuid4().hex[:16]}"
    await _execute(f'CREATE DATABASE "{name}"', base)
    try:
        yield database_url(name, base)
    finally:
        await _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', base)


FILE_OR_SERVER = ("sqlite", "postgresql")
"""The backends that keep a ledger beyond one process."""


@asynccontextmanager
async def new_ledger(backend: str, tmp_path: Path, name: str = "ledger.db") -> AsyncIterator[str]:
    """Where no ledger is yet, on ``backend``: a new file in ``tmp_path``, or a new schema."""
    if backend == "sqlite":
        yield str(tmp_path / name)
        return
    require_postgres()
    async with fresh_schema() as url:
        yield url
