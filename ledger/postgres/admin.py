"""Server administration the ledger does not do itself: a scratch database for a run (a benchmark,
a test), created on the server a URL names and dropped afterwards, so that every run starts from
an empty ledger and leaves nothing behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ledger.errors import StoreUnavailableError
from ledger.postgres.store import redacted


@contextmanager
def scratch_database(url: str, prefix: str = "vote_ledger_scratch") -> Iterator[str]:
    """The URL of a new, empty database on the server of ``url``; dropped on the way out.

    StoreUnavailableError, in one line, when the server cannot make or drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _on_server(url, f'CREATE DATABASE "{name}"', "create a scratch database")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        _on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f"drop the scratch database {name}")


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
        raise StoreUnavailableError(f"{redacted(url)}: cannot {what}: {exc}") from None
