"""Rebuild: replay the log into fresh tables and swap them in atomically."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from ledger.store import EventStore, TableRewrite
from ledger.tables import Row, TableSpec
from ledger.tree import TREE, TreeCheck, check_tree, extend_check
from projections.compare import Difference, differences, live_rows
from projections.service import Progress, StoreOpener, fold_in_two, replay
from projections.state import LedgerState, collector_paused
from projections.tables import TABLES, state_rows


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild found: the head it rebuilt to, every row it changed and the tables it
    built afresh."""

    head_seq: int
    head_hash: bytes
    events: int
    changes: list[Difference]
    rebuilt: list[str]
    tree_fault: str | None = None  # what was wrong with the Merkle tree or its checkpoints
    locked_s: float = 0.0  # how long the write lock was held (appends waited at most that long)


async def rebuild(
    store: EventStore, progress: Progress | None = None, reopen: StoreOpener | None = None
) -> RebuildReport:
    """Replace every projection table that differs from a fresh fold of the log; report what
    changed.

    A table whose rows and layout already equal the fold's is left as it is: building it again
    would give the same rows, and writing them is most of a rebuild's cost. Every other table is
    built afresh, and all of them are swapped in in one transaction. With ``reopen``, the log is
    folded in two processes (``fold_in_two``), and the live rows are read while the second
    process's half comes in; ``store`` must then be the rebuild's alone, as its ``changed()`` tells
    whether they must be read again.
    """
    await store.create_tables(TABLES)
    with collector_paused():  # the fold, its rows and the live rows: millions of lasting objects
        if reopen is None:
            state = await replay(store, progress=progress)
            tree = await check_tree(store, state.head_seq, appending=True)
            return await _swap(store, state, lambda tx: live_rows(tx.rows), tree)
        async with fold_in_two(store, reopen, progress) as halves:
            state = await halves.own()
            # the live rows are read (in the reader's thread) while the other half comes in, and
            # read again under the write lock only if anything was committed from here on
            await store.changed()
            reading = asyncio.ensure_future(live_rows(store.rows))
            try:
                state = await halves.merged(state)
            except BaseException:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)  # no task outlives the fold
                raise
            live = await reading
        tree = await check_tree(store, state.head_seq, appending=True)

        async def live_now(tx: TableRewrite) -> dict[TableSpec, list[Row]]:
            if not await store.changed():
                return live
            live.clear()  # not two copies at once
            return await live_rows(tx.rows)

        return await _swap(store, state, live_now, tree)


async def _swap(
    store: EventStore, state: LedgerState,
    live: Callable[[TableRewrite], Awaitable[dict[TableSpec, list[Row]]]], tree: TreeCheck,
) -> RebuildReport:
    """Under the write lock: the live rows (``live``), then ``_replace``; timed from the lock taken
    to the commit."""
    async with store.rewrite_tables() as tx:
        locked = time.perf_counter()
        report = await _replace(store, tx, state, await live(tx), tree)
    return replace(report, locked_s=time.perf_counter() - locked)


async def _replace(
    store: EventStore, tx: TableRewrite, state: LedgerState, live: dict[TableSpec, list[Row]],
    checked: TreeCheck,
) -> RebuildReport:
    """Within ``tx``: fold in what was appended since ``state``, then build afresh every table
    whose ``live`` rows or layout differ from the fold's, and the Merkle tree if it differs from
    the log's: ``checked`` is the tree's check up to ``state``, made before the write lock (a
    pass over every event that appends need not wait for), extended here over what came since.
    (Checkpoints are signed history: they are reported, never rewritten.)"""
    state.catch_up(await tx.read_after(state.head_seq))  # appended while we folded
    tables = state_rows(state)
    changes = differences(live, tables)
    differing = {d.table for d in changes} | await tx.misshapen(TABLES)
    stale = [spec for spec in TABLES if spec.name in differing]
    for spec in stale:
        await tx.replace(spec, tables[spec])
    rebuilt = [spec.name for spec in stale]
    tree = await extend_check(store, checked, tx.head.seq)  # nobody appends while ``tx`` lasts
    if tree.rows is not None or TREE.name in await tx.misshapen([TREE]):
        await tx.replace(TREE, tree.rows if tree.rows is not None else await tx.rows(TREE))
        rebuilt.append(TREE.name)
    fault = tree.fault if tree.rows is None else None
    return RebuildReport(state.head_seq, state.head_hash, state.head_seq, changes, rebuilt, fault)
