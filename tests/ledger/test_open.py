"""``open_store(url)``: which backend a URL names, and the URLs it refuses."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ledger.errors import NotALedgerError
from ledger.memory import MemoryEventStore
from ledger.open import UnknownBackendError, locate, open_store
from ledger.sqlite.store import SqliteEventStore
from tests.ledger.helpers import append, read_all, user_events


@pytest.mark.parametrize(
    ("url", "scheme", "path", "name"),
    [
        ("ledger.db", "sqlite", Path("ledger.db"), ""),
        ("/var/lib/vote/ledger.db", "sqlite", Path("/var/lib/vote/ledger.db"), ""),
        ("./a:b.db", "sqlite", Path("a:b.db"), ""),
        ("sqlite:///data/ledger.db", "sqlite", Path("data/ledger.db"), ""),
        ("sqlite:////var/lib/ledger.db", "sqlite", Path("/var/lib/ledger.db"), ""),
        ("SQLite:///ledger.db", "sqlite", Path("ledger.db"), ""),
        ("memory:", "memory", None, ""),
        ("memory:demo", "memory", None, "demo"),
        ("MEMORY:demo", "memory", None, "demo"),
    ],
)
def test_a_url_names_its_backend_and_where_the_ledger_is(
    url: str, scheme: str, path: Path | None, name: str
) -> None:
    location = locate(url)

    assert (location.scheme, location.path, location.name) == (scheme, path, name)


def test_a_path_object_is_a_sqlite_file_whatever_its_name() -> None:
    location = locate(Path("memory:x"))

    assert (location.scheme, location.path) == ("sqlite", Path("memory:x"))


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("ftp://x", "ftp"), ("postgresx:foo", "postgresx"), ("a:b.db", "a"), ("HTTP://x", "http")],
)
async def test_an_unknown_scheme_is_refused_by_name_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, scheme: str
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(UnknownBackendError, match=f"unknown database scheme '{scheme}'"):
        await open_store(url, create=True)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["", "sqlite:///", "sqlite://ledger.db", "sqlite:ledger.db"])
async def test_an_empty_or_malformed_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(UnknownBackendError):
        await open_store(url, create=True)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "relative"),
    [("ledger.db", "ledger.db"), ("./a:b.db", "a:b.db"), ("sqlite:///sub/ledger.db", "sub/ledger.db")],
)
async def test_a_relative_path_or_sqlite_url_opens_a_file_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)

    store = await open_store(url, create=True)
    try:
        assert isinstance(store, SqliteEventStore)
        await append(store, user_events(1))
    finally:
        await store.close()

    assert (tmp_path / relative).is_file()
    again = await open_store(tmp_path / relative)
    try:
        assert len(await read_all(again)) == 1
    finally:
        await again.close()


async def test_a_sqlite_url_with_four_slashes_opens_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "ledger.db"

    store = await open_store(f"sqlite:///{path}", create=True)
    await store.close()

    assert str(path).startswith("/")
    assert path.is_file()


async def test_a_missing_file_is_not_created_without_create(tmp_path: Path) -> None:
    with pytest.raises(NotALedgerError):
        await open_store(f"sqlite:///{tmp_path / 'missing.db'}")
    assert list(tmp_path.iterdir()) == []


async def test_memory_without_a_name_is_a_new_empty_ledger_each_time() -> None:
    one = await open_store("memory:", create=True)
    two = await open_store("memory:", create=True)
    try:
        assert isinstance(one, MemoryEventStore)
        await append(one, user_events(2))

        assert await read_all(two) == []
    finally:
        await one.close()
        await two.close()


async def test_memory_with_a_name_is_one_ledger_shared_by_every_store_opened_on_it() -> None:
    name = f"shared-{uuid.uuid4().hex}"
    with pytest.raises(NotALedgerError):
        await open_store(f"memory:{name}")
    one = await open_store(f"memory:{name}", create=True)
    two = await open_store(f"memory:{name}")
    stranger = await open_store(f"memory:{name}-other", create=True)
    try:
        appended = await append(one, user_events(2))

        assert await read_all(two) == appended
        assert await read_all(stranger) == []
    finally:
        for store in (one, two, stranger):
            await store.close()
        MemoryEventStore.forget(name)
        MemoryEventStore.forget(f"{name}-other")
