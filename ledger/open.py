"""One way to open a ledger: ``open_store(url)`` chooses the backend from the URL.

- a path, or ``sqlite:///relative/path`` and ``sqlite:////absolute/path`` (SQLAlchemy's spelling):
  the SQLite backend, one file on this machine (the default);
- ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``): the PostgreSQL backend, one database that
  several nodes share;
- ``memory:`` (a new, empty ledger each time) or ``memory:NAME`` (one ledger per name, shared by
  every store this process opens on it): the in-memory backend, for tests and demos.

Any other ``scheme:`` is refused, never taken as a file name (``./name:with-colon.db`` is a path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import LedgerError
from ledger.store import EventStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
SCHEMES = ("sqlite", "postgresql", "memory")


class UnknownBackendError(LedgerError):
    """The database URL names no backend this program has."""


@dataclass(frozen=True)
class Location:
    """Where a URL says the ledger is: its backend, and the file for one that keeps a file."""

    url: str
    scheme: str
    path: Path | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """How messages name the ledger."""
        return str(self.path) if self.path is not None else self.url

    @property
    def shared(self) -> bool:
        """Whether several nodes may serve this ledger at once (they must share their secrets)."""
        return self.scheme == "postgresql"


def locate(url: str | Path) -> Location:
    """Parse a database URL (or a plain path); UnknownBackendError for a scheme with no backend."""
    text = str(url)
    if isinstance(url, Path):
        return Location(text, "sqlite", url)
    if not text:
        raise UnknownBackendError("the database URL is empty")
    match = _SCHEME.match(text)
    if match is None:
        return Location(text, "sqlite", Path(text))
    scheme, rest = match.group(1).lower(), text[match.end():]
    if scheme == "sqlite":
        if not rest.startswith("///") or len(rest) == 3:
            raise UnknownBackendError(f"{text}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        return Location(text, "sqlite", Path(rest[3:]))
    if scheme == "memory":
        return Location(text, "memory", name=rest)
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise UnknownBackendError(f"{text}: a PostgreSQL URL is postgresql://USER@HOST:PORT/DB")
        return Location(text, "postgresql")
    raise UnknownBackendError(
        f"{text}: unknown database scheme {scheme!r} (use a path, sqlite:///PATH, postgresql://… or memory:)"
    )


async def open_store(
    url: str | Path, *, create: bool = False, readonly: bool = False, busy_timeout_ms: int = 5000
) -> EventStore:
    """Open the ledger at ``url``; ``create`` makes a new one where none exists, ``readonly``
    never writes (the audit). Without ``create`` a missing ledger is a NotALedgerError."""
    location = locate(url)
    if location.scheme == "postgresql":
        from ledger.postgres.store import PostgresEventStore

        return await PostgresEventStore.open(
            location.url, create=create, readonly=readonly, busy_timeout_ms=busy_timeout_ms
        )
    if location.scheme == "memory":
        from ledger.memory import MemoryEventStore

        return MemoryEventStore.open(location.name, create=create, readonly=readonly)
    from ledger.sqlite.store import SqliteEventStore

    assert location.path is not None
    return await SqliteEventStore.open(
        location.path, create=create, readonly=readonly, busy_timeout_ms=busy_timeout_ms
    )
