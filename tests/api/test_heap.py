"""The served process's heap once the ledger is replayed: frozen, with young collections spaced out,
and the pages the replay freed given back."""

from __future__ import annotations

import ctypes
import gc
import os

import pytest

from api.cli import YOUNG_COLLECTION_THRESHOLD, _settle_heap
from bench.procfs import rss_kib


def resident_mib() -> float:
    return rss_kib(os.getpid()) / 1024


async def test_the_replayed_heap_is_frozen_and_young_collections_are_spaced_out() -> None:
    before = gc.get_threshold()
    try:
        await _settle_heap(None)

        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="not glibc")
async def test_the_pages_a_replay_freed_are_given_back() -> None:
    # 100 MB of bodies, 1 % of them kept, spread over it: the freed pages stay resident until trimmed
    bodies = [bytes(1000) for _ in range(100_000)]
    kept = bodies[::100]
    del bodies
    thresholds, before = gc.get_threshold(), resident_mib()
    try:
        await _settle_heap(None)

        assert before - resident_mib() > 50, (before, resident_mib())
    finally:
        del kept  # only now: the pages between the kept bodies were the ones to give back
        gc.unfreeze()
        gc.set_threshold(*thresholds)
