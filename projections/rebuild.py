"""Rebuild: replay the log into shadow tables and swap them in atomically."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ledger.store import EventStore, Row, WriteTransaction
from projections.compare import Difference, Fetch, differences, live_rows
from projections.service import Progress, StoreOpener, fold_in_two, replay
from projections.state import LedgerState, collector_paused
from projections.tables import TABLES, ddl, definitions, state_rows, statements

SHADOW = "__rebuild"


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild found: the head it rebuilt to, every row it changed and the tables it
    built afresh."""

    head_seq: int
    head_hash: bytes
    events: int
    changes: list[Difference]
    rebuilt: list[str]


async def rebuild(
    store: EventStore, progress: Progress | None = None, reopen: StoreOpener | None = None
) -> RebuildReport:
    """Replace every projection table that differs from a fresh fold of the log; report what
    changed.

    A table whose rows and definition already equal the fold's is left as it is: building it
    again would give the same rows, and writing them is most of a rebuild's cost. Every other
    table is built afresh as a shadow table and swapped in, all in one transaction. With
    ``reopen``, the log is folded in two processes (``fold_in_two``), and the live rows are read
    while the second process's half comes in; ``store`` must then be the rebuild's alone, as its
    ``changed()`` tells whether they must be read again.
    """
    await store.execute_script(ddl())
    with collector_paused():  # the fold, its rows and the live rows: millions of lasting objects
        if reopen is None:
            state = await replay(store, progress=progress)
            async with store.write() as tx:
                return await _replace(tx, state, await live_rows(tx.fetch_all))
        async with fold_in_two(store, reopen, progress) as halves:
            state = await halves.own()
            # the live rows are read (in the reader's thread) while the other half comes in, and
            # read again under the write lock only if anything was committed from here on
            await store.changed()
            reading = asyncio.ensure_future(live_rows(store.fetch_all))
            try:
                state = await halves.merged(state)
            except BaseException:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)  # no task outlives the fold
                raise
            live = await reading
        async with store.write() as tx:
            if await store.changed():
                live.clear()  # not two copies at once
                live = await live_rows(tx.fetch_all)
            return await _replace(tx, state, live)


async def _replace(
    tx: WriteTransaction, state: LedgerState, live: dict[str, list[Row]]
) -> RebuildReport:
    """Within ``tx``: fold in what was appended since ``state``, then build afresh every table
    whose ``live`` rows or definition differ from the fold's."""
    state.catch_up(await tx.read_after(state.head_seq))  # appended while we folded
    tables = state_rows(state)
    changes = differences(live, tables)
    differing = {d.table for d in changes} | await _misshapen(tx.fetch_all)
    stale = [name for name in TABLES if name in differing]
    if stale:
        drops = "\n".join(f"DROP TABLE IF EXISTS {name}{SHADOW};" for name in stale)
        await tx.execute_script(drops + "\n" + ddl(SHADOW, if_not_exists=False, names=stale))
        for sql, rows in statements({name: tables[name] for name in stale}, SHADOW):
            await tx.execute_many(sql, rows)
        swaps = "\n".join(
            f"DROP TABLE {name};\nALTER TABLE {name}{SHADOW} RENAME TO {name};" for name in stale
        )
        await tx.execute_script(swaps)
    return RebuildReport(state.head_seq, state.head_hash, state.head_seq, changes, stale)


async def _misshapen(fetch: Fetch) -> set[str]:
    """The projection tables not defined as ``ddl`` defines them, or carrying an index or a
    trigger of someone else's (a rebuilt table would shed it)."""
    names = list(TABLES)
    rows = await fetch(  # SQLite's names ignore case: a table "Users" is the table users
        "SELECT type, lower(tbl_name), sql FROM sqlite_master"
        f" WHERE lower(tbl_name) IN ({', '.join('?' * len(names))})",
        names,
    )
    return {
        table for kind, table, sql in rows
        if (sql not in definitions(table) if kind == "table" else sql is not None)
    }
