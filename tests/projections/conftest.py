"""Fixtures of the projection tests: a sample ledger, and a fresh copy of it to tamper with."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projections.helpers import Built, build_sample, copy_ledger


@pytest.fixture
async def built(tmp_path: Path) -> Built:
    """A sample ledger of users, polls and votes (``build_sample``)."""
    return await build_sample(tmp_path / "pristine.db")


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    """A fresh copy of the pristine ledger, to be tampered with."""
    return copy_ledger(built.path, tmp_path / "tampered.db")
