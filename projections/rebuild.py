"""Rebuild: replay the log into shadow tables and swap them in atomically."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.store import EventStore
from projections.compare import Difference, differences, live_rows
from projections.service import Progress, StoreOpener, replay, replay_in_two
from projections.state import collector_paused
from projections.tables import TABLES, ddl, state_rows, statements

SHADOW = "__rebuild"


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild found: the head it rebuilt to and every row it changed."""

    head_seq: int
    head_hash: bytes
    events: int
    changes: list[Difference]


async def rebuild(
    store: EventStore, progress: Progress | None = None, reopen: StoreOpener | None = None
) -> RebuildReport:
    """Replace every projection table with a fresh fold of the log; report what changed.

    With ``reopen``, the log is folded in two processes (``replay_in_two``).
    """
    await store.execute_script(ddl())
    with collector_paused():  # the fold, its rows and the live rows: millions of lasting objects
        if reopen is None:
            state = await replay(store, progress=progress)
        else:
            state = await replay_in_two(store, reopen, progress)
        async with store.write() as tx:
            state.catch_up(await tx.read_after(state.head_seq))  # appended while we folded
            tables = state_rows(state)
            changes = differences(await live_rows(tx.fetch_all), tables)
            drops = "\n".join(f"DROP TABLE IF EXISTS {name}{SHADOW};" for name in TABLES)
            await tx.execute_script(drops + "\n" + ddl(SHADOW, if_not_exists=False))
            for sql, rows in statements(tables, SHADOW):
                await tx.execute_many(sql, rows)
            swaps = "\n".join(
                f"DROP TABLE {name};\nALTER TABLE {name}{SHADOW} RENAME TO {name};" for name in TABLES
            )
            await tx.execute_script(swaps)
        return RebuildReport(state.head_seq, state.head_hash, state.head_seq, changes)
