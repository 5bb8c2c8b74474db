"""A database of its own for a benchmark run on a PostgreSQL server: created for the run, dropped
after it, so that every run starts from an empty ledger and leaves nothing behind.

Making and dropping a database is the server's business, not the ledger's, so it is done here,
through a connection to the database the URL names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.processes import BenchError
from ledger.postgres.store import redacted


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """The URL of a new, empty database on the server of ``url``; dropped on the way out."""
    name = f"vote_ledger_bench_{uuid.uuid4().hex[:12]}"
    _on_server(url, f'CREATE DATABASE "{name}"', "create a database for the run")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        _on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f"drop the run's database {name}")


def _on_server(url: str, statement: str, what: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BenchError(f"{redacted(url)}: cannot {what}: {exc}") from None
