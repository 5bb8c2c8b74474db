"""Row-by-row comparison of the live projection tables with a fresh fold of the log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.store import Row
from projections.tables import KEYS, SEQ_COLUMN, TABLES


@dataclass(frozen=True)
class Difference:
    """One row that differs: present only live, only in the fold, or different in both."""

    table: str
    key: tuple[Any, ...]
    live: Row | None
    expected: Row | None

    @property
    def seq(self) -> int | None:
        """The ledger position the row speaks for (its ``seq`` column), where it has one."""
        row = self.expected or self.live
        value = row[SEQ_COLUMN[self.table]] if row is not None else None
        return value if isinstance(value, int) else None

    def describe(self) -> str:
        what = "missing" if self.live is None else "unexpected" if self.expected is None else "differs"
        return f"{self.table} row {self.key!r} {what} (live {self.live!r}, replay {self.expected!r})"


Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Row]]]


async def live_rows(fetch: Fetch) -> dict[str, list[Row]]:
    """Every row of the live projection tables."""
    return {name: await fetch(f"SELECT * FROM {name} ORDER BY {KEYS[name]}", ()) for name in TABLES}


def _key(table: str, row: Row) -> tuple[Any, ...]:
    return tuple(row[: KEYS[table].count(",") + 1])


def differences(live: dict[str, list[Row]], expected: dict[str, list[Row]]) -> list[Difference]:
    """Every row where the live tables and the fold's rows (``state_rows``) disagree, in table
    order."""
    found: list[Difference] = []
    for table in TABLES:
        if live.get(table, []) == expected[table]:
            continue  # the usual case, settled by one comparison: both come in key order
        have = {_key(table, r): r for r in live.get(table, [])}
        want = {_key(table, r): r for r in expected[table]}
        for key in sorted(set(have) | set(want), key=repr):
            if have.get(key) != want.get(key):
                found.append(Difference(table, key, have.get(key), want.get(key)))
    return found
