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


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def name(self) -> Iterator[str]:
        name = f"contract-{uuid.uuid4().hex}"
        self._name = name
        yield name
        MemoryEventStore.forget(name)

    async def create_store(self, tmp_path: Path) -> EventStore:
        return MemoryEventStore.open(self._name, create=True)

    async def open_again(self, tmp_path: Path, readonly: bool = False) -> EventStore:
        return MemoryEventStore.open(self._name, readonly=readonly)


async def test_a_forgotten_name_opens_no_ledger() -> None:
    name = f"forgotten-{uuid.uuid4().hex}"
    MemoryEventStore.open(name, create=True)
    MemoryEventStore.forget(name)

    with pytest.raises(NotALedgerError):
        MemoryEventStore.open(name)
