"""The in-memory store: the contract, on a ledger named for each test and forgotten after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import NotALedgerError
from ledger.memory import MemoryEventStore
from ledger.store import EventStore
from tests.ledger.contract import EventStoreContract


def ledger_name(tmp_path: Path) -> str:
    """The name of a test's ledger: its own, as its directory is."""
    return f"contract:{tmp_path}"


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def forget_the_ledger(self, tmp_path: Path) -> Iterator[None]:
        yield
        MemoryEventStore.forget(ledger_name(tmp_path))

    async def create_store(self, tmp_path: Path) -> EventStore:
        return MemoryEventStore.open(ledger_name(tmp_path), create=True)

    async def open_again(self, tmp_path: Path, readonly: bool = False) -> EventStore:
        return MemoryEventStore.open(ledger_name(tmp_path), readonly=readonly)


def test_a_forgotten_name_opens_no_ledger() -> None:
    name = f"forgotten-{uuid.uuid4().hex}"
    MemoryEventStore.open(name, create=True)
    MemoryEventStore.forget(name)

    with pytest.raises(NotALedgerError):
        MemoryEventStore.open(name)

