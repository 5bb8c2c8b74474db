"""Row-by-row comparison of the live projection tables with a fresh fold of the log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.tables import Row, TableSpec
from projections.tables import TABLES


@dataclass(frozen=True)
class Difference:
    """One row that differs: present only live, only in the fold, or different in both."""

    spec: TableSpec
    key: tuple[Any, ...]
    live: Row | None
    expected: Row | None

    @property
    def table(self) -> str:
        """The table's name."""
        return self.spec.name

    @property
    def seq(self) -> int | None:
        """The ledger position the row speaks for (its ``seq`` column), where it has one."""
        row = self.expected or self.live
        if row is None or len(row) != len(self.spec.columns):
            return None
        return self.spec.seq_of(row)

    def describe(self) -> str:
        what = "missing" if self.live is None else "unexpected" if self.expected is None else "differs"
        return f"{self.table} row {self.key!r} {what} (live {self.live!r}, replay {self.expected!r})"


Fetch = Callable[[TableSpec], Awaitable[list[Row]]]


async def live_rows(fetch: Fetch) -> dict[TableSpec, list[Row]]:
    """Every row of the live projection tables, each table in key order."""
    return {spec: await fetch(spec) for spec in TABLES}


def differences(
    live: Mapping[TableSpec, list[Row]], expected: Mapping[TableSpec, list[Row]]
) -> list[Difference]:
    """Every row where the live tables and the fold's rows (``state_rows``) disagree, in table
    order."""
    found: list[Difference] = []
    for spec in TABLES:
        if live.get(spec, []) == expected[spec]:
            continue  # the usual case, settled by one comparison: both come in key order
        have = {spec.key_of(r): r for r in live.get(spec, [])}
        want = {spec.key_of(r): r for r in expected[spec]}
        for key in sorted(set(have) | set(want), key=repr):
            if have.get(key) != want.get(key):
                found.append(Difference(spec, key, have.get(key), want.get(key)))
    return found
