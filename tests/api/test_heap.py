"""The served process's heap once the ledger is replayed: frozen, with young collections spaced out."""

from __future__ import annotations

import gc

from api.cli import YOUNG_COLLECTION_THRESHOLD, _settle_heap


async def test_the_replayed_heap_is_frozen_and_young_collections_are_spaced_out() -> None:
    before = gc.get_threshold()
    try:
        await _settle_heap(None)

        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
